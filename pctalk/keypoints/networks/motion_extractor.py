"""LivePortrait's motion extractor M: a ConvNeXt V2 backbone with linear heads for canonical keypoints, head pose,
translation, expression deformation and scale."""

from __future__ import annotations

import torch
from torch import nn

from pctalk.keypoints.networks.blocks import GRN, ChannelsFirstLayerNorm, ChannelsLastLayerNorm

__all__ = ["ConvNeXtV2", "MotionExtractor"]


class _Block(nn.Module):
    """ConvNeXt V2 block: depthwise 7x7 -> LayerNorm -> 4x MLP with GELU and GRN, residual."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = ChannelsLastLayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.grn = GRN(4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)  # (B, H, W, C)
        y = self.pwconv2(self.grn(self.act(self.pwconv1(self.norm(y)))))
        return x + y.permute(0, 3, 1, 2)


class ConvNeXtV2(nn.Module):
    """Backbone and heads. ``forward`` returns the raw head outputs, all ``(B, n)``."""

    def __init__(
        self,
        depths: tuple[int, ...] = (3, 3, 9, 3),
        dims: tuple[int, ...] = (96, 192, 384, 768),
        num_kp: int = 21,
        num_bins: int = 66,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        self.downsample_layers = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(in_chans, dims[0], kernel_size=4, stride=4), ChannelsFirstLayerNorm(dims[0]))]
        )
        for i in range(len(dims) - 1):
            self.downsample_layers.append(
                nn.Sequential(ChannelsFirstLayerNorm(dims[i]), nn.Conv2d(dims[i], dims[i + 1], kernel_size=2, stride=2))
            )
        self.stages = nn.ModuleList(nn.Sequential(*[_Block(dim) for _ in range(n)]) for dim, n in zip(dims, depths))
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        width = dims[-1]
        self.fc_kp = nn.Linear(width, 3 * num_kp)
        self.fc_scale = nn.Linear(width, 1)
        self.fc_pitch = nn.Linear(width, num_bins)
        self.fc_yaw = nn.Linear(width, num_bins)
        self.fc_roll = nn.Linear(width, num_bins)
        self.fc_t = nn.Linear(width, 3)
        self.fc_exp = nn.Linear(width, 3 * num_kp)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        for down, stage in zip(self.downsample_layers, self.stages):
            x = stage(down(x))
        x = self.norm(x.mean([-2, -1]))  # global average pool
        return {
            "pitch": self.fc_pitch(x),
            "yaw": self.fc_yaw(x),
            "roll": self.fc_roll(x),
            "t": self.fc_t(x),
            "exp": self.fc_exp(x),
            "scale": self.fc_scale(x),
            "kp": self.fc_kp(x),
        }


class MotionExtractor(nn.Module):
    """``(B, 3, H, W)`` in [0, 1] -> raw heads: ``kp``/``exp`` ``(B, 3K)``, ``pitch``/``yaw``/``roll`` ``(B, 66)``
    bin logits, ``t`` ``(B, 3)``, ``scale`` ``(B, 1)``. Weights live under ``detector.`` as in LivePortrait."""

    def __init__(self, depths: tuple[int, ...], dims: tuple[int, ...], num_kp: int = 21, num_bins: int = 66) -> None:
        super().__init__()
        self.detector = ConvNeXtV2(depths=depths, dims=dims, num_kp=num_kp, num_bins=num_bins)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.detector(images)
