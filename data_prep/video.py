"""Reading talking-face videos at 25 fps with decord, by timestamp, in chunks (long clips never sit in memory)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

__all__ = ["VideoError", "VideoReader"]


class VideoError(ValueError):
    """A video cannot be read."""


class VideoReader:
    """Frames of ``path`` resampled to ``fps`` by timestamp: target frame ``i`` is the last source frame that has
    started by ``i / fps``, so 30 fps and variable-frame-rate sources convert correctly.

    Raises:
        VideoError: the file is missing, unreadable, or has no frames.
    """

    def __init__(self, path: str | os.PathLike[str], fps: int = 25) -> None:
        import decord

        self.path = Path(path)
        if not self.path.is_file():
            raise VideoError(f"video not found: {self.path}")
        try:
            self._reader = decord.VideoReader(str(self.path), ctx=decord.cpu(0), num_threads=1)
            n = len(self._reader)
            if n == 0:
                raise VideoError(f"{self.path} has no video frames")
            stamps = np.asarray(self._reader.get_frame_timestamp(range(n)), dtype=np.float64)
        except VideoError:
            raise
        except Exception as err:  # decord raises its own error types for corrupt files
            raise VideoError(f"cannot read video {self.path}: {err}") from err
        starts = stamps[:, 0]
        self.duration = float(stamps[-1, 1])
        self.source_fps = float(self._reader.get_avg_fps())
        n_out = int(np.floor(self.duration * fps + 1e-6))
        targets = np.arange(n_out) / fps
        self.indices = np.clip(np.searchsorted(starts, targets + 1e-6, side="right") - 1, 0, n - 1)
        self.fps = fps

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)`` of the frames."""
        h, w = self._reader[0].shape[:2]
        return int(h), int(w)

    def chunks(self, size: int = 64) -> Iterator[np.ndarray]:
        """``(n, H, W, 3)`` uint8 RGB chunks of the 25 fps frames, in order.

        Raises:
            VideoError: a frame cannot be decoded (a truncated file, for instance).
        """
        for start in range(0, len(self.indices), size):
            idx = self.indices[start : start + size]
            try:
                yield self._reader.get_batch(idx.tolist()).asnumpy()
            except Exception as err:
                raise VideoError(f"cannot decode frames {idx[0]}..{idx[-1]} of {self.path}: {err}") from err
