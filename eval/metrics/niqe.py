"""NIQE, the MATLAB release's algorithm (LIVE ``computequality.m``) with its pristine model shipped in
``niqe_pristine.txt`` (LIVE's ``modelparameters.mat``, with LIVE's notice).

For an RGB frame: MATLAB ``rgb2gray`` (uint8, rounded) and a crop to whole 96×96 blocks; then at two scales the
MSCN coefficients ``(I − μ) / (σ + 1)`` (7×7 Gaussian, σ = 7/6, replicate borders), and per block (96/scale pixels)
18 AGGD features: shape and mean scale of the coefficients, and shape, mean, left and right scales of their products
with the four neighbours (circular shifts within the block). The second scale is MATLAB ``imresize(I, 0.5)``
(bicubic, antialiased, mirrored borders). The score is the Mahalanobis-like distance between the frame's feature
Gaussian (``nanmean``, ``nancov``) and the pristine one. Lower is better.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import correlate
from scipy.special import gamma
from torchmetrics import Metric

__all__ = ["NIQE", "matlab_imresize", "matlab_rgb2gray", "niqe", "niqe_features", "pristine_model"]

BLOCK = 96
_GAMMA_GRID = np.arange(0.2, 10.001, 0.001)  # MATLAB 0.2:0.001:10
_R_GAMMA = gamma(2 / _GAMMA_GRID) ** 2 / (gamma(1 / _GAMMA_GRID) * gamma(3 / _GAMMA_GRID))
_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))


@cache
def pristine_model() -> tuple[np.ndarray, np.ndarray]:
    """LIVE's pristine ``(36,)`` mean and ``(36, 36)`` covariance."""
    rows = np.loadtxt(Path(__file__).with_name("niqe_pristine.txt"))
    return rows[0], rows[1:]


@cache
def _gaussian_window() -> np.ndarray:
    """MATLAB ``fspecial('gaussian', 7, 7/6)``, normalised to sum 1."""
    x = np.arange(-3, 4)
    g = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * (7 / 6) ** 2))
    return g / g.sum()


def matlab_rgb2gray(image: np.ndarray) -> np.ndarray:
    """MATLAB ``rgb2gray`` of an ``(H, W, 3)`` uint8 RGB image: ``(H, W)`` float64 holding the rounded uint8 values."""
    coefficients = np.linalg.inv(np.array([[1.0, 0.956, 0.621], [1.0, -0.272, -0.647], [1.0, -1.106, 1.703]]))[0]
    grey = image.astype(np.float64) @ coefficients
    return np.clip(np.floor(grey + 0.5), 0, 255)


def _cubic(x: np.ndarray) -> np.ndarray:
    a = np.abs(x)
    return (1.5 * a**3 - 2.5 * a**2 + 1) * (a <= 1) + (-0.5 * a**3 + 2.5 * a**2 - 4 * a + 2) * ((a > 1) & (a <= 2))


def _resize_matrix(in_length: int, scale: float) -> np.ndarray:
    """``(out, in)`` matrix of MATLAB's ``imresize`` contributions along one axis (bicubic, antialiased)."""
    out_length = math.ceil(in_length * scale)
    width = 4.0 / scale if scale < 1 else 4.0
    u = np.arange(1, out_length + 1) / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    indices = left[:, None] + np.arange(math.ceil(width) + 2)[None, :]
    distance = u[:, None] - indices
    weights = scale * _cubic(distance * scale) if scale < 1 else _cubic(distance)
    weights /= weights.sum(1, keepdims=True)
    mirror = np.concatenate([np.arange(in_length), np.arange(in_length)[::-1]])  # MATLAB's symmetric padding
    columns = mirror[np.mod(indices.astype(np.int64) - 1, len(mirror))]
    matrix = np.zeros((out_length, in_length))
    np.add.at(matrix, (np.repeat(np.arange(out_length), indices.shape[1]), columns.ravel()), weights.ravel())
    return matrix


def matlab_imresize(image: np.ndarray, scale: float) -> np.ndarray:
    """MATLAB ``imresize(image, scale)`` (bicubic, antialiasing) of a 2-D float64 image; rows first, as MATLAB does
    for equal scales."""
    return _resize_matrix(image.shape[0], scale) @ image @ _resize_matrix(image.shape[1], scale).T


