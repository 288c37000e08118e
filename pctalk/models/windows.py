"""Sliding-window autoregressive prediction over any length: windows of ``T`` frames overlapping by ``T // 5``,
each warm-started from the previous window's predictions of the overlap, which are dropped from its output."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["Window", "WindowStream", "predict_windows", "window_plan"]


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


class WindowStream:
    """:func:`predict_windows` over inputs that arrive over time: ask :meth:`next` for the next window once its frames
    are known, :meth:`run` it; the windows and the calls are those of :func:`window_plan` for the final length, so the
    outputs equal the offline ones whatever the arrival."""

    def __init__(
        self,
        generate: Callable[[torch.Tensor, torch.Tensor | None, Window], torch.Tensor],
        window: int = 25,
        overlap: int | None = None,
    ) -> None:
        window_plan(1, window, overlap)  # validates
        self.generate, self.window = generate, window
        self.overlap = window // 5 if overlap is None else overlap
        self.last: Window | None = None
        self._previous: torch.Tensor | None = None

    @property
    def done(self) -> int:
        """Frames predicted so far."""
        return 0 if self.last is None else self.last.stop

    def next(self, known: int, closed: bool) -> Window | None:
        """The next window if ``known`` frames suffice (``closed``: no more will come), else ``None``."""
        if self.last is None:
            start, warm = 0, 0
        else:
            start, warm = self.last.stop - self.overlap, self.overlap
            if self.last.stop >= known:
                return None
        if start + self.window <= known:
            return Window(start, start + self.window, warm)
        return Window(start, known, warm) if closed and known > start + warm else None

    def run(self, w: Window, inputs: torch.Tensor) -> torch.Tensor:
        """Predict window ``w`` from its inputs ``(B, w.stop - w.start, A)``; returns its new frames
        ``(B, w.stop - w.start - w.warm, D)``."""
        prev = self._previous
        warm = prev[:, prev.shape[1] - w.warm :] if w.warm else None
        out = self.generate(inputs, warm, w)
        self.last, self._previous = w, out
        return out[:, w.warm :]


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
    if audio.shape[1] < 1:
        raise ValueError(f"need at least one frame, got {audio.shape[1]}")
    stream, outputs = WindowStream(generate, window, overlap), []
    while (w := stream.next(audio.shape[1], closed=True)) is not None:
        outputs.append(stream.run(w, audio[:, w.start : w.stop]))
    return torch.cat(outputs, dim=1)
