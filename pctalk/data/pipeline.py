"""The one WebDataset pipeline builder every pctalk data module uses.

Training (after open_clip's ``get_wds_dataset``): the shard list is split across DDP ranks *here, in the main
process*, from the trainer's global rank and world size (WebDataset's own node splitting reads the environment,
which Lightning's DDP launcher and spawn/forkserver workers do not set up reliably); each loader worker then
resamples shards from its rank's share, samples pass through a shuffle buffer, a random window is cut from each
clip, and ``with_epoch`` gives every rank the same number of batches. Validation reads its shards once, in order,
with the first window of each clip.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import Any

import torch
import webdataset as wds

from pctalk.data.schema import Clip, decode_sample

__all__ = ["batches_per_worker", "collate", "rank_shards", "shard_pipeline"]


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
    train: bool,
    shuffle_buffer: int = 64,
    seed: int = 0,
    epoch_batches: int | None = None,
) -> wds.DataPipeline:
    """A pipeline of collated batches from this rank's ``urls``.

    Args:
        to_example: decoded clip and a random generator (``None`` for validation) -> example, or ``None`` to drop.
        epoch_batches: batches each loader worker yields per epoch (training; required there).
    """
    if train:
        if not epoch_batches:
            raise ValueError("training needs epoch_batches so that every rank runs the same number of batches")
        stages: list[Any] = [wds.ResampledShards(list(urls), seed=seed, deterministic=True)]
    else:
        stages = [wds.SimpleShardList(list(urls)), wds.split_by_worker]
    stages.append(wds.tarfile_to_samples(handler=wds.warn_and_continue))
    if train:
        stages.append(wds.shuffle(shuffle_buffer, rng=random.Random(seed + 1)))

    rngs: dict[int, random.Random] = {}

    def example(sample: dict[str, Any]) -> dict[str, Any] | None:
        rng = None
        if train:  # one generator per rank and worker, made inside the worker
            worker = wds.utils.pytorch_worker_seed()
            rng = rngs.setdefault(worker, random.Random(seed * 1_000_003 + worker))
        return to_example(decode_sample(sample), rng)

    stages += [
        wds.map(example, handler=wds.warn_and_continue),
        wds.select(lambda x: x is not None),
        wds.batched(batch_size, partial=not train, collation_fn=collate),
    ]
    pipeline = wds.DataPipeline(*stages)
    return pipeline.with_epoch(epoch_batches) if train else pipeline


def batches_per_worker(samples: int, batch_size: int, world_size: int, workers: int) -> int:
    """Batches each loader worker yields so that a rank's epoch covers ``samples / world_size`` samples."""
    per_rank = math.ceil(samples / (world_size * batch_size))
    return max(1, math.ceil(per_rank / max(1, workers)))
