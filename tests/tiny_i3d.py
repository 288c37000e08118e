"""A tiny stand-in for StyleGAN-V's ``i3d_torchscript.pt`` with the same call signature, for FVD tests."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TinyI3D(nn.Module):
    """Same call as ``i3d_torchscript.pt``: uint8 ``(B, 3, T, H, W)``; 400-d features."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 16, (3, 7, 7), stride=(2, 4, 4))
        self.fc = nn.Linear(16 * 8, 400)

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False):
        x = x.float()
        if rescale:
            x = x / 127.5 - 1
        if resize:
            x = F.interpolate(x, size=(x.shape[2], 224, 224), mode="trilinear", align_corners=False)
        h = F.adaptive_avg_pool3d(torch.relu(self.conv(x)), (2, 2, 2)).flatten(1)
        features = self.fc(h)
        return features if return_features else features.softmax(-1)
