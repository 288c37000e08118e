"""The one base class every pctalk training task derives from (the LightningCLI ``model`` in subclass mode)."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule

__all__ = ["BaseTask"]


class BaseTask(LightningModule, ABC):
    """A training task: networks, losses and metrics built by three hooks, an Adam optimiser by default.

    Subclasses take their settings as ``__init__`` arguments (so LightningCLI documents them), call
    ``super().__init__()`` first, and implement :meth:`configure_models`; :meth:`configure_losses` and
    :meth:`configure_metrics` are optional. Every ``__init__`` argument is saved as a hyper-parameter (size
    dataclasses as plain dicts, so checkpoints load with ``torch.load(weights_only=True)``).
    """

    #: the keypoints the task predicts (``lips`` or ``all``); ``pctalk fit`` gives it to the data module, so the
    #: model and the data cannot disagree
    target: str = "lips"

    def __init__(self, lr: float = 1e-4, weight_decay: float = 0.0, ignore: Sequence[str] | None = None) -> None:
        """Args:
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        ignore: ``__init__`` arguments not to save as hyper-parameters (e.g. modules passed in).
        """
        super().__init__()
        self.lr = lr
        self.weight_decay = weight_decay
        self.save_hyperparameters(ignore=[*(ignore or []), "ignore"])
        for key, value in list(self.hparams.items()):
            if is_dataclass(value) and not isinstance(value, type):
                self.hparams[key] = asdict(value)
        self.configure_models()
        self.configure_losses()
        self.configure_metrics()

    @abstractmethod
    def configure_models(self) -> None:
        """Build the networks (plain ``nn.Module``s from :mod:`pctalk.models`)."""

    def configure_losses(self) -> None:
        """Build the loss functions."""

    def configure_metrics(self) -> None:
        """Build the metrics (``torchmetrics``), so they sync across DDP ranks."""

    def data_styles(self) -> dict[str, str]:
        """Style id -> identity of the training data (from the data module's shards), for the checkpoint block."""
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        styles = getattr(datamodule, "styles", None)
        return dict(styles()) if callable(styles) else {}

    def training_record(self) -> dict[str, Any]:
        """How the checkpoint was trained, for its block and model card: the task, steps and epochs, seed, precision
        and devices, the task's and the data module's settings, the training data (roots, datasets, split hashes,
        frames), the last validation figures, and every pretrained file the settings name, by SHA-256."""
        trainer = self.trainer
        datamodule = getattr(trainer, "datamodule", None)
        summary = getattr(datamodule, "summary", None)
        seed = os.environ.get("PL_GLOBAL_SEED")
        settings = {"model": _plain(dict(self.hparams)),
                    "data": _plain(dict(getattr(datamodule, "hparams", {}) or {}))}  # fmt: skip
        return {
            "task": type(self).__name__,
            "steps": int(trainer.global_step),
            "epochs": int(trainer.current_epoch),
            "seed": int(seed) if seed is not None and seed.lstrip("-").isdigit() else None,
            "precision": str(trainer.precision),
            "devices": int(trainer.world_size),
            "settings": settings,
            "data": summary() if callable(summary) else {},
            "validation": _validation(trainer.callback_metrics),
            "pretrained": self._pretrained_files(settings),
        }

    def _pretrained_files(self, settings: Mapping[str, Any]) -> dict[str, dict[str, str]]:
        """The files the settings name (``{"file", "sha256"}`` per setting), hashed once per file and size."""
        from pctalk.weights.io import file_sha256

        cache: dict[tuple[str, int], str] = self.__dict__.setdefault("_sha_cache", {})
        out = {}
        for part, values in settings.items():
            for key, value in values.items():
                path = Path(value) if isinstance(value, str) and value else None
                if path is not None and path.is_file():
                    token = (str(path.resolve()), path.stat().st_size)
                    if token not in cache:
                        cache[token] = file_sha256(path)
                    out[f"{part}.{key}"] = {"file": str(path), "sha256": cache[token]}
        return out

    def checkpoint_block(self) -> dict[str, Any]:
        """The ``"pctalk"`` block of a checkpoint of this task: :meth:`stage_info` with :meth:`training_record`."""
        info = self.stage_info()  # type: ignore[attr-defined]
        info.training = self.training_record()
        return info.to_dict()

    def data_style_counts(self) -> dict[str, dict[str, int]]:
        """Style id -> training clips and frames (from the data module's shards), for the checkpoint block."""
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        counts = getattr(datamodule, "style_counts", None)
        return dict(counts()) if callable(counts) else {}

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """The parameters the optimiser updates (frozen networks are excluded)."""
        return [p for p in self.parameters() if p.requires_grad]

    def configure_optimizers(self) -> Any:
        return torch.optim.Adam(self.trainable_parameters(), lr=self.lr, weight_decay=self.weight_decay)


def _validation(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The last logged validation figures (``val/...``)."""
    return {k: float(v) for k, v in sorted(metrics.items()) if k.startswith("val") and torch.as_tensor(v).numel() == 1}


def _plain(value: Any) -> Any:
    """Settings as plain containers (loadable with ``torch.load(weights_only=True)`` and as JSON)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if is_dataclass(value) and not isinstance(value, type):
        return _plain(asdict(value))
    return repr(value)
