"""Data preparation throughput on CPU: ``build`` (decode + crop + motion extraction) and reading shards back.

Makes eight 3-second talking clips on the fly (the astronaut photo, eSpeak speech), then times

- the CPU part of ``build`` (decode at 25 fps, audio, face tracking and crop) on one core (one thread, in this
  process) for each cropper asked for, and with the OpenCV cropper in 2 decode workers;
- the whole ``build`` with the OpenCV cropper and LivePortrait's motion extractor at the official size (random
  weights: speed does not depend on them), in one process (``--decode-workers 0``) and with 2 decode workers;

then reads the shards back through the schema decoder, and times the training loader on the synthetic corpus.

    python benchmarks/bench_data.py [--croppers opencv,dlib]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import torch
import webdataset as wds

from common import machine

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from data_prep.build import BuildModels, build, crop_chunks, open_clip
from data_prep.parallel import CropChunk, CropStream, crop_loader
from data_prep.sources import ClipSource, enumerate_clips
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


def _cpu_part(clips: list[ClipSource], backend: str) -> tuple[float, float]:
    """Frames per second of the CPU part (decode, audio, track and crop) of every clip, in this process on one
    thread: per second of wall-clock time and per CPU second of the process (the per-core figure, which other
    load on the machine does not change)."""
    threads = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    cropper = FaceCropper(backend)
    frames, start, cpu = 0, time.perf_counter(), time.process_time()
    for src in clips:
        reader, _ = open_clip(src, min_frames=20)
        frames += sum(len(crops) for crops in crop_chunks(reader, cropper, 32))
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    torch.set_num_threads(threads[0])
    cv2.setNumThreads(threads[1])
    return frames / wall, frames / cpu


def _cpu_part_workers(clips: list[ClipSource], backend: str, workers: int) -> float:
    """Frames per second of the CPU part in ``workers`` decode workers (one thread each), the crops received by
    this process (which does nothing else)."""
    frames, start = 0, time.perf_counter()
    for item in crop_loader(CropStream(clips, backend, batch_size=32, min_frames=20), workers):
        frames += len(item.crops) if isinstance(item, CropChunk) else 0
    return frames / (time.perf_counter() - start)


def _build_rate(root: Path, out: Path, models: BuildModels, decode_workers: int) -> tuple[float, float, int]:
    """Clips/s and frames/s of a whole ``build``, and its samples."""
    start = time.perf_counter()
    build("hdtf", root, out, models, min_frames=20, test_seconds=0, progress=False, decode_workers=decode_workers)
    seconds = time.perf_counter() - start
    urls = sorted(map(str, out.glob("*.tar")))
    metas = [c.meta for c in map(decode_sample, wds.WebDataset(urls, shardshuffle=False))]
    return len(metas) / seconds, sum(m.n_frames for m in metas) / seconds, len(metas)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--croppers", default="opencv,dlib", help="croppers whose CPU part to time (comma-separated)")
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"machine: {machine()}, load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = hdtf_dataset(tmp / "raw", {f"Person{i}": 2 for i in range(4)})
        clips = enumerate_clips("hdtf", root)
        print(f"clips: {len(clips)}, 320x320 at 25 fps")
        for backend in args.croppers.split(","):
            wall, cpu = _cpu_part(clips, backend)
            print(f"CPU part (decode + audio + {backend} crop), 1 thread: {cpu:.1f} frames per CPU second "
                  f"({wall:.1f} frames/s wall-clock)")  # fmt: skip
        _cpu_part_workers(clips[:1], "opencv", 1)  # starts the workers' fork server (once per process)
        rate = _cpu_part_workers(clips, "opencv", 2)
        print(f"CPU part (decode + audio + opencv crop), 2 decode workers: {rate:.1f} frames/s, {rate / 2:.1f}/core")
        models = BuildModels(build_liveportrait(), FaceCropper("opencv"), batch_size=32)
        for workers in (0, 2):
            clips_s, frames_s, _ = _build_rate(root, tmp / f"shards-{workers}", models, workers)
            print(
                f"build (decode + OpenCV crop + motion extractor, official size), --decode-workers {workers}: "
                f"{clips_s:.2f} clips/s, {frames_s:.1f} frames/s (load average {os.getloadavg()[0]:.1f})"
            )
        n, read_s = _read_back(tmp / "shards-0")
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
