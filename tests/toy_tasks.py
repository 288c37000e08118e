"""A minimal task and data module that exercise the training plumbing (CLI, base classes, DDP) in tests.

Each rank records the sample indices it trained on under ``<default_root_dir>/ranks/`` so tests can check that
DDP ranks saw disjoint data and the same number of batches.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from lightning.pytorch import Callback
from torch import nn
from torch.utils.data import DataLoader, Dataset

from pctalk.data import BaseDataModule
from pctalk.tasks import BaseTask


class LinearData(Dataset):
    """``n`` samples ``(index, x (4,), y (1,))`` of a fixed linear map."""

    def __init__(self, n: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 4, generator=g)
        self.y = self.x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor, torch.Tensor]:
        return i, self.x[i], self.y[i]


class ToyData(BaseDataModule):
    def __init__(self, n_samples: int = 64, batch_size: int = 8, num_workers: int = 0) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers)
        self.n_samples = n_samples

    def train_dataloader(self) -> DataLoader:
        return DataLoader(LinearData(self.n_samples), batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(LinearData(16), batch_size=self.batch_size)


class ToyTask(BaseTask):
    def __init__(self, hidden: int = 8, lr: float = 1e-2) -> None:
        super().__init__(lr=lr)
        self.seen: list[int] = []

    def configure_models(self) -> None:
        self.net = nn.Sequential(nn.Linear(4, self.hparams["hidden"]), nn.ReLU(), nn.Linear(self.hparams["hidden"], 1))

    def configure_losses(self) -> None:
        self.loss = nn.MSELoss()

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        idx, x, y = batch
        self.seen.extend(idx.tolist())
        loss = self.loss(self.net(x), y)
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        _, x, y = batch
        self.log("val/loss", self.loss(self.net(x), y), sync_dist=True)

    def on_train_end(self) -> None:
        out = Path(self.trainer.default_root_dir) / "ranks"
        out.mkdir(parents=True, exist_ok=True)
        record = {"rank": self.global_rank, "world_size": self.trainer.world_size, "seen": self.seen}
        (out / f"rank{self.global_rank}.json").write_text(json.dumps(record))


class KeyRecorder(Callback):
    """Records the sample keys each rank trains on, and per batch a fingerprint of each example's window, in
    ``<default_root_dir>/keys/rank<N>.json``."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.batches = 0
        self.windows: list[list[float]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self.keys.extend(batch["key"])
        self.batches += 1
        self.windows.append([round(float(t.sum()), 4) for t in batch["target"]])  # which window of each clip

    def on_train_end(self, trainer, pl_module) -> None:
        out = Path(trainer.default_root_dir) / "keys"
        out.mkdir(parents=True, exist_ok=True)
        record = {"rank": trainer.global_rank, "batches": self.batches, "keys": self.keys, "windows": self.windows}
        (out / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


class SignalInsideStep(Callback):
    """Sends this process ``signum`` from inside the optimizer step of global step ``at`` (after backward, before
    ``optimizer.step``): the moment SLURM's warning signal lands in most of a GPU job's wall time."""

    def __init__(self, at: int, signum: int = 10) -> None:
        self.at, self.signum = at, signum

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if trainer.global_step == self.at:
            import os

            os.kill(os.getpid(), self.signum)


class SignalAtBatch(Callback):
    """Sends this process ``signum`` as batch ``batch_idx`` of the first epoch starts."""

    def __init__(self, batch_idx: int, signum: int = 10) -> None:
        self.batch_idx, self.signum = batch_idx, signum

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if trainer.current_epoch == 0 and batch_idx == self.batch_idx:
            import os

            os.kill(os.getpid(), self.signum)
