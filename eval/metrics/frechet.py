"""The Fréchet distance between two Gaussians, and the feature statistics every Fréchet metric accumulates.

One function serves FID, FVD and E-FID: ``d² = |μ1 − μ2|² + tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^½)`` with the checks pytorch-fid
makes (a non-finite matrix square root is retried with ``eps`` on the diagonals; a complex result is accepted only
when its diagonal's imaginary part is negligible).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from scipy import linalg
from torchmetrics import Metric

__all__ = ["FeatureStatistics", "frechet_distance"]


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """Fréchet distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)`` (``(D,)`` means, ``(D, D)`` covariances).

    Raises:
        ValueError: on mismatched shapes, or when the square root has a large imaginary component.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"mismatched statistics: means {mu1.shape} vs {mu2.shape}, covariances {sigma1.shape} vs "
                         f"{sigma2.shape}")  # fmt: skip
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        warnings.warn(f"Fréchet distance: singular product; adding {eps} to the covariance diagonals", stacklevel=2)
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"Fréchet distance: imaginary component {np.max(np.abs(covmean.imag))}")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


class FeatureStatistics(Metric):
    """Running float64 sums of features of two sets (``real`` and generated): count, sum and ``XᵀX`` per set,
    summed across DDP ranks. :meth:`mean_cov` gives the mean and the covariance (unbiased, ``N − 1``, as
    ``np.cov``; or biased, ``N``, as StyleGAN-V's FVD).

    Subclasses turn their inputs into ``(N, D)`` features and call :meth:`add`.
    """

    full_state_update = False
    higher_is_better = False
    is_differentiable = False

    def __init__(self, num_features: int, biased_covariance: bool = False, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.num_features, self.biased = num_features, biased_covariance
        for prefix in ("real", "fake"):
            self.add_state(f"{prefix}_n", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{prefix}_sum", torch.zeros(num_features, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(
                f"{prefix}_outer", torch.zeros(num_features, num_features, dtype=torch.float64), dist_reduce_fx="sum"
            )

    def add(self, features: torch.Tensor, real: bool) -> None:
        """Accumulate ``(N, D)`` features into the real or the generated set."""
        x = features.detach().reshape(len(features), -1).to(torch.float64)
        if x.shape[1] != self.num_features:
            raise ValueError(f"expected {self.num_features}-d features, got {x.shape[1]}")
        prefix = "real" if real else "fake"
        setattr(self, f"{prefix}_n", getattr(self, f"{prefix}_n") + len(x))
        setattr(self, f"{prefix}_sum", getattr(self, f"{prefix}_sum") + x.sum(0))
        setattr(self, f"{prefix}_outer", getattr(self, f"{prefix}_outer") + x.T @ x)

    def mean_cov(self, real: bool) -> tuple[np.ndarray, np.ndarray]:
        """``(D,)`` mean and ``(D, D)`` covariance of one set."""
        prefix = "real" if real else "fake"
        n = float(getattr(self, f"{prefix}_n"))
        if n < 2:
            raise ValueError(f"{type(self).__name__}: the {'real' if real else 'generated'} set has {int(n)} "
                             "feature vectors; a covariance needs at least 2")  # fmt: skip
        total = getattr(self, f"{prefix}_sum").cpu().numpy()
        outer = getattr(self, f"{prefix}_outer").cpu().numpy()
        mean = total / n
        cov = (outer - n * np.outer(mean, mean)) / (n if self.biased else n - 1)
        return mean, cov

    def compute(self) -> torch.Tensor:
        real, fake = self.mean_cov(real=True), self.mean_cov(real=False)
        return torch.tensor(frechet_distance(*fake, *real), dtype=torch.float64)
