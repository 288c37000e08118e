"""Data preparation throughput on CPU: ``build`` (decode + crop + motion extraction) and reading shards back.

Builds shards from eight 3-second talking clips made on the fly (the astronaut photo, eSpeak speech) with the
OpenCV cropper and LivePortrait's motion extractor at the official size (random weights: speed does not depend on
them), then reads the shards back through the schema decoder, and times the training loader on the synthetic corpus.

    python benchmarks/bench_data.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch
import webdataset as wds

from common import machine

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from data_prep.build import BuildModels, build
from pctalk.data import ShardDataModule
from pctalk.data.schema import decode_sample
from pctalk.data.synthetic import synth
from pctalk.keypoints.crop import FaceCropper
from pctalk.keypoints.liveportrait import build_liveportrait
from raw_media import hdtf_dataset


def _read_back(folder: Path) -> tuple[int, float]:
    urls = sorted(str(p) for p in folder.glob("*.tar"))
    start = time.perf_counter()
    n = sum(1 for _ in map(decode_sample, wds.WebDataset(urls, shardshuffle=False)))
    return n, time.perf_counter() - start


def main() -> None:
    torch.manual_seed(0)
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = hdtf_dataset(tmp / "raw", {f"Person{i}": 2 for i in range(4)})
        models = BuildModels(build_liveportrait(), FaceCropper("opencv"), batch_size=32)
        start = time.perf_counter()
        build("hdtf", root, tmp / "shards", models, min_frames=20, test_seconds=0, progress=False)
        seconds = time.perf_counter() - start
        n, read_s = _read_back(tmp / "shards")
        urls = sorted(map(str, (tmp / "shards").glob("*.tar")))
        frames = sum(c.meta.n_frames for c in map(decode_sample, wds.WebDataset(urls, shardshuffle=False)))
        rate = f"{n / seconds:.2f} clips/s, {frames / seconds:.1f} frames/s"
        print(f"build (decode + OpenCV crop + motion extractor, official size): {rate}")
        print(f"read back and decode: {n / read_s:.0f} samples/s")
        start = time.perf_counter()
        synth(tmp / "synth", clips=64, identities=8, progress=False)
        print(f"synth: 64 clips in {time.perf_counter() - start:.1f} s")
        n, read_s = _read_back(tmp / "synth")
        print(f"read back and decode (synthetic corpus): {n / read_s:.0f} samples/s")
        print(f"training loader, window 50, batch 8, main process: {_train_loader(tmp / 'synth'):.0f} samples/s")


def _train_loader(root: Path) -> float:
    """Examples per second out of ``ShardDataModule.train_dataloader()`` (resampling, shuffle, decode, windows,
    collation), the second of two epochs."""
    dm = ShardDataModule(str(root), window=50, batch_size=8, audio="mel", samples_per_epoch=480, num_workers=0)
    loader = dm.train_dataloader()
    sum(len(b["key"]) for b in loader)
    start = time.perf_counter()
    n = sum(len(b["key"]) for b in loader)
    return n / (time.perf_counter() - start)


if __name__ == "__main__":
    main()
