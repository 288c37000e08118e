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

import torch

__all__ = ["KalmanFilter", "kalman_smooth"]

#: PC-Talk's settings for the lip deformation.
TRANSITION_VAR = 1e-5
OBSERVATION_VAR = 1e-6


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
    z = x.reshape(n, -1).double()
    q, r = float(transition_var), float(observation_var)
    means = torch.empty_like(z)
    variances = torch.empty(n, dtype=torch.float64)
    predicted_vars = torch.empty(n, dtype=torch.float64)
    means[0], variances[0], predicted_vars[0] = z[0], r / (1 + r), 1.0  # unit prior variance, then z_0
    for t in range(1, n):  # forward filter (scalar variances: the same for every coordinate)
        p = variances[t - 1] + q
        gain = p / (p + r)
        means[t] = means[t - 1] + gain * (z[t] - means[t - 1])
        variances[t], predicted_vars[t] = (1 - gain) * p, p
    smoothed = means.clone()
    for t in range(n - 2, -1, -1):  # backward (RTS) pass
        gain = variances[t] / predicted_vars[t + 1]
        smoothed[t] = means[t] + gain * (smoothed[t + 1] - means[t])
    return smoothed.to(x.dtype).reshape(x.shape)


class KalmanFilter:
    """The causal form of :func:`kalman_smooth`: the forward filter alone, fed block by block (its state carries
    over), equal to pykalman's ``KalmanFilter(initial_state_mean=x[0], ...).filter`` means on the whole sequence."""

    def __init__(self, transition_var: float = TRANSITION_VAR, observation_var: float = OBSERVATION_VAR) -> None:
        self.q, self.r = float(transition_var), float(observation_var)
        self.mean: torch.Tensor | None = None
        self.variance = 0.0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The filtered ``x (T, ...)``, continuing from the previous call's last frame."""
        z = x.reshape(x.shape[0], -1).double()
        out = torch.empty_like(z)
        for t in range(len(z)):
            if self.mean is None:  # unit prior variance at the first observation, then z_0
                self.mean, self.variance = z[t].clone(), self.r / (1 + self.r)
            else:
                p = self.variance + self.q
                gain = p / (p + self.r)
                self.mean = self.mean + gain * (z[t] - self.mean)
                self.variance = (1 - gain) * p
            out[t] = self.mean
        return out.to(x.dtype).reshape(x.shape)