def _aggd(values: np.ndarray) -> tuple[float, float, float]:
    """MATLAB ``estimateaggdparam``: shape ``alpha`` and left / right scales of an asymmetric generalised Gaussian."""
    left_std = np.sqrt(np.mean(values[values < 0] ** 2))
    right_std = np.sqrt(np.mean(values[values > 0] ** 2))
    gamma_hat = left_std / right_std
    r_hat = np.mean(np.abs(values)) ** 2 / np.mean(values**2)
    r_hat_norm = r_hat * (gamma_hat**3 + 1) * (gamma_hat + 1) / (gamma_hat**2 + 1) ** 2
    alpha = _GAMMA_GRID[np.argmin((_R_GAMMA - r_hat_norm) ** 2)]
    ratio = np.sqrt(gamma(1 / alpha) / gamma(3 / alpha))
    return float(alpha), float(left_std * ratio), float(right_std * ratio)


def _block_features(block: np.ndarray) -> list[float]:
    """MATLAB ``computefeature``: the 18 features of one block of MSCN coefficients."""
    alpha, beta_l, beta_r = _aggd(block.ravel())
    features = [alpha, (beta_l + beta_r) / 2]
    for shift in _SHIFTS:
        alpha, beta_l, beta_r = _aggd((block * np.roll(block, shift, axis=(0, 1))).ravel())
        mean = (beta_r - beta_l) * gamma(2 / alpha) / gamma(1 / alpha)
        features += [alpha, mean, beta_l, beta_r]
    return features


def niqe_features(grey: np.ndarray) -> np.ndarray:
    """``(blocks, 36)`` features of a 2-D grey image (0–255), cropped to whole 96×96 blocks (NaN where a block is
    flat)."""
    rows, cols = grey.shape[0] // BLOCK, grey.shape[1] // BLOCK
    if rows == 0 or cols == 0:
        raise ValueError(f"NIQE needs an image of at least {BLOCK}×{BLOCK} pixels, got {grey.shape[1]}×{grey.shape[0]}")
    image = grey[: rows * BLOCK, : cols * BLOCK].astype(np.float64)
    window = _gaussian_window()
    scales = []
    for scale in (1, 2):
        mu = correlate(image, window, mode="nearest")
        sigma = np.sqrt(np.abs(correlate(image * image, window, mode="nearest") - mu * mu))
        mscn = (image - mu) / (sigma + 1)
        size = BLOCK // scale
        with np.errstate(invalid="ignore", divide="ignore"):
            scales.append(np.array([_block_features(mscn[r * size : (r + 1) * size, c * size : (c + 1) * size])
                                    for c in range(cols) for r in range(rows)]))  # fmt: skip
        if scale == 1:
            image = matlab_imresize(image, 0.5)
    return np.concatenate(scales, axis=1)


def niqe(image_rgb_uint8: np.ndarray) -> float:
    """NIQE of an ``(H, W, 3)`` uint8 RGB image (or ``(H, W)`` grey) as MATLAB's ``computequality`` scores it.

    Raises:
        ValueError: the image is smaller than one 96×96 block, or has too few textured blocks for a covariance.
    """
    image = np.asarray(image_rgb_uint8)
    grey = matlab_rgb2gray(image) if image.ndim == 3 else image.astype(np.float64)
    features = niqe_features(grey)
    mu_pristine, cov_pristine = pristine_model()
    mu = np.nanmean(features, axis=0)
    complete = features[~np.isnan(features).any(axis=1)]
    if len(complete) < 2:
        raise ValueError("NIQE: fewer than 2 textured 96×96 blocks; the image is too small or flat to score")
    cov = np.cov(complete, rowvar=False)
    d = mu_pristine - mu
    return float(np.sqrt(d @ np.linalg.pinv((cov_pristine + cov) / 2) @ d))


class NIQE(Metric):
    """Mean NIQE over frames; ``update(frames)`` takes ``(N, H, W, 3)`` or ``(N, 3, H, W)`` uint8 RGB."""

    full_state_update = False
    higher_is_better = False
    is_differentiable = False

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("frames", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, frames: torch.Tensor | np.ndarray) -> None:
        frames = frames.detach().cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
        if frames.ndim == 4 and frames.shape[1] == 3 and frames.shape[-1] != 3:
            frames = frames.transpose(0, 2, 3, 1)
        self.add(niqe(frame) for frame in frames)

    def add(self, scores: Iterable[float]) -> None:
        """Count per-frame NIQE scores (:func:`niqe`)."""
        for score in scores:
            self.total += score
            self.frames += 1

    def compute(self) -> torch.Tensor:
        return self.total / self.frames
