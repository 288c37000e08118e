"""The one WebDataset pipeline builder every pctalk data module uses.

Training (after open_clip's ``get_wds_dataset``): the shard list is split across DDP ranks *here, in the main
process*, from the trainer's global rank and world size (WebDataset's own node splitting reads the environment,
which Lightning's DDP launcher and spawn/forkserver workers do not set up reliably); each loader worker then
resamples shards from its rank's share, samples pass through a shuffle buffer, a random window is cut from each
clip, and every rank yields the same number of batches an epoch (:class:`TrainStream`).

A training epoch is a pure function of ``(seed, epoch, rank, worker)``: shard resampling, the shuffle buffer and
each sample's window draw from generators seeded by those (and by the sample's place in the worker's stream), so
epochs differ from one another whatever the number of loader workers, and a run resumed from a mid-epoch
checkpoint trains on exactly the batches the uninterrupted run would have (:class:`TrainLoader` saves where the
stream stands in the checkpoint and starts the resumed epoch there; samples before that point are read from the tar
files again, but only their metadata is parsed). Validation reads its shards once, in order, with the first window
of each clip.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from pctalk.data.schema import Clip, ClipMeta, decode_meta, decode_sample

__all__ = [
    "StreamPosition",
    "TrainLoader",
    "TrainStream",
    "batches_per_worker",
    "collate",
    "rank_shards",
    "shard_pipeline",
]


def rank_shards(urls: Sequence[str], rank: int, world_size: int, workers: int = 1, train: bool = True) -> list[str]:
    """This rank's share of ``urls``: every ``world_size``-th shard from ``rank``.

    Raises:
        ValueError: for training, fewer shards than ranks x workers (some would get no data, and DDP would hang or
            ranks would repeat each other).
    """
    urls = sorted(urls)
    need = world_size * max(1, workers)
    if train and len(urls) < need:
        raise ValueError(
            f"{len(urls)} training shards for {world_size} ranks x {max(1, workers)} loader workers; need at least "
            f"{need}. Rebuild the shards with `pctalk-data build --gpus {world_size} --workers {max(1, workers)}`, "
            f"or use fewer loader workers."
        )
    if not urls:
        return []
    if len(urls) < world_size:  # validation only: every rank needs something to evaluate
        return [urls[rank % len(urls)]]
    return urls[rank::world_size]


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensors, keep other values (keys) as lists."""
    out = {}
    for name in samples[0]:
        values = [s[name] for s in samples]
        out[name] = torch.stack(values) if isinstance(values[0], torch.Tensor) else values
    return out


def shard_pipeline(
    urls: Sequence[str],
    to_example: Callable[[Clip, random.Random | None], dict[str, Any] | None],
    batch_size: int,
    keep: Callable[[ClipMeta], bool] | None = None,
    decode: Callable[[dict[str, Any]], Clip] = decode_sample,
) -> wds.DataPipeline:
    """Validation batches from this rank's ``urls``: each shard once, in order, split across loader workers.

    Args:
        to_example: decoded clip and ``None`` (no randomness) -> example, or ``None`` to drop.
        keep: which clips to use, from their metadata (e.g. only some emotions); all if unset.
        decode: raw sample -> :class:`Clip` (e.g. :func:`decode_sample` without the face crops).
    """
    return wds.DataPipeline(
        wds.SimpleShardList(list(urls)),
        wds.split_by_worker,
        wds.tarfile_to_samples(handler=wds.warn_and_continue),
        wds.select(functools.partial(_kept, keep=keep)),
        wds.map(
            functools.partial(_decoded_example, to_example=to_example, decode=decode), handler=wds.warn_and_continue
        ),
        wds.select(lambda x: x is not None),
        wds.batched(batch_size, partial=True, collation_fn=collate),
    )


def _decoded_example(sample: dict[str, Any], to_example: Callable, decode: Callable) -> dict[str, Any] | None:
    return to_example(decode(sample), None)


