"""Blinks and gaze: pure functions on the eye keypoints of the expression deformation ``exp (T, 21, 3)``.

The directions are LivePortrait's own expression edits (its Gradio retargeting pipeline), so a value means what it
means there:

- **blink closure** ``c`` in [0, 1] (0: the eyes as they are; 1: closed): LivePortrait's *wink* edit at its slider's
  maximum (39), applied to both eyes: the upper lids (keypoints 11 and 15) move down by 0.039 in ``y``, the lower
  lids (13 and 16) up by 0.0117.
- **gaze** ``(x, y)`` in LivePortrait's *eyeball direction* units (its sliders: ``x`` in [-30, 30], right positive;
  ``y`` in [-63, 63], up positive): ``x`` moves keypoints 11 and 15 sideways (0.0007 or 0.001 per unit, the eye on
  the side of the gaze moving more), ``y`` moves them vertically (-0.001 per unit) and half-closes the lids with it
  (LivePortrait's coupled ``blink = -y / 2``).

Both move only :data:`~pctalk.keypoints.regions.EYES` keypoints. With LivePortrait's eye retargeting MLP (the
stitching file), a blink is instead its target eye-open ratio, see :func:`eye_open_ratio` and
:meth:`pctalk.keypoints.liveportrait.LivePortrait.retarget_eyes`.

:func:`natural_blinks` and :func:`natural_gaze` make the built-in templates (an image has no blinks of its own);
:func:`eye_signals` reads blink and gaze back from a video's expression deformation (the ``video`` channel).
"""

from __future__ import annotations

import numpy as np
import torch

from pctalk.keypoints.regions import NUM_KP

__all__ = [
    "BLINK",
    "blink_delta",
    "eye_open_ratio",
    "eye_signals",
    "gaze_delta",
    "natural_blinks",
    "natural_gaze",
]

#: Upper and lower lid keypoints of the two eyes.
UPPER_LIDS, LOWER_LIDS = (11, 15), (13, 16)


def _direction(weights: dict[tuple[int, int], float]) -> torch.Tensor:
    v = torch.zeros(NUM_KP, 3)
    for (kp, axis), w in weights.items():
        v[kp, axis] = w
    return v


#: ``(21, 3)`` deformation of a full blink (closure 1).
BLINK = _direction({(11, 1): 0.039, (15, 1): 0.039, (13, 1): -0.0117, (16, 1): -0.0117})
#: ``(21, 3)`` per unit of gaze: ``x`` towards each side (the near eye 0.001, the far one 0.0007), and ``y`` (with
#: LivePortrait's coupled lid motion ``blink = -y / 2``: lids 11, 15 by -0.001 + 0.0005, 13, 16 by -0.00015).
_GAZE_RIGHT = _direction({(11, 0): 0.0007, (15, 0): 0.001})
_GAZE_LEFT = _direction({(11, 0): 0.001, (15, 0): 0.0007})
_GAZE_UP = _direction({(11, 1): -0.0005, (15, 1): -0.0005, (13, 1): -0.00015, (16, 1): -0.00015})


def blink_delta(closure: torch.Tensor) -> torch.Tensor:
    """``(T, 21, 3)`` deformation of closures ``(T,)`` (0 open, 1 closed); zero outside the lids."""
    return closure.reshape(-1, 1, 1) * BLINK.to(closure)


