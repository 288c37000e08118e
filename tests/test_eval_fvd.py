"""FVD against StyleGAN-V's ``compute_fvd`` arithmetic, with a tiny TorchScript detector of I3D's call signature."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.linalg
import torch
from skimage import data

from eval.metrics.fvd import FVD, FVDProtocol, load_i3d, video_clips
from eval_networks import TinyI3D
from pctalk.weights.registry import MissingWeightsError

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")


@pytest.fixture(scope="module")
def i3d_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("i3d") / "i3d_torchscript.pt"
    torch.jit.script(TinyI3D().eval()).save(str(path))
    return path


def _videos(photo: np.ndarray, n: int, frames: int, seed: int) -> list[np.ndarray]:
    """Pans over a real photo: ``n`` videos of ``(frames, 48, 48, 3)`` uint8."""
    rng = np.random.default_rng(seed)
    photo = cv2.resize(photo, (512, 512))
    out = []
    for _ in range(n):
        y, x, dy, dx = rng.integers(0, 200, 4)
        out.append(np.stack([cv2.resize(photo[y + t * dy // 20 : y + 250 + t * dy // 20,
                                              x + t * dx // 20 : x + 250 + t * dx // 20], (48, 48))
                             for t in range(frames)]))  # fmt: skip
    return out


def stylegan_v_fvd(detector, real: list[np.ndarray], fake: list[np.ndarray]) -> float:
    """StyleGAN-V: first 16 frames, (b, t, c, h, w) -> (b, c, t, h, w), float64 raw sums, biased covariance."""

    def stats(videos):
        x = torch.from_numpy(np.stack([v[:16] for v in videos])).permute(0, 1, 4, 2, 3)  # (b, t, c, h, w)
        x = x.permute(0, 2, 1, 3, 4).contiguous()
        with torch.no_grad():
            feats = detector(x, rescale=True, resize=True, return_features=True).numpy().astype(np.float64)
        mean = feats.sum(0) / len(feats)
        return mean, (feats.T @ feats) / len(feats) - np.outer(mean, mean)

    mu_real, sigma_real = stats(real)
    mu_gen, sigma_gen = stats(fake)
    m = np.square(mu_gen - mu_real).sum()
    s = scipy.linalg.sqrtm(np.dot(sigma_gen, sigma_real))  # StyleGAN-V passes disp=False (deprecated)
    return float(np.real(m + np.trace(sigma_gen + sigma_real - s * 2)))


def test_fvd_equals_stylegan_v(i3d_file: Path) -> None:
    real = _videos(data.astronaut(), 9, 20, seed=0)
    fake = _videos(data.chelsea(), 8, 18, seed=1) + [np.zeros((10, 48, 48, 3), np.uint8)]  # the last is too short
    reference = stylegan_v_fvd(load_i3d(i3d_file), real, fake[:-1])
    metric = FVD(i3d_file)
    metric.update(real[:4], real=True)
    metric.update(np.stack(real[4:]), real=True)
    metric.update(fake, real=False)
    assert float(metric.compute()) == pytest.approx(reference, rel=1e-5)
    assert int(metric.skipped) == 1 and metric.label == "FVD[stylegan-v]"


def test_fvd_protocols(i3d_file: Path) -> None:
    video = np.zeros((50, 8, 8, 3), np.uint8)
    assert video_clips(video, FVDProtocol("x")).shape == (1, 3, 16, 8, 8)
    assert video_clips(video, FVDProtocol("x", clips="all")).shape == (3, 3, 16, 8, 8)
    unbiased = FVD(i3d_file, protocol="unbiased")
    assert unbiased.label == "FVD[unbiased]" and not unbiased.biased
    with pytest.raises(ValueError, match="unknown FVD protocol"):
        FVD(i3d_file, protocol="tf")
    with pytest.raises(MissingWeightsError, match=r"i3d_torchscript\.pt"):
        load_i3d(i3d_file.parent / "absent" / "i3d_torchscript.pt")
