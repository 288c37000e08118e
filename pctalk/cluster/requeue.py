"""``SlurmRequeue``: on SLURM's warning signal, save ``hpc_ckpt_N.ckpt`` at a batch boundary and requeue the job.

Lightning's own auto-requeue saves the checkpoint *inside the signal handler*, wherever the main thread happens to
be: between the optimizer step and the batch counters, or (under DDP) while the other ranks are in a gradient
all-reduce, where the checkpoint's collective barrier meets theirs. The saved loop state can then be off by a step
(a resumed run trains one batch twice) and a multi-GPU job can hang. This callback only notes the signal in the
handler; at the end of the next training batch that ends with an optimizer step (not inside a gradient-accumulation
window) every rank agrees (one boolean all-reduce, like Lightning's own per-batch SIGTERM check) and they save
together, at the point Lightning's mid-epoch checkpoints are saved and from which it resumes exactly. Rank 0 then
runs ``scontrol requeue``; the requeued job starts again, and Lightning resumes from the newest ``hpc_ckpt`` in
``trainer.default_root_dir`` on its own.

``pctalk fit`` adds this callback whenever it runs inside a SLURM batch job; Lightning's in-handler save is turned
off then (``SLURMEnvironment.auto_requeue = False``).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from types import FrameType
from typing import Any

import lightning.pytorch as pl
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.trainer.connectors.checkpoint_connector import _CheckpointConnector
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn

__all__ = ["SlurmRequeue", "hpc_checkpoint_path", "slurm_job_id"]


def hpc_checkpoint_path(folder: str | os.PathLike) -> str:
    """The next ``hpc_ckpt_N.ckpt`` in ``folder`` (N one above the highest there, from 1), named by Lightning's
    checkpoint connector, which resumes from the newest of them when a SLURM job starts."""
    return _CheckpointConnector.hpc_save_path(folder)


def slurm_job_id() -> str:
    """The id ``scontrol requeue`` takes: ``<array job>_<task>`` in an array job, else ``SLURM_JOB_ID``."""
    array = os.environ.get("SLURM_ARRAY_JOB_ID")
    job = f"{array}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array else os.environ["SLURM_JOB_ID"]
    if not re.fullmatch(r"[0-9_]+", job):
        raise ValueError(f"unexpected SLURM job id {job!r}")
    return job


class SlurmRequeue(pl.Callback):
    """Save an HPC checkpoint at the next batch boundary after SLURM's warning signal, then requeue the job.

    Inactive outside a SLURM batch job (Lightning's ``SLURMEnvironment`` not in use) and outside ``fit``.

    Args:
        requeue: run ``scontrol requeue`` after saving (off: only save, e.g. to checkpoint on demand with
            ``scancel --signal=USR1``).
    """

    def __init__(self, requeue: bool = True) -> None:
        self.requeue = requeue
        self.signalled = False
        self._signum: int | None = None
        self._previous: Any = None

    # -- the signal --------------------------------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:  # runs between two bytecodes: note only
        self.signalled = True

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        environment = trainer._accelerator_connector.cluster_environment  # the one Lightning's signal handling reads
        if stage != "fit" or not isinstance(environment, SLURMEnvironment) or environment.requeue_signal is None:
            return
        environment.auto_requeue = False  # Lightning's handler would save from inside the signal handler
        self._signum = int(environment.requeue_signal)
        self._previous = signal.signal(self._signum, self._on_signal)
        rank_zero_info(
            f"SLURM requeue: on {signal.Signals(self._signum).name}, hpc_ckpt_N.ckpt is saved at the next batch "
            "boundary and the job is requeued"
        )

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._signum is not None:
            signal.signal(self._signum, self._previous if self._previous is not None else signal.SIG_DFL)
            self._signum = self._previous = None

    # -- the batch boundary ------------------------------------------------------------------------------------

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._signum is None or not _after_optimizer_step(trainer, batch_idx):  # gradients are not saved
            return
        if not trainer.strategy.reduce_boolean_decision(self.signalled, all=False):  # every rank, every step
            return
        self.signalled = False
        path = trainer.strategy.broadcast(hpc_checkpoint_path(trainer.default_root_dir))
        trainer.save_checkpoint(path)
        rank_zero_info(f"SLURM requeue: saved {path} at global step {trainer.global_step}")
        if self.requeue and trainer.is_global_zero:
            _requeue(slurm_job_id())


def _after_optimizer_step(trainer: pl.Trainer, batch_idx: int) -> bool:
    """Whether this batch ended with an optimizer step (not inside a gradient-accumulation window, whose partial
    gradients a checkpoint would lose). The same on every rank."""
    every = trainer.accumulate_grad_batches
    return every == 1 or (batch_idx + 1) % every == 0 or trainer.fit_loop.epoch_loop.batch_progress.is_last_batch


def _requeue(job: str) -> None:
    try:
        done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
    except FileNotFoundError:
        rank_zero_warn(f"SLURM requeue: scontrol is not on PATH; job {job} was not requeued (resubmit it to resume)")
        return
    if done.returncode == 0:
        rank_zero_info(f"SLURM requeue: requeued job {job}")
    else:
        rank_zero_warn(
            f"SLURM requeue: `scontrol requeue {job}` failed ({done.returncode}): {done.stderr.strip()}; resubmit "
            "the job to resume from its hpc_ckpt (sbatch needs --requeue, and the cluster must allow requeueing)"
        )
