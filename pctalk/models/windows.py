"""Sliding-window autoregressive prediction over any length: windows of ``T`` frames overlapping by ``T // 5``,
each warm-started from the previous window's predictions of the overlap, which are dropped from its output."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["Window", "predict_windows", "window_plan"]


@dataclass(frozen=True)
class Window:
    """Frames ``start .. stop`` of which the first ``warm`` repeat the previous window's last predictions."""

    start: int
    stop: int
    warm: int


def window_plan(n_frames: int, window: int = 25, overlap: int | None = None) -> list[Window]:
    """The windows covering ``n_frames`` frames: ``window`` frames each, consecutive windows sharing ``overlap``
    (default ``window // 5``); the last one may be shorter, and a clip shorter than one window is one window."""
    if n_frames < 1:
        raise ValueError(f"need at least one frame, got {n_frames}")
    if window < 2:
        raise ValueError(f"window must be at least 2 frames, got {window}")
    overlap = window // 5 if overlap is None else overlap
    if not 0 <= overlap < window:
        raise ValueError(f"overlap must be in [0, {window}), got {overlap}")
    plan = [Window(0, min(window, n_frames), 0)]
    while plan[-1].stop < n_frames:
        start = plan[-1].stop - overlap
        plan.append(Window(start, min(start + window, n_frames), overlap))
    return plan


def predict_windows(
    generate: Callable[[torch.Tensor, torch.Tensor | None, Window], torch.Tensor],
    audio: torch.Tensor,
    window: int = 25,
    overlap: int | None = None,
) -> torch.Tensor:
    """Run ``generate(audio_window (B, W, A), warm_start (B, K, D) | None, window) -> (B, W, D)`` window by window
    over ``audio (B, N, A)``; returns ``(B, N, D)`` with every frame predicted once. The next window is warm-started
    from the last ``overlap`` frames ``generate`` returned (so a correction it applies, such as the lip refiner's,
    carries into the next window, as in the official release)."""
    outputs: list[torch.Tensor] = []
    previous: torch.Tensor | None = None
    for w in window_plan(audio.shape[1], window, overlap):
        warm = previous[:, previous.shape[1] - w.warm :] if w.warm else None
        out = generate(audio[:, w.start : w.stop], warm, w)
        outputs.append(out[:, w.warm :])
        previous = out
    return torch.cat(outputs, dim=1)
