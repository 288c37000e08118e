"""LAC's lip refiner: a zero-initialised residual correction of the absolute lip keypoints from the audio feature."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["LipRefiner"]


class LipRefiner(nn.Module):
    """``refined = x + linear(cat(x, a))`` with ``x (..., 18)`` absolute lip keypoints (or ``(..., 6, 3)``) and
    ``a (..., audio_dim)`` the frame's audio feature. Zero-initialised: it starts as the identity."""

    def __init__(self, kp_dim: int = 18, audio_dim: int = 512) -> None:
        super().__init__()
        self.kp_dim = kp_dim
        self.linear = nn.Linear(kp_dim + audio_dim, kp_dim)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, lips: torch.Tensor, audio_feat: torch.Tensor) -> torch.Tensor:
        shape = lips.shape
        x = lips.reshape(*audio_feat.shape[:-1], self.kp_dim)
        return (x + self.linear(torch.cat([x, audio_feat], dim=-1))).reshape(shape)
