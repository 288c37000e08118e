"""Small pure functions for the motion losses and metrics (``(B, T, D)`` sequences with a ``(B, T)`` mask).

They compute in fp32 whatever the predictions' dtype: under bf16 autocast, frame-to-frame differences of
deformations of about 1e-3 would otherwise keep two or three significant bits.
"""

from __future__ import annotations

import torch

__all__ = ["lip_vertex_error", "masked_l1", "velocity", "velocity_l1"]


def masked_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean absolute error over valid frames: ``pred``, ``target (B, T, D)``, ``mask (B, T)``."""
    err = (pred.float() - target.float()).abs().mean(-1)
    if mask is None:
        return err.mean()
    return (err * mask).sum() / mask.sum().clamp_min(1)


def velocity(x: torch.Tensor) -> torch.Tensor:
    """Frame-to-frame differences ``(B, T - 1, D)``."""
    return x[:, 1:] - x[:, :-1]


def velocity_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """L1 between the velocities of ``pred`` and ``target`` (FaceFormer-style temporal loss)."""
    pair = None if mask is None else mask[:, 1:] & mask[:, :-1]
    return masked_l1(velocity(pred.float()), velocity(target.float()), pair)


def lip_vertex_error(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The maximal L2 error over the keypoints of each frame, averaged over frames: ``(B, T, K * 3)`` inputs."""
    b, t, d = pred.shape
    per_frame = (pred.float() - target.float()).view(b, t, d // 3, 3).norm(dim=-1).amax(-1)
    if mask is None:
        return per_frame.mean()
    return (per_frame * mask).sum() / mask.sum().clamp_min(1)
