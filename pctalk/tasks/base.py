"""The one base class every pctalk training task derives from (the LightningCLI ``model`` in subclass mode)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, is_dataclass
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
