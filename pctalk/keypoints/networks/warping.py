"""LivePortrait's warping module W: a dense motion field from source and driven keypoints warps the feature volume."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pctalk.keypoints.networks.blocks import Hourglass, SameBlock2d, coordinate_grid, keypoint_heatmaps

__all__ = ["DenseMotionNetwork", "WarpingNetwork"]

#: Variance of the keypoint Gaussians on the normalised grid.
KP_VARIANCE = 0.01


class DenseMotionNetwork(nn.Module):
    """Predicts a per-voxel mixture over 1 + K sparse motions (background + one per keypoint) and an occlusion map."""

    def __init__(
        self,
        num_kp: int,
        feature_channel: int,
        block_expansion: int = 32,
        max_features: int = 1024,
        num_blocks: int = 5,
        reshape_depth: int = 16,
        compress: int = 4,
        estimate_occlusion_map: bool = True,
    ) -> None:
        super().__init__()
        self.num_kp = num_kp
        self.hourglass = Hourglass(block_expansion, (num_kp + 1) * (compress + 1), num_blocks, max_features)
        self.mask = nn.Conv3d(self.hourglass.out_filters, num_kp + 1, kernel_size=7, padding=3)
        self.compress = nn.Conv3d(feature_channel, compress, kernel_size=1)
        self.norm = nn.BatchNorm3d(compress, affine=True)
        self.occlusion = (
            nn.Conv2d(self.hourglass.out_filters * reshape_depth, 1, kernel_size=7, padding=3)
            if estimate_occlusion_map
            else None
        )

    def forward(
        self, feature: torch.Tensor, kp_driving: torch.Tensor, kp_source: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``feature (B, C, D, H, W)``, keypoints ``(B, K, 3)`` -> deformation ``(B, D, H, W, 3)`` and occlusion
        ``(B, 1, H, W)`` (or ``None``)."""
        b = feature.shape[0]
        feature = F.relu(self.norm(self.compress(feature)))  # (B, c, D, H, W)
        d, h, w = feature.shape[2:]
        k = self.num_kp

        # Sparse motions: identity for the background, then for keypoint j the grid shifted by (src_j - drv_j).
        identity = coordinate_grid(d, h, w, like=kp_source).reshape(1, 1, d, h, w, 3)
        to_source = identity - kp_driving.reshape(b, k, 1, 1, 1, 3) + kp_source.reshape(b, k, 1, 1, 1, 3)
        sparse = torch.cat([identity.expand(b, 1, d, h, w, 3), to_source], dim=1)  # (B, 1 + K, D, H, W, 3)

        # The compressed feature warped by each sparse motion.
        repeated = feature.unsqueeze(1).expand(b, k + 1, *feature.shape[1:]).reshape(b * (k + 1), -1, d, h, w)
        deformed = F.grid_sample(repeated, sparse.reshape(b * (k + 1), d, h, w, 3), align_corners=False)
        deformed = deformed.reshape(b, k + 1, -1, d, h, w)

        # Heatmaps: driven minus source Gaussians, with an empty background channel.
        heat = keypoint_heatmaps(kp_driving, (d, h, w), KP_VARIANCE) - keypoint_heatmaps(
            kp_source, (d, h, w), KP_VARIANCE
        )
        heat = torch.cat([heat.new_zeros(b, 1, d, h, w), heat], dim=1).unsqueeze(2)  # (B, 1 + K, 1, D, H, W)

        prediction = self.hourglass(torch.cat([heat, deformed], dim=2).reshape(b, -1, d, h, w))
        mask = torch.softmax(self.mask(prediction), dim=1).unsqueeze(2)  # (B, 1 + K, 1, D, H, W)
        deformation = (sparse.permute(0, 1, 5, 2, 3, 4) * mask).sum(dim=1).permute(0, 2, 3, 4, 1)

        occlusion = None
        if self.occlusion is not None:
            occlusion = torch.sigmoid(self.occlusion(prediction.reshape(b, -1, h, w)))
        return deformation, occlusion


class WarpingNetwork(nn.Module):
    """``feature (B, C, D, H, W)`` and keypoints -> warped 2D feature ``(B, block_expansion * 2^n, H, W)``."""

    def __init__(
        self,
        num_kp: int = 21,
        block_expansion: int = 64,
        max_features: int = 512,
        num_down_blocks: int = 2,
        reshape_channel: int = 32,
        estimate_occlusion_map: bool = True,
        dense_motion_params: dict | None = None,
    ) -> None:
        super().__init__()
        self.dense_motion_network = DenseMotionNetwork(
            num_kp=num_kp,
            feature_channel=reshape_channel,
            estimate_occlusion_map=estimate_occlusion_map,
            **(dense_motion_params or {}),
        )
        width = block_expansion * 2**num_down_blocks
        self.third = SameBlock2d(max_features, width, lrelu=True)
        self.fourth = nn.Conv2d(width, width, kernel_size=1, stride=1)

    def forward(self, feature: torch.Tensor, kp_driving: torch.Tensor, kp_source: torch.Tensor) -> torch.Tensor:
        deformation, occlusion = self.dense_motion_network(feature, kp_driving, kp_source)
        out = F.grid_sample(feature, deformation, align_corners=False)
        b, c, d, h, w = out.shape
        out = self.fourth(self.third(out.reshape(b, c * d, h, w)))
        return out * occlusion if occlusion is not None else out
