"""Crop geometry after LivePortrait (``src/utils/crop.py``): a square, roll-free crop from facial landmarks.

Two points (between the eyes, centre of the lips) fix the face's orientation; the landmarks' extent in that frame,
squared and scaled, fixes the size; the centre is shifted along the face's axes by ``vx_ratio``/``vy_ratio`` times
the size (negative ``vy_ratio`` moves the crop up, towards the forehead). All matrices map homogeneous pixel
coordinates (x, y, 1); ``M_o2c`` goes from the original image to the crop, ``M_c2o`` back.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

__all__ = [
    "box_crop_transform",
    "crop_rect",
    "eye_lip_points",
    "landmark_crop_transform",
    "transform_points",
    "warp",
]

DTYPE = np.float32


def eye_lip_points(landmarks: np.ndarray) -> np.ndarray:
    """``(2, 2)``: the centre between the eyes and the centre of the lips, from 5, 68, 106 or 203 landmarks."""
    n = landmarks.shape[0]
    if n == 203:
        left, right = landmarks[[0, 6, 12, 18]].mean(0), landmarks[[24, 30, 36, 42]].mean(0)
        lip = (landmarks[48] + landmarks[66]) / 2
    elif n == 106:
        left, right = landmarks[[33, 35, 40, 39]].mean(0), landmarks[[87, 89, 94, 93]].mean(0)
        lip = (landmarks[52] + landmarks[61]) / 2
    elif n == 68:
        left, right = landmarks[[36, 39]].mean(0), landmarks[[42, 45]].mean(0)
        lip = (landmarks[48] + landmarks[54]) / 2
    elif n == 5:
        left, right, lip = landmarks[0], landmarks[1], (landmarks[3] + landmarks[4]) / 2
    else:
        raise ValueError(f"cannot find eyes and lips in {n} landmarks; expected 5, 68, 106 or 203")
    return np.stack([(left + right) / 2, lip]).astype(landmarks.dtype)


def crop_rect(
    landmarks: np.ndarray, scale: float, vx_ratio: float = 0.0, vy_ratio: float = 0.0
) -> tuple[np.ndarray, np.ndarray, float]:
    """Centre ``(2,)``, size ``(2,)`` (square) and angle (radians) of the crop around ``landmarks (N, 2)``."""
    eye, lip = eye_lip_points(landmarks)
    uy = lip - eye
    length = np.linalg.norm(uy)
    uy = np.array([0, 1], dtype=DTYPE) if length <= 1e-3 else uy / length  # face axis, eyes -> lips
    ux = np.array((uy[1], -uy[0]), dtype=DTYPE)
    angle = math.acos(ux[0]) * (-1 if ux[1] < 0 else 1)
    axes = np.array([ux, uy])
    centre0 = landmarks.mean(axis=0)
    local = (landmarks - centre0) @ axes.T  # landmarks in the face's frame
    lo, hi = local.min(axis=0), local.max(axis=0)
    mid = (lo + hi) / 2
    size = hi - lo
    size[:] = size.max()
    size *= scale
    centre = centre0 + ux * mid[0] + uy * mid[1]
    centre = centre + ux * (vx_ratio * size) + uy * (vy_ratio * size)
    return centre, size, angle


def _similarity(centre: np.ndarray, side: float, angle: float, dsize: int) -> np.ndarray:
    """``(3, 3)`` original -> crop: rotate by ``-angle`` about ``centre``, scale ``side`` to ``dsize``, centre it."""
    s = dsize / side
    cos, sin = math.cos(angle), math.sin(angle)
    cx, cy = centre[0], centre[1]
    t = dsize / 2
    m = np.array(
        [
            [s * cos, s * sin, t - s * (cos * cx + sin * cy)],
            [-s * sin, s * cos, t - s * (-sin * cx + cos * cy)],
            [0, 0, 1],
        ],
        dtype=DTYPE,
    )
    return m


def landmark_crop_transform(
    landmarks: np.ndarray, dsize: int, scale: float, vx_ratio: float = 0.0, vy_ratio: float = 0.0, rotate: bool = True
) -> np.ndarray:
    """``(3, 3)`` original -> crop transform of LivePortrait's crop around ``landmarks (N, 2)``; with ``rotate`` the
    face's roll is removed."""
    centre, size, angle = crop_rect(landmarks.astype(DTYPE), scale, vx_ratio, vy_ratio)
    return _similarity(centre, float(size[0]), angle if rotate else 0.0, dsize)


def box_crop_transform(centre: np.ndarray, side: float, dsize: int) -> np.ndarray:
    """``(3, 3)`` original -> crop transform of an axis-aligned square of ``side`` pixels around ``centre``."""
    return _similarity(np.asarray(centre, dtype=DTYPE), side, 0.0, dsize)


def warp(image: np.ndarray, m: np.ndarray, dsize: tuple[int, int] | int, border: int | None = None) -> np.ndarray:
    """``cv2.warpAffine`` of ``image`` by the top two rows of ``m`` into ``dsize`` (width, height), bilinear, black
    outside."""
    size = (dsize, dsize) if isinstance(dsize, int) else tuple(dsize)
    if border is None:
        return cv2.warpAffine(image, m[:2], size, flags=cv2.INTER_LINEAR)
    return cv2.warpAffine(image, m[:2], size, flags=cv2.INTER_LINEAR, borderMode=border, borderValue=0)


def transform_points(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Apply ``m`` (2x3 or 3x3) to ``points (N, 2)``."""
    return points @ m[:2, :2].T + m[:2, 2]
