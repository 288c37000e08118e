"""Keyframed controls: any control as values over time, linearly interpolated per frame.

``timeline.json``::

    {"controls": {
        "lip_scale":           [[0.0, 1.0], [2.5, 1.4]],
        "style_edit:duck":     [[0.0, 1.0], [1.0, 1.8]],
        "emotion:happy:lips":  [[0.0, 0.0], [3.0, 1.0]]
    }}

Each track is ``[time in seconds, value]`` keyframes; between keyframes the value is interpolated linearly, before
the first and after the last it holds. Control names: ``lip_scale``, ``loudness_gain`` (the loudness-driven lip
scale's gain per dB; the track turns that scale on), ``style_edit:<pronunciation>`` (the beta of a built-in
pronunciation vector), ``emotion:<emotion or source>:<region>`` (an intensity), and the pose, blink and gaze
channels' tracks (:mod:`pctalk.inference.channels`): ``pose:pitch``, ``pose:yaw``, ``pose:roll`` (degrees added to the
source's pose), ``pose:x``, ``pose:y`` (translation), ``blink`` (0 open .. 1 closed), ``gaze:x``, ``gaze:y``.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pctalk.control.ranges import check_range

__all__ = ["Timeline"]

_NAMES = re.compile(
    r"lip_scale|loudness_gain|style_edit:[a-z]+|emotion:[a-z_]+:[a-z_]+|blink|gaze:[xy]|pose:(pitch|yaw|roll|x|y)"
)
#: the range (pctalk.control.ranges) of each channel track
_CHANNEL_RANGES = {"blink": "blink", "gaze:x": "gaze_x", "gaze:y": "gaze_y", "pose:x": "pose_shift",
                   "pose:y": "pose_shift", "pose:pitch": "pose_angle", "pose:yaw": "pose_angle",
                   "pose:roll": "pose_angle"}  # fmt: skip


def _is_keyframe(k: object) -> bool:
    return isinstance(k, (list, tuple)) and len(k) == 2 and all(isinstance(x, (int, float)) for x in k)


def _check_names(name: str) -> None:
    """The pronunciation, emotion and region a track names exist."""
    from pctalk.control.lip import PRONUNCIATIONS
    from pctalk.data.schema import EMOTIONS
    from pctalk.keypoints.regions import REGIONS

    parts = name.split(":")
    if parts[0] == "style_edit" and parts[1] not in PRONUNCIATIONS:
        raise ValueError(
            f"timeline control {name!r}: no pronunciation {parts[1]!r}; use one of {', '.join(PRONUNCIATIONS)}"
        )
    if parts[0] == "emotion":
        if parts[1] not in (*EMOTIONS, "audio", "text", "image", "video"):
            raise ValueError(
                f"timeline control {name!r}: unknown emotion {parts[1]!r}; use one of {', '.join(EMOTIONS)} or a "
                f"source (audio, text, image, video)"
            )
        if parts[2] not in REGIONS:
            raise ValueError(f"timeline control {name!r}: unknown region {parts[2]!r}; use one of {', '.join(REGIONS)}")


@dataclass
class Timeline:
    """Control name -> sorted ``(time_s, value)`` keyframes."""

    tracks: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, keys in self.tracks.items():
            if not _NAMES.fullmatch(name):
                raise ValueError(
                    f"unknown control {name!r} in the timeline; use lip_scale, loudness_gain, "
                    f"style_edit:<pronunciation>, emotion:<emotion or source>:<region>, blink, gaze:x, gaze:y or "
                    f"pose:pitch|yaw|roll|x|y"
                )
            _check_names(name)
            if not isinstance(keys, (list, tuple)) or not keys or any(not _is_keyframe(k) for k in keys):
                raise ValueError(
                    f"timeline control {name!r} needs a list of [time_s, value] keyframes, e.g. [[0, 1], [2.5, 1.4]]; "
                    f"got {keys!r}"
                )
            track = sorted((float(t), float(v)) for t, v in keys)
            times = [t for t, _ in track]
            if not all(math.isfinite(t) and t >= 0 for t in times):
                raise ValueError(f"timeline control {name!r}: keyframe times must be finite seconds >= 0, got {times}")
            kind = (name if name in ("lip_scale", "loudness_gain") else _CHANNEL_RANGES.get(name) or
                    ("beta" if name.startswith("style_edit:") else "intensity"))  # fmt: skip
            check_range(kind, [v for _, v in track], f"timeline control {name!r}")
            self.tracks[name] = track

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Timeline:
        """Read ``timeline.json`` (``{"controls": {name: [[t, v], ...]}}``)."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON: {err}") from None
        if not isinstance(data, dict) or not isinstance(data.get("controls"), dict):
            raise ValueError(f'{path} has no "controls" object (see pctalk.inference.timeline for the layout)')
        try:
            return cls(dict(data["controls"]))
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None

    def values(self, name: str, n_frames: int, fps: int = 25, start: int = 0) -> np.ndarray | None:
        """``(n_frames - start,)`` float32 values of control ``name`` for frames ``start .. n_frames - 1``, or
        ``None`` if the timeline lacks it."""
        if name not in self.tracks:
            return None
        times, values = zip(*self.tracks[name])
        return np.interp(np.arange(start, n_frames) / fps, times, values).astype(np.float32)

    def names(self, prefix: str = "") -> list[str]:
        return [n for n in self.tracks if n.startswith(prefix)]
