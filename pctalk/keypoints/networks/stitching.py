"""LivePortrait's stitching and retargeting MLPs S."""

from __future__ import annotations

import itertools
from typing import ClassVar

import torch
from torch import nn

__all__ = ["RetargetingMLP", "StitchingRetargeting"]


class RetargetingMLP(nn.Module):
    """Linear -> ReLU -> ... -> Linear, parameters under ``mlp.N`` as in LivePortrait."""

    def __init__(self, input_size: int, hidden_sizes: tuple[int, ...], output_size: int) -> None:
        super().__init__()
        sizes = [input_size, *hidden_sizes]
        layers: list[nn.Module] = []
        for cin, cout in itertools.pairwise(sizes):
            layers += [nn.Linear(cin, cout), nn.ReLU(inplace=True)]
        layers.append(nn.Linear(sizes[-1], output_size))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


class StitchingRetargeting(nn.Module):
    """The three MLPs of ``stitching_retargeting_module.pth``: ``stitching`` (file key ``retarget_shoulder``),
    ``lip`` (``retarget_mouth``) and ``eye`` (``retarget_eye``)."""

    #: attribute -> key in LivePortrait's checkpoint file
    FILE_KEYS: ClassVar[dict[str, str]] = {
        "stitching": "retarget_shoulder",
        "lip": "retarget_mouth",
        "eye": "retarget_eye",
    }

    def __init__(
        self,
        stitching: tuple[int, tuple[int, ...], int] = (126, (128, 128, 64), 65),
        lip: tuple[int, tuple[int, ...], int] = (65, (128, 128, 64), 63),
        eye: tuple[int, tuple[int, ...], int] = (66, (256, 256, 128, 128, 64), 63),
    ) -> None:
        super().__init__()
        self.stitching = RetargetingMLP(*stitching)
        self.lip = RetargetingMLP(*lip)
        self.eye = RetargetingMLP(*eye)
