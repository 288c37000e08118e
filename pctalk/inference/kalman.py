"""Kalman filtering and (Rauch-Tung-Striebel) smoothing of motion sequences under a random-walk model, in torch,
batched over every coordinate at once.

Model: ``x_t = x_{t-1} + w_t``, ``w ~ N(0, q)`` (transition variance); ``z_t = x_t + v_t``, ``v ~ N(0, r)``
(observation variance). The forward filter gives the filtered means; the backward (RTS) pass gives the smoothed
means using the whole sequence. Variances are shared by all coordinates, so the gains are scalars per frame.

Offline generation smooths (:func:`kalman_smooth`, as the official release); streaming cannot see the future, so it
filters (:class:`KalmanFilter`, the forward pass alone, block by block): each frame's estimate uses the frames up
to it only. The filtered motion lags the smoothed one slightly (about a frame at PC-Talk's settings).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["KalmanFilter", "kalman_smooth"]

#: PC-Talk's settings for the lip deformation.
TRANSITION_VAR = 1e-5
OBSERVATION_VAR = 1e-6


def _forward(
    z: np.ndarray, q: float, r: float, mean: np.ndarray | None = None, variance: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """The forward filter over ``z (T, D)`` float64, continuing from the state after the previous frame (``mean``
    ``None``: ``z[0]`` is the first frame, with unit prior variance). Returns the filtered means ``(T, D)``, the
    filtered and the predicted variances ``(T,)`` and the state after the last frame. The variances are the same for
    every coordinate, so the gains are scalars; the loop runs in NumPy (a few microseconds a frame, no device
    round trip per frame)."""
    n = len(z)
    means, variances, predicted = np.empty_like(z), np.empty(n), np.empty(n)
    for t in range(n):
        if mean is None:  # unit prior variance at the first observation, then z_0
            mean, variance, p = z[t].copy(), r / (1 + r), 1.0
        else:
            p = variance + q
            gain = p / (p + r)
            mean = mean + gain * (z[t] - mean)
            variance = (1 - gain) * p
        means[t], variances[t], predicted[t] = mean, variance, p
    return means, variances, predicted, mean, variance


def _as_series(x: torch.Tensor) -> np.ndarray:
    """``x (T, ...)`` as ``(T, D)`` float64 on the host."""
    return x.detach().reshape(x.shape[0], -1).to("cpu", torch.float64).numpy()


def kalman_smooth(
    x: torch.Tensor, transition_var: float = TRANSITION_VAR, observation_var: float = OBSERVATION_VAR
) -> torch.Tensor:
    """Smooth ``x (T, ...)`` along its first dimension; every other coordinate is an independent series.

    As the official release (pykalman's ``KalmanFilter(initial_state_mean=x[0], ...).smooth``): the state starts at
    the first observation with unit variance; sequences shorter than three frames are returned unchanged.
    """
    n = x.shape[0]
    if n < 3:
        return x.clone()
    means, variances, predicted, _, _ = _forward(_as_series(x), float(transition_var), float(observation_var))
    smoothed = means.copy()
    for t in range(n - 2, -1, -1):  # backward (RTS) pass
        gain = variances[t] / predicted[t + 1]
        smoothed[t] = means[t] + gain * (smoothed[t + 1] - means[t])
    return torch.from_numpy(smoothed).to(x.device, x.dtype).reshape(x.shape)


class KalmanFilter:
    """The causal form of :func:`kalman_smooth`: the forward filter alone, fed block by block (its state carries
    over), equal to pykalman's ``KalmanFilter(initial_state_mean=x[0], ...).filter`` means on the whole sequence."""

    def __init__(self, transition_var: float = TRANSITION_VAR, observation_var: float = OBSERVATION_VAR) -> None:
        self.q, self.r = float(transition_var), float(observation_var)
        self.mean: np.ndarray | None = None
        self.variance = 0.0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The filtered ``x (T, ...)``, continuing from the previous call's last frame."""
        means, _, _, self.mean, self.variance = _forward(_as_series(x), self.q, self.r, self.mean, self.variance)
        return torch.from_numpy(means).to(x.device, x.dtype).reshape(x.shape)
