"""LivePortrait's SPADE decoder G: warped feature -> image (upscaled 2x by a pixel shuffle)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pctalk.keypoints.networks.blocks import SPADEResBlock

__all__ = ["SPADEDecoder"]


class SPADEDecoder(nn.Module):
    """``(B, C, H, W)`` -> ``(B, 3, 4H * upscale, 4W * upscale)`` in [0, 1]; (B, 256, 64, 64) -> (B, 3, 512, 512)."""

    def __init__(
        self,
        upscale: int = 2,
        max_features: int = 512,
        block_expansion: int = 64,
        out_channels: int = 64,
        num_down_blocks: int = 2,
        spade_hidden: int = 128,
    ) -> None:
        super().__init__()
        width = min(max_features, block_expansion * 2**num_down_blocks)
        self.fc = nn.Conv2d(width, 2 * width, 3, padding=1)
        for i in range(6):
            self.add_module(f"G_middle_{i}", SPADEResBlock(2 * width, 2 * width, width, spade_hidden))
        self.up_0 = SPADEResBlock(2 * width, width, width, spade_hidden)
        self.up_1 = SPADEResBlock(width, out_channels, width, spade_hidden)
        self.up = nn.Upsample(scale_factor=2)
        if upscale is None or upscale <= 1:
            self.conv_img = nn.Conv2d(out_channels, 3, 3, padding=1)
        else:
            self.conv_img = nn.Sequential(
                nn.Conv2d(out_channels, 3 * upscale * upscale, kernel_size=3, padding=1), nn.PixelShuffle(upscale)
            )

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        seg = feature
        x = self.fc(feature)
        for i in range(6):
            x = getattr(self, f"G_middle_{i}")(x, seg)
        x = self.up_1(self.up(self.up_0(self.up(x), seg)), seg)
        return torch.sigmoid(self.conv_img(F.leaky_relu(x, 0.2)))