def _kept(sample: dict[str, Any], keep: Callable[[ClipMeta], bool] | None) -> bool:
    """Whether ``keep`` takes the sample, from its ``meta.json`` alone (cheap: nothing else is decoded)."""
    if keep is None or "meta.json" not in sample:  # a sample without metadata fails, loudly, when decoded
        return True
    return keep(decode_meta(sample["meta.json"], sample.get("__key__", "?")))


#: A training worker whose first this-many samples all fail stops with the error instead of warning forever.
GIVE_UP_AFTER = 16


@dataclass
class StreamPosition:
    """Where a rank's training stream starts: the epoch, and how many of its batches were already trained on."""

    epoch: int = 0
    done: int = 0


class TrainStream(IterableDataset):
    """One rank's training batches for an epoch, ``len(stream)`` of them, as a function of ``(seed, epoch, rank)``.

    Loader worker ``w`` of ``W`` yields every ``W``-th batch (the order PyTorch's loader interleaves them in). Each
    resamples shards from ``urls`` with replacement, shuffles samples through a buffer, keeps those ``keep`` takes,
    and turns the ``i``-th of them into an example with a generator seeded by ``(seed, epoch, rank, worker, i)``.
    A stream that starts at :attr:`position` ``done > 0`` (a resumed epoch) gives worker ``w`` the role worker
    ``(w + done) % W`` had, skips the kept samples of the batches that role already yielded, and yields the rest:
    the epoch's remaining batches, in the same order.

    Args:
        urls: this rank's shards (:func:`rank_shards`).
        to_example: decoded clip and a random generator -> example (must not be ``None`` for a kept clip: batches
            would then shift, and a resumed epoch would differ).
        batch_size: examples per batch.
        batches_per_worker: batches each loader worker yields per epoch (:func:`batches_per_worker`).
        workers: the loader's ``num_workers`` (0 = the main process).
        keep: which clips to use, from their metadata; all if unset.
        shuffle_buffer: samples held for shuffling in each worker.
        seed: the run's data seed.
        rank: the DDP rank.
        decode: raw sample -> :class:`Clip`.

    The position lives in shared memory, so that persistent loader workers (started once for the whole fit) see
    where each epoch starts.
    """

    def __init__(
        self,
        urls: Sequence[str],
        to_example: Callable[[Clip, random.Random], dict[str, Any] | None],
        batch_size: int,
        batches_per_worker: int,
        workers: int = 0,
        keep: Callable[[ClipMeta], bool] | None = None,
        shuffle_buffer: int = 64,
        seed: int = 0,
        rank: int = 0,
        decode: Callable[[dict[str, Any]], Clip] = decode_sample,
    ) -> None:
        if not urls:
            raise ValueError("a training stream needs at least one shard")
        if batches_per_worker < 1:
            raise ValueError("batches_per_worker must be >= 1: every rank runs the same number of batches an epoch")
        self.urls, self.to_example, self.keep = list(urls), to_example, keep
        self.batch_size, self.batches_per_worker, self.workers = batch_size, batches_per_worker, max(1, workers)
        self.shuffle_buffer, self.seed, self.rank, self.decode = shuffle_buffer, seed, rank, decode
        self._position = torch.zeros(2, dtype=torch.long).share_memory_()  # (epoch, done), seen by every worker

    @property
    def position(self) -> StreamPosition:
        """Where the next iteration starts (epoch, batches of it already trained)."""
        return StreamPosition(int(self._position[0]), int(self._position[1]))

    @position.setter
    def position(self, where: StreamPosition) -> None:
        self._position[0], self._position[1] = where.epoch, where.done

    def __len__(self) -> int:
        return self.batches_per_worker * self.workers

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        if workers != self.workers:
            raise RuntimeError(f"TrainStream built for {self.workers} loader workers runs under {workers}")
        epoch, done = self.position.epoch, self.position.done
        role = (worker + done) % workers
        skipped = len(range(role, done, workers))  # batches this role yielded before the stream was interrupted
        tag = f"{self.seed}/{epoch}/{self.rank}/{role}"
        samples = wds.tarfile_to_samples(handler=wds.warn_and_continue)(_resampled(self.urls, random.Random(tag)))
        samples = wds.shuffle(self.shuffle_buffer, rng=random.Random(f"shuffle/{tag}"))(samples)
        kept = (s for s in samples if _kept(s, self.keep))
        examples = self._examples(kept, tag, skip=skipped * self.batch_size)
        batches = wds.batched(self.batch_size, partial=False, collation_fn=collate)(examples)
        for _, batch in zip(range(self.batches_per_worker - skipped), batches, strict=False):
            yield batch

    def _examples(self, samples: Iterator[dict[str, Any]], tag: str, skip: int) -> Iterator[dict[str, Any]]:
        loaded, failed = 0, 0
        for i, sample in enumerate(samples):
            if i < skip:
                continue
            try:
                example = self.to_example(self.decode(sample), random.Random(f"example/{tag}/{i}"))
            except Exception as err:
                failed += 1
                if not loaded and failed >= GIVE_UP_AFTER:  # not a corrupt sample: the shards or the config
                    raise RuntimeError(
                        f"the first {failed} training samples all failed to load (resampling would retry forever); "
                        f"the last one: {err}"
                    ) from err
                wds.warn_and_continue(err)  # a corrupt sample: warn and go on, as the tar reader does
                continue
            loaded += 1
            if example is not None:
                yield example


