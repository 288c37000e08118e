"""LivePortrait's keypoint math: head-pose bins to degrees, rotation matrices, and the keypoint transform.

Keypoints are row vectors, so a rotation applies as ``kp @ R`` with LivePortrait's transposed convention
``R = (Rz(roll) @ Ry(yaw) @ Rx(pitch)).T``; the driven keypoints are ``x = s * (x_c @ R + exp) + t`` with the
translation's z dropped.
"""

from __future__ import annotations

import math

import torch

__all__ = ["NUM_BINS", "headpose_degrees", "rotation_matrix", "transform_keypoints"]

#: Head-pose bins of the motion extractor (3 degrees each, centred so that bin 32.5 is 0 degrees).
NUM_BINS = 66


def headpose_degrees(logits: torch.Tensor) -> torch.Tensor:
    """Expected angle of the bin distribution: ``softmax(logits) . arange(66) * 3 - 97.5``.

    Args:
        logits: ``(B, 66)`` pitch, yaw or roll logits of the motion extractor.

    Returns:
        ``(B,)`` degrees.
    """
    if logits.ndim != 2 or logits.shape[1] != NUM_BINS:
        raise ValueError(f"headpose_degrees expects (B, {NUM_BINS}) logits, got {tuple(logits.shape)}")
    bins = torch.arange(NUM_BINS, dtype=logits.dtype, device=logits.device)
    return (torch.softmax(logits, dim=1) * bins).sum(dim=1) * 3 - 97.5


def rotation_matrix(pitch: torch.Tensor, yaw: torch.Tensor, roll: torch.Tensor) -> torch.Tensor:
    """Rotation matrices in LivePortrait's row-vector convention.

    Args:
        pitch, yaw, roll: ``(B,)`` (or ``(B, 1)``) angles in degrees about x, y and z.

    Returns:
        ``(B, 3, 3)``: ``(Rz(roll) @ Ry(yaw) @ Rx(pitch)).T``, to be applied as ``kp @ R``.
    """
    x, y, z = (a.reshape(-1) / 180 * math.pi for a in (pitch, yaw, roll))  # this rounding, as LivePortrait
    if not x.shape == y.shape == z.shape:
        raise ValueError(f"pitch, yaw and roll must have the same batch size, got {x.shape}, {y.shape}, {z.shape}")
    one, zero = torch.ones_like(x), torch.zeros_like(x)
    cx, sx, cy, sy, cz, sz = x.cos(), x.sin(), y.cos(), y.sin(), z.cos(), z.sin()
    rx = torch.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], dim=1).reshape(-1, 3, 3)
    ry = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], dim=1).reshape(-1, 3, 3)
    rz = torch.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], dim=1).reshape(-1, 3, 3)
    return (rz @ ry @ rx).transpose(1, 2)


def transform_keypoints(
    kp: torch.Tensor, R: torch.Tensor, exp: torch.Tensor, scale: torch.Tensor, t: torch.Tensor
) -> torch.Tensor:
    """Driven keypoints ``x = scale * (kp @ R + exp) + t`` with ``t_z`` dropped.

    Args:
        kp: ``(B, K, 3)`` canonical keypoints.
        R: ``(B, 3, 3)`` rotation from :func:`rotation_matrix`.
        exp: ``(B, K, 3)`` expression deformation.
        scale: ``(B, 1)`` scale.
        t: ``(B, 3)`` translation (only x and y are used).

    Returns:
        ``(B, K, 3)``.
    """
    if kp.ndim != 3 or kp.shape[-1] != 3 or exp.shape != kp.shape:
        raise ValueError(f"kp and exp must both be (B, K, 3), got {tuple(kp.shape)} and {tuple(exp.shape)}")
    x = (kp @ R + exp) * scale.reshape(-1, 1, 1)
    shift = torch.zeros_like(x[:, :1])
    shift[..., :2] = t[:, None, :2]
    return x + shift
