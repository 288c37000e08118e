"""The documented range of every numeric control (inclusive), and the check that enforces it.

=======================  ==============  =======================================================================
control                  range           meaning of the ends
=======================  ==============  =======================================================================
``lip_scale``            0 .. 3          0: closed lips (no lip motion); 1: as predicted; 3: very exaggerated
style edit ``beta``      0 .. 3          0: the pronunciation's component removed; 1: unchanged
emotion ``intensity``    0 .. 2          0: no emotion; 0.5: the paper's default; 1: the predicted emotion; 2: doubled
``loudness_gain``        0 .. 0.1        lip scale change per dB above the reference; 0: loudness has no effect
``loudness_reference``   -90 .. 0        dBFS that keeps the lips as predicted (default -20)
``loudness_bounds``      0 .. 3          the lowest and highest per-frame scale (default 0.7 .. 1.4)
``blink``                0 .. 1          eye closure: 0 the source's eyes, 1 closed
``gaze_x``               -30 .. 30       horizontal gaze (LivePortrait's eyeball-direction slider), right positive
``gaze_y``               -63 .. 63       vertical gaze (LivePortrait's slider), up positive
``pose_angle``           -45 .. 45       degrees of pitch, yaw or roll added to the source's pose
``pose_shift``           -0.5 .. 0.5     translation (x, y) added to the source's, in LivePortrait's units
=======================  ==============  =======================================================================

Values must be finite; outside the range the motion leaves what LivePortrait can render (a NaN gives a black face).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["RANGES", "check_range"]

RANGES: dict[str, tuple[float, float]] = {
    "lip_scale": (0.0, 3.0),
    "beta": (0.0, 3.0),
    "intensity": (0.0, 2.0),
    "loudness_gain": (0.0, 0.1),
    "loudness_reference": (-90.0, 0.0),
    "loudness_bounds": (0.0, 3.0),
    "blink": (0.0, 1.0),
    "gaze_x": (-30.0, 30.0),
    "gaze_y": (-63.0, 63.0),
    "pose_angle": (-45.0, 45.0),
    "pose_shift": (-0.5, 0.5),
}


def check_range(kind: str, values: float | Iterable[float], name: str) -> None:
    """Raise ``ValueError`` naming ``name`` (an option, a timeline track) when a value of ``kind`` is not finite or
    outside :data:`RANGES`."""
    lo, hi = RANGES[kind]
    for value in [values] if isinstance(values, (int, float)) else list(values):
        if not (math.isfinite(value) and lo <= value <= hi):
            raise ValueError(f"{name}: {value} is outside its range [{lo:g}, {hi:g}] (see pctalk.control.ranges)")
