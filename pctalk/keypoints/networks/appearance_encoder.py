"""LivePortrait's appearance feature extractor F: image -> 3D feature volume."""

from __future__ import annotations

import torch
from torch import nn

from pctalk.keypoints.networks.blocks import DownBlock2d, ResBlock3d, SameBlock2d

__all__ = ["AppearanceEncoder"]


class AppearanceEncoder(nn.Module):
    """``(B, 3, H, W)`` -> ``(B, reshape_channel, reshape_depth, H / 2^n, W / 2^n)``; (B, 32, 16, 64, 64) officially."""

    def __init__(
        self,
        image_channel: int = 3,
        block_expansion: int = 64,
        num_down_blocks: int = 2,
        max_features: int = 512,
        reshape_channel: int = 32,
        reshape_depth: int = 16,
        num_resblocks: int = 6,
    ) -> None:
        super().__init__()
        if reshape_channel * reshape_depth != max_features:
            raise ValueError(
                f"reshape_channel x reshape_depth ({reshape_channel} x {reshape_depth}) must equal max_features "
                f"({max_features})"
            )
        self.reshape_channel, self.reshape_depth = reshape_channel, reshape_depth
        self.first = SameBlock2d(image_channel, block_expansion)
        widths = [min(max_features, block_expansion * 2**i) for i in range(num_down_blocks + 1)]
        self.down_blocks = nn.ModuleList(DownBlock2d(widths[i], widths[i + 1]) for i in range(num_down_blocks))
        self.second = nn.Conv2d(widths[-1], max_features, kernel_size=1, stride=1)
        self.resblocks_3d = nn.Sequential()
        for i in range(num_resblocks):
            self.resblocks_3d.add_module(f"3dr{i}", ResBlock3d(reshape_channel))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.first(images)
        for block in self.down_blocks:
            out = block(out)
        out = self.second(out)
        b, _, h, w = out.shape
        return self.resblocks_3d(out.reshape(b, self.reshape_channel, self.reshape_depth, h, w))
