"""The CPU half of ``pctalk-data build`` in worker processes: decode, audio and face crop of each clip in
``torch.utils.data.DataLoader`` workers, while the main process runs the motion extractor on the crops as they
arrive (on the GPU when there is one) and finishes the clips.

Each worker claims the job's clips one at a time (a shared counter: long and short clips balance across workers)
and yields, per clip, :class:`CropChunk` items of ``batch_size`` face crops in frame order, then one
:class:`ClipEnd` with the clip's audio, or with the reason it is skipped. Chunks of different clips interleave in
the main process; the chunks of one clip come from one worker, in order. Memory stays bounded: a worker holds one
clip's audio and one chunk of crops, the loader at most ``prefetch`` items per worker.

Workers start from a fork server (a fresh process that has imported this module), not by forking the main
process: a forked child inherits OpenCV's and the ONNX runtime's thread pools without their threads, and
deadlocks when it resizes them.

The work per clip is the same code as the in-process path (:func:`data_prep.build.process_clip`), with the same
batches, so both give byte-identical samples.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from data_prep.build import SkipClip, crop_chunks, open_clip
from data_prep.sources import ClipSource
from pctalk.keypoints.crop import FaceCropper

__all__ = ["ClipEnd", "CropChunk", "CropStream", "available_cpus", "crop_loader", "default_decode_workers"]

#: Most decode workers chosen by default (each holds a decoder and a face cropper).
MAX_DEFAULT_WORKERS = 32


def _context() -> multiprocessing.context.BaseContext:
    """Workers' start method: a fork server that preloads this module (fast starts, no inherited thread pools);
    spawn where there is none."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["__main__", __name__])  # no effect once the server runs
    return ctx


def available_cpus() -> int:
    """CPUs this job may use: ``SLURM_CPUS_PER_TASK`` when set, else the process's CPU affinity."""
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if slurm.isdigit() and int(slurm) > 0:
        return int(slurm)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_decode_workers(cpus: int | None = None) -> int:
    """Decode workers for ``cpus`` CPUs (default: :func:`available_cpus`): one per CPU but one left to the main
    process (motion extraction, mel, writing), at most :data:`MAX_DEFAULT_WORKERS`; 0 (in-process) on one CPU."""
    cpus = available_cpus() if cpus is None else cpus
    return max(0, min(cpus - 1, MAX_DEFAULT_WORKERS))


@dataclass
class CropChunk:
    """The next ``len(crops)`` face crops of clip ``index`` (its position in the stream's list), from frame
    ``start`` on; ``crops`` is ``(N, 256, 256, 3)`` uint8 and the clip has ``n_frames`` frames at 25 fps."""

    index: int
    start: int
    n_frames: int
    crops: torch.Tensor

    def pin_memory(self) -> CropChunk:
        return replace(self, crops=self.crops.pin_memory())


@dataclass
class ClipEnd:
    """Clip ``index`` is done: its ``n_frames``, 16 kHz audio and source frame rate, or ``skip``, the manifest's
    reason (the chunks already sent are then to be dropped)."""

    index: int
    n_frames: int = 0
    wav: torch.Tensor | None = None
    source_fps: float = 0.0
    skip: str | None = None

    def pin_memory(self) -> ClipEnd:
        return self


class CropStream(IterableDataset):
    """Decode, audio and face crop of ``sources`` (see the module's docstring).

    Args:
        sources: the clips, in the job's order.
        cropper: the face cropper's backend (``liveportrait``, ``dlib``, ``opencv``); each worker builds its own.
        weights_root: the weights root of the ``liveportrait`` cropper's ONNX files.
        batch_size: crops per chunk (the motion extractor's batch).
        min_frames: clips shorter than this are skipped.
        threads: torch and OpenCV threads in each worker.
    """

    def __init__(
        self,
        sources: list[ClipSource],
        cropper: str,
        weights_root: str | os.PathLike[str] | None = None,
        batch_size: int = 32,
        min_frames: int = 50,
        threads: int = 1,
    ) -> None:
        self.sources = list(sources)
        self.cropper, self.weights_root = cropper, None if weights_root is None else Path(weights_root)
        self.batch_size, self.min_frames, self.threads = batch_size, min_frames, threads
        self._claimed = _context().Value("q", 0)  # the next clip to claim, shared by the workers

    def _claim(self) -> int:
        with self._claimed.get_lock():
            index = self._claimed.value
            self._claimed.value += 1
        return index

    def __iter__(self) -> Iterator[CropChunk | ClipEnd]:
        if get_worker_info() is not None:
            import cv2

            torch.set_num_threads(self.threads)
            cv2.setNumThreads(self.threads)
        cropper = FaceCropper(self.cropper, weights_root=self.weights_root)
        while (index := self._claim()) < len(self.sources):
            yield from self._clip(index, cropper)

    def _clip(self, index: int, cropper: FaceCropper) -> Iterator[CropChunk | ClipEnd]:
        try:
            reader, wav = open_clip(self.sources[index], self.min_frames)
            start = 0
            for crops in crop_chunks(reader, cropper, self.batch_size):
                yield CropChunk(index, start, len(reader), torch.from_numpy(crops))
                start += len(crops)
        except SkipClip as err:
            yield ClipEnd(index, skip=str(err))
            return
        yield ClipEnd(index, len(reader), wav, reader.source_fps)


def crop_loader(stream: CropStream, workers: int, pin_memory: bool = False, prefetch: int = 2) -> DataLoader:
    """The loader over ``stream`` with ``workers`` processes: items as they are ready (not round-robin, so a worker
    on a slow clip holds no one up), at most ``prefetch`` waiting per worker."""
    return DataLoader(
        stream,
        batch_size=None,
        num_workers=workers,
        pin_memory=pin_memory,
        prefetch_factor=prefetch if workers else None,
        in_order=False,
        multiprocessing_context=_context() if workers else None,
    )