def gaze_delta(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``(T, 21, 3)`` deformation of gaze ``x, y (T,)`` in LivePortrait's eyeball-direction units."""
    x, y = x.reshape(-1, 1, 1), y.reshape(-1, 1, 1)
    sideways = torch.where(x > 0, x * _GAZE_RIGHT.to(x), x * _GAZE_LEFT.to(x))
    return sideways + y * _GAZE_UP.to(y)


def eye_signals(exp: torch.Tensor, reference: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Blink closure and gaze of each frame of a video's expression deformation ``exp (T, 21, 3)``: the least-squares
    fit of the eye keypoints' deviation from ``reference (21, 3)`` (default: the video's per-value median) by
    :func:`blink_delta` and :func:`gaze_delta`. The closure is measured from the video's most open eyes (its 10th
    percentile) and clipped to [0, 1].

    Returns:
        closure ``(T,)`` and gaze ``(T, 2)`` (``x``, ``y``).
    """
    exp = exp.float()
    reference = exp.median(dim=0).values if reference is None else reference.float()
    delta = exp - reference
    # x: keypoints 11 and 15 together move 0.0017 per unit, whichever side the gaze is on
    x = (delta[:, 11, 0] + delta[:, 15, 0]) / 0.0017
    lids = [*UPPER_LIDS, *LOWER_LIDS]
    basis = torch.stack([BLINK[lids, 1], _GAZE_UP[lids, 1]], dim=1).to(exp)  # (4, 2)
    solution = torch.linalg.lstsq(basis.expand(len(exp), -1, -1), delta[:, lids, 1:2]).solution[..., 0]  # (T, 2)
    closure, y = solution[:, 0], solution[:, 1]
    if len(closure) > 1:
        closure = closure - torch.quantile(closure, 0.1)
    return closure.clamp(0, 1), torch.stack([x, y], dim=1)


def eye_open_ratio(landmarks: np.ndarray) -> np.ndarray:
    """``(2,)`` open ratio (lid distance over eye width) of the left and right eye from ``(N, 2)`` landmarks.

    On LivePortrait's 203 points this is its ``calc_eye_close_ratio`` (points 6-18 over 0-12, and 30-42 over 24-36),
    the input of its eye retargeting MLP; on dlib's 68 points the mean of the two lid distances over the eye width.
    """
    lm = np.asarray(landmarks, np.float64)

    def dist(a: int, b: int) -> float:
        return float(np.linalg.norm(lm[a] - lm[b]))

    if len(lm) == 203:
        pairs = ((6, 18, 0, 12), (30, 42, 24, 36))
        return np.array([dist(a, b) / (dist(c, d) + 1e-6) for a, b, c, d in pairs])
    if len(lm) == 68:
        eyes = ((37, 41, 38, 40, 36, 39), (43, 47, 44, 46, 42, 45))
        return np.array([(dist(a, b) + dist(c, d)) / 2 / (dist(e, f) + 1e-6) for a, b, c, d, e, f in eyes])
    raise ValueError(f"cannot find the eyes in {len(lm)} landmarks; expected LivePortrait's 203 or dlib's 68")


def _ramp(n: int) -> np.ndarray:
    """``n`` samples of a smooth 0 -> 1 step (excluding 0, ending at 1)."""
    s = np.arange(1, n + 1) / n
    return s * s * (3 - 2 * s)


def natural_blinks(n: int, fps: int = 25, seed: int = 0) -> np.ndarray:
    """``(n,)`` closures of spontaneous blinking while speaking: blinks about every 3 s (log-normal intervals,
    median 2.8 s, 1-8 s apart, as measured in conversation: 15-25 a minute), each closing in 3 frames, closed for
    one, opening in 4 (about 0.3 s at 25 fps; lids close faster than they open). Deterministic for a ``seed``."""
    rng = np.random.default_rng(seed)
    closure = np.zeros(n, np.float32)
    shape = np.concatenate([_ramp(3), [1.0], 1 - _ramp(4)]).astype(np.float32)
    start = int(fps * rng.uniform(0.6, 2.0))
    while start < n:
        stop = min(n, start + len(shape))
        closure[start:stop] = shape[: stop - start]
        start += int(fps * float(np.clip(rng.lognormal(np.log(2.8), 0.45), 1.0, 8.0)))
    return closure


def natural_gaze(n: int, fps: int = 25, seed: int = 0) -> np.ndarray:
    """``(n, 2)`` gaze of a speaker looking about: fixations of about a second (log-normal, median 1.2 s) at small
    offsets (``x`` ~ N(0, 5) within ±12, ``y`` ~ N(0, 4) within ±10, LivePortrait's units), joined by 2-frame
    saccades, starting straight ahead. Deterministic for a ``seed``."""
    rng = np.random.default_rng(seed + 1)
    gaze = np.zeros((n, 2), np.float32)
    here, frame = np.zeros(2), 0
    while frame < n:
        hold = max(3, int(fps * float(np.clip(rng.lognormal(np.log(1.2), 0.5), 0.3, 4.0))))
        gaze[frame : frame + hold] = here
        frame += hold
        there = np.array([np.clip(rng.normal(0, 5), -12, 12), np.clip(rng.normal(0, 4), -10, 10)])
        for k, a in enumerate(_ramp(2)):
            if frame + k < n:
                gaze[frame + k] = here + a * (there - here)
        here, frame = there, frame + 2
    return gaze
