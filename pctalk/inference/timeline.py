"""Keyframed controls: any control as values over time, linearly interpolated per frame.

``timeline.json``::

    {"controls": {
        "lip_scale":           [[0.0, 1.0], [2.5, 1.4]],
        "style_edit:duck":     [[0.0, 1.0], [1.0, 1.8]],
        "emotion:happy:lips":  [[0.0, 0.0], [3.0, 1.0]]
    }}

Each track is ``[time in seconds, value]`` keyframes; between keyframes the value is interpolated linearly, before
the first and after the last it holds. Control names: ``lip_scale``, ``style_edit:<pronunciation>`` (the beta of
a built-in pronunciation vector), and ``emotion:<emotion or source>:<region>`` (an intensity).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["Timeline"]

_NAMES = re.compile(r"lip_scale|style_edit:[a-z]+|emotion:[a-z_]+:[a-z_]+")


@dataclass
class Timeline:
    """Control name -> sorted ``(time_s, value)`` keyframes."""

    tracks: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, keys in self.tracks.items():
            if not _NAMES.fullmatch(name):
                raise ValueError(
                    f"unknown control {name!r} in the timeline; use lip_scale, style_edit:<pronunciation> or "
                    f"emotion:<emotion or source>:<region>"
                )
            if not keys or any(len(k) != 2 for k in keys):
                raise ValueError(f"control {name!r} needs [time_s, value] keyframes, got {keys!r}")
            self.tracks[name] = sorted((float(t), float(v)) for t, v in keys)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Timeline:
        """Read ``timeline.json`` (``{"controls": {name: [[t, v], ...]}}``)."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON: {err}") from None
        if "controls" not in data:
            raise ValueError(f'{path} has no "controls" object')
        return cls({k: [tuple(x) for x in v] for k, v in data["controls"].items()})

    def values(self, name: str, n_frames: int, fps: int = 25) -> np.ndarray | None:
        """``(n_frames,)`` float32 values of control ``name`` per frame, or ``None`` if the timeline lacks it."""
        if name not in self.tracks:
            return None
        times, values = zip(*self.tracks[name])
        return np.interp(np.arange(n_frames) / fps, times, values).astype(np.float32)

    def names(self, prefix: str = "") -> list[str]:
        return [n for n in self.tracks if n.startswith(prefix)]
