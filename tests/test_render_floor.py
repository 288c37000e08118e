"""The exact rewrites ``benchmarks/bench_render_floor.py`` times compute what the layers they stand for compute: in
float64 they agree to rounding, so the time they save is time the same outputs can be had in."""

from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import bench_render_floor as floor


def _randn(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(sum(shape)))


@pytest.mark.parametrize("scale", [2, 4])
def test_polyphase_equals_upsample_then_convolve(scale: int) -> None:
    x, w, b = _randn(2, 5, 7, 6), _randn(4, 5, 3, 3), _randn(4)
    direct = F.conv2d(F.interpolate(x, scale_factor=scale), w, b, padding=1)
    got = floor.polyphase_conv(x, floor.polyphase_weight(w, scale), b, scale, 3)
    assert got.shape == direct.shape and (got - direct).abs().max() < 1e-12


@pytest.mark.parametrize("dims", [(4, 9, 11), (16, 30, 20)])  # one tile; several, with a ragged last one
def test_overlap_save_fft_equals_the_3d_convolution(dims: tuple[int, int, int]) -> None:
    x, w, b = _randn(2, 5, *dims), _randn(3, 5, 7, 7, 7), _randn(3)
    got = floor.fft_conv3d(x, floor.fft_spectrum(w, dims), b, 7)
    assert (got - F.conv3d(x, w, b, padding=3)).abs().max() < 1e-10


def test_winograd_equals_the_3x3_convolution() -> None:
    x, w, b = _randn(1, 5, 16, 12), _randn(4, 5, 3, 3), _randn(4)
    got = floor.winograd_conv(x, floor.winograd_filter(w), b)
    assert (got - F.conv2d(x, w, b, padding=1)).abs().max() < 1e-11
