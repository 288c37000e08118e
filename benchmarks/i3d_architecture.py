"""An Inception-I3D of the published architecture, with random weights, behind the call of StyleGAN-V's
``i3d_torchscript.pt`` (uint8 ``(B, 3, T, H, W)``; ``rescale``, ``resize``, ``return_features``; 400-d output).

For timing FVD without the real file: the layer sizes follow Carreira & Zisserman (2017), Inception-v1 inflated to
3D (7×7×7 stem, nine Inception blocks, 1024-d pooled feature, 400 Kinetics logits), so its cost is the real
detector's. The numbers it gives mean nothing; the real file goes in with ``bench_eval.py --i3d PATH``.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

#: (1x1, 3x3 reduce, 3x3, 3x3 reduce, 3x3, pool proj) per Inception block (Inception-v1's table; I3D uses a 3x3x3
#: convolution where v1 had 5x5).
BLOCKS = {
    "3b": (64, 96, 128, 16, 32, 32),
    "3c": (128, 128, 192, 32, 96, 64),
    "4b": (192, 96, 208, 16, 48, 64),
    "4c": (160, 112, 224, 24, 64, 64),
    "4d": (128, 128, 256, 24, 64, 64),
    "4e": (112, 144, 288, 32, 64, 64),
    "4f": (256, 160, 320, 32, 128, 128),
    "5b": (256, 160, 320, 32, 128, 128),
    "5c": (384, 192, 384, 48, 128, 128),
}


class Unit3D(nn.Sequential):
    """Convolution (no bias), BatchNorm, ReLU."""

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int, int], stride: tuple[int, int, int] = (1, 1, 1)):
        padding = tuple(k // 2 for k in kernel)
        super().__init__(
            nn.Conv3d(cin, cout, kernel, stride, padding, bias=False), nn.BatchNorm3d(cout, eps=1e-3), nn.ReLU()
        )


class InceptionBlock(nn.Module):
    def __init__(self, cin: int, sizes: tuple[int, int, int, int, int, int]) -> None:
        super().__init__()
        b0, b1r, b1, b2r, b2, b3 = sizes
        self.b0 = Unit3D(cin, b0, (1, 1, 1))
        self.b1 = nn.Sequential(Unit3D(cin, b1r, (1, 1, 1)), Unit3D(b1r, b1, (3, 3, 3)))
        self.b2 = nn.Sequential(Unit3D(cin, b2r, (1, 1, 1)), Unit3D(b2r, b2, (3, 3, 3)))
        self.b3 = nn.Sequential(nn.MaxPool3d(3, 1, 1), Unit3D(cin, b3, (1, 1, 1)))
        self.out_channels = b0 + b1 + b2 + b3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1(x), self.b2(x), self.b3(x)], dim=1)


class InceptionI3D(nn.Module):
    """``(B, 3, 16, 224, 224)`` -> ``(B, 400)``."""

    def __init__(self, classes: int = 400) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            Unit3D(3, 64, (7, 7, 7), (2, 2, 2)),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
            Unit3D(64, 64, (1, 1, 1)),
            Unit3D(64, 192, (3, 3, 3)),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
        ]
        channels = 192
        for name, sizes in BLOCKS.items():
            if name == "4b":
                layers.append(nn.MaxPool3d(3, 2, 1))
            elif name == "5b":
                layers.append(nn.MaxPool3d(2, 2))
            block = InceptionBlock(channels, sizes)
            layers.append(block)
            channels = block.out_channels
        self.features = nn.Sequential(*layers)
        self.logits = nn.Conv3d(channels, classes, 1)

    def forward(
        self, x: torch.Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False
    ) -> torch.Tensor:
        x = x.float()
        if rescale:
            x = x / 127.5 - 1.0
        if resize:
            x = F.interpolate(x, size=[x.shape[2], 224, 224], mode="trilinear", align_corners=False)
        h = self.features(x)
        logits = self.logits(F.adaptive_avg_pool3d(h, 1)).flatten(1)
        return logits if return_features else logits.softmax(-1)


def save_random_i3d(path: Path) -> Path:
    """Script a random-weight :class:`InceptionI3D` and save it as TorchScript (the format of the real file)."""
    torch.manual_seed(0)
    torch.jit.save(torch.jit.script(InceptionI3D().eval()), str(path))
    return path