def _resampled(urls: list[str], rng: random.Random) -> Iterator[dict[str, str]]:
    """Shards drawn from ``urls`` with replacement, forever, as WebDataset's shard sources yield them."""
    while True:
        yield {"url": rng.choice(urls)}


class TrainLoader(DataLoader):
    """A PyTorch loader over a :class:`TrainStream` that tells the stream where each epoch starts, and saves that
    in checkpoints (Lightning's resumable-loader interface: ``state_dict`` / ``load_state_dict``).

    Args:
        stream: the rank's training stream.
        num_workers: loader workers (as the stream was built for); they persist across epochs.
        progress: ``(epoch, batches of it trained so far)`` of the fit being served, or ``None`` outside a fit
            (each new iterator is then the next epoch from its start).
        pin_memory: batches in pinned host memory (for CUDA).
    """

    def __init__(
        self,
        stream: TrainStream,
        num_workers: int = 0,
        progress: Callable[[], tuple[int, int] | None] | None = None,
        pin_memory: bool = False,
    ) -> None:
        super().__init__(
            stream, batch_size=None, num_workers=num_workers, persistent_workers=num_workers > 0, pin_memory=pin_memory
        )
        self._progress = progress if progress is not None else lambda: None
        self._resume: StreamPosition | None = None
        self._next_epoch = 0

    def __len__(self) -> int:
        return len(self.dataset)

    def state_dict(self) -> dict[str, int]:
        """Where the stream stands when a checkpoint is saved: ``{"epoch": E, "done": batches of E trained}``."""
        where = self._progress()
        epoch, done = where if where is not None else (self.dataset.position.epoch, 0)
        return {"epoch": epoch, "done": done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Start the next iterator where ``state`` says (a resumed fit)."""
        self._resume = StreamPosition(int(state["epoch"]), int(state["done"]))

    def __iter__(self) -> Any:
        where = self._progress()
        if self._resume is not None:
            position, self._resume = self._resume, None
        elif where is not None:
            position = StreamPosition(where[0], 0)  # a new epoch of the fit
        else:
            position = StreamPosition(self._next_epoch, 0)
        if position.done >= len(self):  # saved after the epoch's last batch: the next epoch starts
            position = StreamPosition(position.epoch + 1, 0)
        self.dataset.position = position
        self._next_epoch = position.epoch + 1
        return super().__iter__()


def batches_per_worker(samples: int, batch_size: int, world_size: int, workers: int) -> int:
    """Batches each loader worker yields so that a rank's epoch covers ``samples / world_size`` samples."""
    per_rank = math.ceil(samples / (world_size * batch_size))
    return max(1, math.ceil(per_rank / max(1, workers)))
