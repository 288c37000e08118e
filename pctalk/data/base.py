"""The one base class every pctalk data module derives from (the LightningCLI ``data`` in subclass mode)."""

from __future__ import annotations

from lightning.pytorch import LightningDataModule

__all__ = ["BaseDataModule"]


class BaseDataModule(LightningDataModule):
    """Batch size and loader workers shared by every data module; subclasses build the datasets."""

    def __init__(self, batch_size: int = 8, num_workers: int = 0) -> None:
        """Args:
        batch_size: samples per batch on each rank.
        num_workers: data loader worker processes on each rank.
        """
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.save_hyperparameters()
