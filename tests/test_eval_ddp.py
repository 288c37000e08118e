"""The metrics under 2-process CPU DDP (gloo): each rank sees half the data; both get the one-process values."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from skimage import data

from eval.metrics.fvd import FVD
from eval.metrics.niqe import NIQE
from eval_networks import TinyI3D


def _videos(seed: int, n: int = 6) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    photo = cv2.resize(data.chelsea() if seed else data.astronaut(), (160, 160))
    return [np.stack([np.roll(photo, (int(rng.integers(0, 40)), t), axis=(0, 1))[:64, :64] for t in range(16)])
            for _ in range(n)]  # fmt: skip


def _frames() -> list[np.ndarray]:
    return [cv2.resize(p, (192, 192)) for p in (data.astronaut(), data.chelsea(), data.coffee(), data.rocket())]


def _metrics(i3d: Path, rank: int, world: int) -> dict[str, float]:
    fvd, niqe = FVD(i3d), NIQE()
    fvd.update(_videos(0)[rank::world], real=True)
    fvd.update(_videos(1)[rank::world], real=False)
    niqe.update(np.stack(_frames()[rank::world]))
    return {"fvd": float(fvd.compute()), "niqe": float(niqe.compute())}


def _worker(rank: int, world: int, init_file: str, i3d: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        result = _metrics(Path(i3d), rank, world)
        Path(out, f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


@pytest.mark.ddp
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_metrics_reduce_across_two_ranks(tmp_path: Path) -> None:
    torch.manual_seed(0)
    i3d = tmp_path / "i3d_torchscript.pt"
    torch.jit.script(TinyI3D().eval()).save(str(i3d))
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(i3d), str(tmp_path)), nprocs=2, join=True)
    single = _metrics(i3d, 0, 1)
    for rank in (0, 1):
        result = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert result["fvd"] == pytest.approx(single["fvd"], rel=1e-6)
        assert result["niqe"] == pytest.approx(single["niqe"], rel=1e-9)
