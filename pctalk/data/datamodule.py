"""``ShardDataModule``: windows of clips from a shard folder, for every training stage."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import webdataset as wds
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from pctalk.data.base import BaseDataModule
from pctalk.data.examples import clip_example
from pctalk.data.pipeline import TrainLoader, TrainStream, batches_per_worker, rank_shards, shard_pipeline
from pctalk.data.schema import ClipMeta, decode_sample
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
        samples_per_epoch: examples per epoch over all ranks (default: the training frames over ``window``, so an
            epoch sees about every frame once, e.g. HDTF's ~1.1 M training frames in windows of 50 are ~22 k
            examples; the number of clips for shards built before ``frames.json`` existed).
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
        """Style id -> identity over the roots (``styles.json``).

        Raises:
            ValueError: two roots give one style id to different identities (each dataset numbered its own from 0:
                the predictor would learn one style from two speakers); the message says how to renumber.
        """
        merged: dict[str, str] = {}
        owner: dict[str, Path] = {}
        for root in self.roots:
            for k, name in read_styles(root).items():
                if merged.get(k, name) != name:
                    raise ValueError(
                        f"style id {k} is {merged[k]} in {owner[k]} but {name} in {root}: the datasets number their "
                        f"speaking styles independently. Rebuild {root} with `pctalk-data build ... --styles-from "
                        f"{owner[k]}` so that its styles continue after those, or train on one of them."
                    )
                merged[k], owner[k] = name, owner.get(k, root)
        return merged

    def style_counts(self) -> dict[str, dict[str, int]]:
        """Style id -> ``{"clips", "frames"}`` of training data over the roots (``style_counts.json``, written by
        ``pctalk-data build`` and ``synth``; roots built before it add nothing)."""
        merged: dict[str, dict[str, int]] = {}
        for root in self.roots:
            path = Path(root) / "style_counts.json"
            for k, c in (json.loads(path.read_text()) if path.is_file() else {}).items():
                into = merged.setdefault(k, {"clips": 0, "frames": 0})
                into["clips"] += int(c.get("clips", 0))
                into["frames"] += int(c.get("frames", 0))
        return dict(sorted(merged.items(), key=lambda kv: int(kv[0])))

    def summary(self) -> dict[str, Any]:
        """The training data, for the checkpoint's model card: the roots, their datasets and identities, the
        SHA-256 of each root's splits, and the training clips, frames and hours."""
        from pctalk.data.splits import content_sha256, read_splits

        counts = self.style_counts()
        styles = self.styles()
        frames = sum(c["frames"] for c in counts.values())
        splits = {}
        for root in self.roots:
            if (Path(root) / "splits.json").is_file():
                splits[str(root)] = content_sha256(read_splits(Path(root) / "splits.json"))
        names = [n.strip() for name in styles.values() for n in name.split("|")]
        return {
            "roots": [str(r) for r in self.roots],
            "datasets": sorted({n.split("/", 1)[0] for n in names}),
            "identities": len(set(names)),
            "splits_sha256": splits,
            "train_clips": sum(c["clips"] for c in counts.values()),
            "train_frames": frames,
            "train_hours": frames / 25 / 3600,
        }

    def setup(self, stage: str) -> None:
        """Check, before any batch, that the roots agree on their style ids."""
        self.styles()

    def shards(self, split: str) -> tuple[list[str], int]:
        """Every shard of ``split`` across the roots, and how many samples they hold."""
        urls, samples, _ = self._listing(split)
        return urls, samples

    def _listing(self, split: str) -> tuple[list[str], int, int | None]:
        """The shards of ``split``, their samples, and their video frames (``None`` when a root has no
        ``frames.json``)."""
        urls, samples, frames = [], 0, 0
        for root in self.roots:
            listing = root / f"{split}.txt"
            if not listing.is_file():
                raise FileNotFoundError(f"{listing} not found: build the shards with `pctalk-data build` (or `synth`)")
            names = listing.read_text().split()
            sizes = json.loads((root / "sizes.json").read_text()) if (root / "sizes.json").is_file() else {}
            counts = json.loads((root / "frames.json").read_text()) if (root / "frames.json").is_file() else None
            urls += [str(root / n) for n in names]
            samples += sum(sizes.get(n, 0) for n in names)
            frames = None if counts is None or frames is None else frames + sum(counts.get(n, 0) for n in names)
        return urls, samples, frames

    def epoch_samples(self) -> int:
        """Examples per training epoch over all ranks: ``samples_per_epoch``, else the training frames / window."""
        if self.samples_per_epoch:
            return self.samples_per_epoch
        urls, samples, frames = self._listing("train")
        if frames:
            return max(1, -(-frames // self.window))
        return samples or len(urls)

    def _pin_memory(self) -> bool:
        """Pinned host memory when the trainer runs on CUDA (faster, asynchronous host-to-device copies)."""
        accelerator = getattr(self.trainer, "accelerator", None) if self.trainer is not None else None
        return type(accelerator).__name__ == "CUDAAccelerator"

    def _rank(self) -> tuple[int, int]:
        """The trainer's global rank and world size (0, 1 outside a trainer)."""
        return (self.trainer.global_rank, self.trainer.world_size) if self.trainer is not None else (0, 1)

    def audio_mode(self) -> str:
        """``mel`` or ``feat`` for every example: ``auto`` is ``feat`` only when the shards of every root hold stored
        features (a batch mixing the two would not collate: e.g. HDTF built with ``--audio-features`` and an
        augmented set without)."""
        if self.audio != "auto":
            return self.audio
        if getattr(self, "_audio_mode", None) is None:
            with_feat = [_has_member(root, "audio_feat.npy") for root in self.roots]
            self._audio_mode = "feat" if all(with_feat) else "mel"
            if any(with_feat) and not all(with_feat):
                rank_zero_warn(
                    f"audio: auto reads mel windows: stored features are in only some of the roots "
                    f"({', '.join(str(r) for r, f in zip(self.roots, with_feat, strict=True) if not f)} have none)"
                )
        return self._audio_mode

    def _example(self, train: bool):
        return functools.partial(
            _example,
            window=self.window,
            audio=self.audio_mode(),
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
        urls, _ = self.shards("train")
        mine = rank_shards(urls, rank, world, self.num_workers, train=True)
        total = self.epoch_samples()
        stream = TrainStream(
            mine, self._example(True), self.batch_size,
            batches_per_worker(total, self.batch_size, world, self.num_workers), self.num_workers,
            keep=self._keep(), shuffle_buffer=self.shuffle_buffer, seed=self.seed, rank=rank, decode=self._decode(),
        )  # fmt: skip
        rank_zero_info(
            f"training epoch: {total} examples of {self.window} frames over {world} rank(s), {len(stream)} batches of "
            f"{self.batch_size} per rank"
        )
        return TrainLoader(stream, self.num_workers, progress=self._train_progress, pin_memory=self._pin_memory())

    def _decode(self) -> Callable:
        """How a raw sample is decoded (the face crops only for a module that reads them)."""
        return functools.partial(decode_sample, faces=False)

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
        pipeline = shard_pipeline(mine, self._example(False), self.batch_size, keep=self._keep(), decode=self._decode())
        return wds.WebLoader(
            pipeline, batch_size=None, num_workers=workers, persistent_workers=workers > 0,
            pin_memory=self._pin_memory(),
        )  # fmt: skip


def _has_member(root: Path, member: str) -> bool:
    """Whether the first sample of ``root``'s first training (else validation) shard has ``member``."""
    import tarfile

    for split in ("train", "val"):
        listing = root / f"{split}.txt"
        names = listing.read_text().split() if listing.is_file() else []
        if names and (root / names[0]).is_file():
            with tarfile.open(root / names[0]) as tar:
                first = next(iter(tar), None)
                key = first.name.split(".", 1)[0] if first is not None else ""
                for info in tar:
                    if info.name.split(".", 1)[0] != key:
                        break
                    if info.name == f"{key}.{member}":
                        return True
            return False
    return False


def _of_emotions(meta: ClipMeta, emotions: tuple[str, ...]) -> bool:  # picklable for workers
    return meta.emotion in emotions


def _example(clip, rng, window, audio, target, with_reference, extras, train):  # picklable for workers
    return clip_example(clip, window, rng if train else None, audio, target, with_reference, extras)
