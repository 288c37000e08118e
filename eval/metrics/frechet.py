"""The Fréchet distance between two Gaussians, and the feature statistics every Fréchet metric accumulates.

One function serves FID, FVD and E-FID: ``d² = |μ1 − μ2|² + tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^½)``, the quantity pytorch-fid's
``calculate_frechet_distance`` and StyleGAN-V's FVD compute. They take ``tr (Σ1 Σ2)^½`` from scipy's ``sqrtm`` of the
non-symmetric product; here it comes from two symmetric eigendecompositions: with ``Σ1 = V diag(w) Vᵀ`` and
``H = V diag(√w)``, ``(Σ1 Σ2)^½`` has the eigenvalues of ``(Hᵀ Σ2 H)^½``, whose trace is ``Σ √λ`` (``eigvalsh``; both
matrices are PSD, so the ``λ`` are real and non-negative up to rounding). The value is the same (tests: 1e-14
relative on full-rank 2048-d statistics, 2e-7 on rank-deficient ones, where scipy itself warns that its result may be
inaccurate), 7-20 times faster at 2048-d on a CPU, and never complex: where pytorch-fid's ``sqrtm`` of a singular
product is too inaccurate and it raises "Imaginary component", this gives the value it approximates.
"""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics import Metric

__all__ = ["FeatureStatistics", "frechet_distance", "trace_sqrt_product"]


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """``tr (Σ1 Σ2)^½`` of two ``(D, D)`` covariances (symmetric PSD), from symmetric eigendecompositions."""
    w, v = np.linalg.eigh(sigma1)
    keep = w > max(float(w.max()), 0.0) * 1e-12  # Σ1's range (rank-deficient with fewer samples than dimensions)
    if not keep.any():
        return 0.0
    half = v[:, keep] * np.sqrt(w[keep])
    lam = np.linalg.eigvalsh(half.T @ sigma2 @ half)
    return float(np.sqrt(np.clip(lam, 0.0, None)).sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)`` (``(D,)`` means, ``(D, D)`` covariances).

    Raises:
        ValueError: on mismatched shapes, or non-finite statistics.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"mismatched statistics: means {mu1.shape} vs {mu2.shape}, covariances {sigma1.shape} vs "
                         f"{sigma2.shape}")  # fmt: skip
    if not all(np.isfinite(x).all() for x in (mu1, mu2, sigma1, sigma2)):
        raise ValueError("Fréchet distance: the statistics are not finite")
    diff = mu1 - mu2
    sigma1, sigma2 = (sigma1 + sigma1.T) / 2, (sigma2 + sigma2.T) / 2  # exactly symmetric for eigh
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt_product(sigma1, sigma2))


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
