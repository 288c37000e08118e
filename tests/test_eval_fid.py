"""FID against ``python -m pytorch_fid`` itself, with random Inception weights placed where pytorch-fid looks
(``$TORCH_HOME/hub/checkpoints``)."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from eval.metrics.fid import FID, fid_from_dirs, load_inception
from eval_networks import fid_inception_template
from pctalk.weights.registry import MissingWeightsError
from random_weights import seeded_state_dict

WEIGHTS = "pt_inception-2015-12-05-6726825d.pth"


@pytest.fixture(scope="module")
def torch_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("torch_home")
    (home / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(seeded_state_dict(fid_inception_template(), seed=5), home / "hub" / "checkpoints" / WEIGHTS)
    return home


def _photo_dir(path: Path, photo: np.ndarray, n: int, seed: int) -> Path:
    path.mkdir()
    rng = np.random.default_rng(seed)
    h, w = photo.shape[:2]
    for i in range(n):
        s = int(rng.integers(h // 3, h // 2))
        y, x = int(rng.integers(0, h - s)), int(rng.integers(0, w - s))
        Image.fromarray(cv2.resize(photo[y : y + s, x : x + s], (64, 64))).save(path / f"{i:03d}.png")
    return path


def test_fid_equals_pytorch_fid_cli(torch_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = _photo_dir(tmp_path / "a", data.astronaut(), 7, seed=0)
    b = _photo_dir(tmp_path / "b", data.chelsea(), 6, seed=1)
    # the reference on as many threads as ours: the convolutions' sums (so FID's last digits) depend on the split
    env = {"TORCH_HOME": str(torch_home), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.run(
        [sys.executable, "-m", "pytorch_fid", str(a), str(b), "--device", "cpu", "--num-workers", "0"],
        env=env, capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    reference = float(proc.stdout.strip().split()[-1])
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    ours = fid_from_dirs(a, b)
    assert ours == pytest.approx(reference, rel=1e-6)

    metric = FID()  # streamed: feature sums instead of the activation matrix
    for folder, real in ((a, True), (b, False)):
        frames = np.stack([np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))])
        for chunk in np.array_split(frames, 3):
            metric.update(torch.from_numpy(chunk).permute(0, 3, 1, 2), real=real)
    assert float(metric.compute()) == pytest.approx(ours, rel=1e-4)


def test_fid_weights_from_a_path_or_a_clear_error(torch_home: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    monkeypatch.setenv("PCTALK_WEIGHTS", str(tmp_path / "weights"))
    with pytest.raises(MissingWeightsError, match=WEIGHTS):
        load_inception()
    model = load_inception(torch_home / "hub" / "checkpoints" / WEIGHTS)
    assert not model.training
    with pytest.raises(ValueError, match="at least 2"):
        fid_from_dirs(_photo_dir(tmp_path / "one", data.astronaut(), 1, 0), tmp_path / "one",
                      weights_path=torch_home / "hub" / "checkpoints" / WEIGHTS)  # fmt: skip


@pytest.mark.parametrize(("n1", "n2", "dim"), [(900, 700, 512), (40, 30, 64), (20, 20, 256)])
def test_frechet_distance_equals_pytorch_fids(n1: int, n2: int, dim: int) -> None:
    """The symmetric-eigendecomposition trace equals pytorch-fid's sqrtm, full-rank or not."""
    from pytorch_fid.fid_score import calculate_frechet_distance

    from eval.metrics.frechet import frechet_distance

    rng = np.random.default_rng(dim)
    a, b = np.abs(rng.normal(size=(n1, dim))) ** 1.5, np.abs(rng.normal(size=(n2, dim))) + 0.1
    stats = (a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy: "Matrix is singular" for the rank-deficient ones
        reference = calculate_frechet_distance(*stats)
    assert frechet_distance(*stats) == pytest.approx(reference, rel=1e-6)
    assert frechet_distance(stats[0], stats[1], stats[0], stats[1]) == pytest.approx(0.0, abs=1e-6 * dim)
