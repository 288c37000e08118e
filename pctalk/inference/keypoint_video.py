"""Drawing the 21 keypoints over time: a debugging view of the motion stage that needs no renderer."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from pctalk.keypoints.regions import BROWS, EYES, LIPS

__all__ = ["draw_keypoints"]

_COLOURS = {
    **{k: (230, 60, 60) for k in LIPS},
    **{k: (60, 200, 90) for k in EYES},
    **{k: (70, 120, 240) for k in BROWS},
}


def draw_keypoints(keypoints: torch.Tensor | np.ndarray, size: int = 256, extent: float = 1.2) -> np.ndarray:
    """``(T, 21, 3)`` driven keypoints -> ``(T, size, size, 3)`` uint8 frames: x and y (LivePortrait's normalised
    space, x right, y down) mapped from ``[-extent, extent]`` onto the image; lips red, eyes green, brows blue,
    the others grey; a label with the frame number."""
    points = keypoints.detach().cpu().numpy() if isinstance(keypoints, torch.Tensor) else np.asarray(keypoints)
    frames = np.full((len(points), size, size, 3), 24, np.uint8)
    scale = size / (2 * extent)
    for i, kp in enumerate(points):
        for k, (x, y, _) in enumerate(kp):
            centre = (round((float(x) + extent) * scale), round((float(y) + extent) * scale))
            cv2.circle(frames[i], centre, max(2, size // 100), _COLOURS.get(k, (180, 180, 180)), -1, cv2.LINE_AA)
        cv2.putText(
            frames[i], f"{i}", (4, size - 6), cv2.FONT_HERSHEY_SIMPLEX, size / 640, (200, 200, 200), 1, cv2.LINE_AA
        )
    return frames
