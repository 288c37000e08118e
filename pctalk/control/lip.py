"""LAC's lip controls: pure functions on the lip deformation ``D = s * exp[LIPS]`` of shape ``(..., 6, 3)``.

- :func:`scale_lips`: a global lip scale (or one per frame).
- :func:`loudness_factor`: a per-frame scale from audio loudness (louder speech, wider mouth), smoothed.
- :func:`edit_style`: word-level style editing: ``D' = D + (beta - 1)(D . v) v`` scales only the component of
  ``D`` along a unit pronunciation vector ``v``; :data:`PRONUNCIATIONS` holds the built-in vectors and
  :func:`pronunciation_vector` derives new ones from example frames.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pctalk.keypoints.regions import LIPS

__all__ = [
    "PRONUNCIATIONS",
    "edit_style",
    "loudness_factor",
    "pronunciation",
    "pronunciation_vector",
    "scale_lips",
]


def _vector(weights: dict[tuple[int, int], float]) -> torch.Tensor:
    """A unit ``(6, 3)`` lip vector from ``{(keypoint, axis): weight}`` (keypoints by their 0-21 index)."""
    v = torch.zeros(len(LIPS), 3)
    for (kp, axis), w in weights.items():
        v[LIPS.index(kp), axis] = w
    return v / v.norm()


_PURSING = _vector({(14, 1): 0.001, (17, 2): -0.0005})
_WIDENING = _vector({(20, 2): -0.001, (20, 1): -0.001, (14, 1): -0.001})
_OPENING = _vector({(19, 1): 0.001, (19, 2): 0.0001, (17, 1): -0.0001})

#: Built-in pronunciation vectors (LivePortrait expression directions, lips only), unit ``(6, 3)``, keyed by the
#: example words: pursing ("too", "woo"), widening ("bee", "eee"), opening ("duck", "aaa"), and by the official
#: release's articulation names ("pursing", "widening", "opening").
PRONUNCIATIONS: dict[str, torch.Tensor] = {
    "too": _PURSING,
    "woo": _PURSING,
    "pursing": _PURSING,
    "bee": _WIDENING,
    "eee": _WIDENING,
    "widening": _WIDENING,
    "duck": _OPENING,
    "aaa": _OPENING,
    "opening": _OPENING,
}


def pronunciation(name: str) -> torch.Tensor:
    """The built-in vector ``name`` (one of :data:`PRONUNCIATIONS`)."""
    try:
        return PRONUNCIATIONS[name].clone()
    except KeyError:
        raise ValueError(f"no built-in pronunciation {name!r}; choose one of {', '.join(PRONUNCIATIONS)}") from None


def _check_lips(D: torch.Tensor) -> None:
    if D.ndim < 2 or tuple(D.shape[-2:]) != (len(LIPS), 3):
        raise ValueError(f"lip deformation must be (..., {len(LIPS)}, 3), got {tuple(D.shape)}")


def scale_lips(D: torch.Tensor, factor: float | torch.Tensor) -> torch.Tensor:
    """``D * factor``; ``factor`` is a number or per-frame ``(..., T)`` values for ``D (..., T, K, 3)`` (the six lip
    keypoints, or all 21 for a LAC of target ``all``, whose whole deformation the official release scales)."""
    if D.ndim < 2 or D.shape[-1] != 3:
        raise ValueError(f"deformation must be (..., K, 3), got {tuple(D.shape)}")
    factor = torch.as_tensor(factor, dtype=D.dtype, device=D.device)
    return D * (factor[..., None, None] if factor.ndim else factor)


def loudness_factor(
    loudness_db: torch.Tensor,
    reference_db: float = -20.0,
    gain: float | torch.Tensor = 0.02,
    lo: float = 0.7,
    hi: float = 1.4,
    smoothing: int = 5,
) -> torch.Tensor:
    """Per-frame lip scale from loudness: ``1 + gain * (loudness - reference)``, clamped to ``[lo, hi]`` and
    smoothed by a centred moving average of ``smoothing`` frames.

    Args:
        loudness_db: ``(..., T)`` RMS loudness per frame in dBFS (:func:`pctalk.audio.loudness.frame_loudness`).
        reference_db: the loudness that keeps the lips as predicted.
        gain: scale change per dB, or ``(T,)`` per frame.
        lo, hi: bounds of the scale.
        smoothing: moving-average length in frames (1 = none).

    Returns:
        ``(..., T)`` factors for :func:`scale_lips`.
    """
    factor = (1 + gain * (loudness_db - reference_db)).clamp(lo, hi)
    if smoothing > 1 and factor.shape[-1] > 1:
        lead = factor.shape[:-1]
        x = factor.reshape(-1, 1, factor.shape[-1])
        pad = smoothing // 2
        x = F.pad(x, (pad, smoothing - 1 - pad), mode="replicate")
        factor = F.avg_pool1d(x, smoothing, stride=1).reshape(*lead, -1)
    return factor


def edit_style(D: torch.Tensor, direction: torch.Tensor, beta: float | torch.Tensor) -> torch.Tensor:
    """Scale the component of ``D (..., 6, 3)`` along ``direction (6, 3)`` by ``beta``:
    ``D + (beta - 1)(D . v) v`` with ``v`` the unit direction; components orthogonal to ``v`` are unchanged.
    ``beta`` may be per frame ``(..., T)``."""
    _check_lips(D)
    v = direction.to(D) / direction.norm()
    projection = (D * v).sum(dim=(-2, -1), keepdim=True)
    beta = torch.as_tensor(beta, dtype=D.dtype, device=D.device)
    beta = beta[..., None, None] if beta.ndim else beta
    return D + (beta - 1) * projection * v


def pronunciation_vector(D: torch.Tensor, frames: torch.Tensor | list[int] | slice) -> torch.Tensor:
    """A unit pronunciation vector ``(6, 3)``: the mean of ``D (T, 6, 3)`` over the example ``frames`` (e.g. the
    frames where a word is spoken), normalised."""
    _check_lips(D)
    mean = D[frames].reshape(-1, len(LIPS), 3).mean(0)
    norm = mean.norm()
    if norm == 0:
        raise ValueError("the example frames have no lip deformation; pick frames where the sound is spoken")
    return mean / norm
