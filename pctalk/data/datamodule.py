"""``ShardDataModule``: windows of clips from a shard folder, for every training stage."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import webdataset as wds
from lightning.pytorch.utilities import rank_zero_warn

from pctalk.data.base import BaseDataModule
from pctalk.data.examples import clip_example
from pctalk.data.pipeline import TrainLoader, TrainStream, batches_per_worker, rank_shards, shard_pipeline
from pctalk.data.schema import ClipMeta
from pctalk.data.styles import read_styles
from pctalk.data.synthetic import SyntheticCorpus

__all__ = ["ShardDataModule"]


class ShardDataModule(BaseDataModule):
    """Training and validation batches from shards written by ``pctalk-data`` (``train.txt`` / ``val.txt``).

    Args:
        root: the shard folder, or several separated by commas (e.g. HDTF and the augmented set).
        window: frames per example (paper: 50 for the expression predictor, 5 for the lip refiner).
        batch_size: examples per batch on each rank.
        num_workers: loader workers per rank.
        audio: ``mel`` windows, stored encoder ``feat``ures, or ``auto`` (features when the shards have them).
        target: ``lips`` (D, 18 values per frame) or ``all`` keypoints (63); under ``pctalk fit`` it is the model's
            (a task's ``target``), not set here.
        with_reference: also load the reference crop and motion the lip refiner renders from.
        emotions: train and validate only on clips of these emotions (e.g. ``[neutral]`` for LAC); all if unset.
        extras: inputs of the learned emotion sources to add (``raw_audio``, ``reference_exp``, ``text``).
        samples_per_epoch: examples per epoch over all ranks (default: the number of training clips).
        shuffle_buffer: training samples held for shuffling in each worker.
        synthetic: the offline synthetic corpus to write when ``root`` is its folder and has no shards yet (the
            quickstart and the ``_debug`` configs); never written anywhere else.
        seed: seed of the shard resampling and window choice.
    """

    def __init__(
        self,
        root: str,
        window: int = 50,
        batch_size: int = 8,
        num_workers: int = 0,
        audio: Literal["mel", "feat", "auto"] = "auto",
        target: Literal["lips", "all"] | None = None,
        with_reference: bool = False,
        emotions: list[str] | None = None,
        extras: list[str] | None = None,
        samples_per_epoch: int | None = None,
        shuffle_buffer: int = 64,
        synthetic: SyntheticCorpus | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers)
        self.roots = [Path(p.strip()) for p in str(root).split(",") if p.strip()]
        self.window, self.audio, self.target, self.with_reference = window, audio, target or "lips", with_reference
        self.emotions = None if emotions is None else tuple(emotions)
        self.extras = tuple(extras or ())
        self.samples_per_epoch, self.shuffle_buffer, self.seed = samples_per_epoch, shuffle_buffer, seed
        self.synthetic = synthetic

    def prepare_data(self) -> None:
        """Write the synthetic corpus where it is asked for and missing (once, on the first process of a node)."""
        if self.synthetic is not None:
            self.synthetic.ensure(self.roots)

    def styles(self) -> dict[str, str]:
        """Style id -> identity over the roots (``styles.json``); ids claimed by several datasets list them all."""
        merged: dict[str, str] = {}
        for root in self.roots:
            for k, name in read_styles(root).items():
                merged[k] = name if merged.get(k, name) == name else f"{merged[k]} | {name}"
        return merged

    def shards(self, split: str) -> tuple[list[str], int]:
        """Every shard of ``split`` across the roots, and how many samples they hold."""
        urls, samples = [], 0
        for root in self.roots:
            listing = root / f"{split}.txt"
            if not listing.is_file():
                raise FileNotFoundError(f"{listing} not found: build the shards with `pctalk-data build` (or `synth`)")
            names = listing.read_text().split()
            sizes = json.loads((root / "sizes.json").read_text()) if (root / "sizes.json").is_file() else {}
            urls += [str(root / n) for n in names]
            samples += sum(sizes.get(n, 0) for n in names)
        return urls, samples

    def _rank(self) -> tuple[int, int]:
        """The trainer's global rank and world size (0, 1 outside a trainer)."""
        return (self.trainer.global_rank, self.trainer.world_size) if self.trainer is not None else (0, 1)

    def _example(self, train: bool):
        return functools.partial(
            _example,
            window=self.window,
            audio=self.audio,
            target=self.target,
            with_reference=self.with_reference,
            extras=self.extras,
            train=train,
        )

    def _keep(self) -> Callable[[ClipMeta], bool] | None:
        return None if self.emotions is None else functools.partial(_of_emotions, emotions=self.emotions)

    def train_dataloader(self) -> TrainLoader:
        """This rank's training batches; an epoch is ``samples_per_epoch / world_size`` examples, and a resumed
        epoch continues where the checkpoint left it (:class:`~pctalk.data.pipeline.TrainStream`)."""
        rank, world = self._rank()
        urls, samples = self.shards("train")
        mine = rank_shards(urls, rank, world, self.num_workers, train=True)
        total = self.samples_per_epoch or samples or len(urls)
        stream = TrainStream(
            mine, self._example(True), self.batch_size,
            batches_per_worker(total, self.batch_size, world, self.num_workers), self.num_workers,
            keep=self._keep(), shuffle_buffer=self.shuffle_buffer, seed=self.seed, rank=rank,
        )  # fmt: skip
        return TrainLoader(stream, self.num_workers, progress=self._train_progress)

    def _train_progress(self) -> tuple[int, int] | None:
        """``(epoch, batches of it trained)`` of the fit this module serves; ``None`` outside a fit. A checkpoint
        saved at the end of a training batch (``ModelCheckpoint(every_n_train_steps)``, the SLURM requeue) counts
        that batch as trained, as Lightning does when it resumes from it."""
        trainer = self.trainer
        if trainer is None or not trainer.training:
            return None
        return trainer.current_epoch, trainer.fit_loop.epoch_loop.batch_progress.current.processed

    def val_dataloader(self) -> wds.WebLoader | list:
        """This rank's validation batches; none (with a warning) when the split has no validation identity, so that
        training still runs."""
        rank, world = self._rank()
        urls, _ = self.shards("val")
        if not urls:
            roots = ", ".join(str(r / "val.txt") for r in self.roots)
            rank_zero_warn(
                f"no validation shards ({roots} lists none: no identity went to the val split). Training runs "
                f"without validation, and a ModelCheckpoint that monitors a val/ metric keeps only last.ckpt. To "
                f"validate, rebuild with a validation identity: pctalk-data build ... --split-file FILE (lines "
                f"'identity val')."
            )
            return []
        mine = rank_shards(urls, rank, world, train=False)
        workers = min(self.num_workers, len(mine))
        pipeline = shard_pipeline(mine, self._example(False), self.batch_size, keep=self._keep())
        return wds.WebLoader(pipeline, batch_size=None, num_workers=workers)


def _of_emotions(meta: ClipMeta, emotions: tuple[str, ...]) -> bool:  # picklable for workers
    return meta.emotion in emotions


def _example(clip, rng, window, audio, target, with_reference, extras, train):  # picklable for workers
    return clip_example(clip, window, rng if train else None, audio, target, with_reference, extras)
