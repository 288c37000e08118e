"""Callbacks shared by the tasks."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

__all__ = ["MatmulPrecision", "RunSummary"]


class RunSummary(Callback):
    """At the end of ``fit``, print where the checkpoint, config and logs are, and the final validation metrics
    (with the zero-motion baseline beside the lip error when the task logs one)."""

    def __init__(self, metric: str = "val/lip_l1", baseline: str = "val/lip_l1_zero_motion") -> None:
        self.metric, self.baseline = metric, baseline

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # every rank asks: under DDP ``trainer.log_dir`` is a broadcast, which one rank alone would leave hanging
        log_dir = Path(trainer.log_dir or trainer.default_root_dir)
        if trainer.is_global_zero:
            self._print(trainer, log_dir)

    def _print(self, trainer: Trainer, log_dir: Path) -> None:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        checkpoint = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        lines = ["", "=== run summary ==="]
        if self.metric in metrics:
            line = f"{self.metric}: {metrics[self.metric]:.5f}"
            if self.baseline in metrics:
                base = metrics[self.baseline]
                line += f"   (zero-motion baseline {base:.5f}; {metrics[self.metric] / base:.0%} of it)"
            lines.append(line)
        best = trainer.checkpoint_callback.best_model_score if trainer.checkpoint_callback else None
        if best is not None and trainer.checkpoint_callback.monitor == self.metric:
            lines.append(f"best {self.metric}: {float(best):.5f} (the checkpoint below)")
        lines += [f"{k}: {v:.5f}" for k, v in sorted(metrics.items()) if k.startswith("val/") and k != self.metric]
        lines.append(f"steps: {trainer.global_step}, epochs: {trainer.current_epoch}")
        lines.append(f"checkpoint: {checkpoint or '(none saved)'}")
        config = log_dir / "config.yaml"
        lines.append(f"config: {config if config.is_file() else '(not saved)'}")
        lines.append(f"logs: {log_dir}")
        print("\n".join(lines), flush=True)


class MatmulPrecision(Callback):
    """Set ``torch.set_float32_matmul_precision`` for the fit: ``high`` lets float32 matrix products and convolutions
    use TF32 tensor cores on Ampere and later GPUs (about 8x the fp32 rate, 10-bit mantissa); ``highest`` keeps exact
    fp32. It affects the fp32 parts of a mixed-precision run too (losses, the sync loss, anything autocast leaves in
    fp32). Ignored on CPU.
    """

    def __init__(self, precision: Literal["highest", "high", "medium"] = "high") -> None:
        self.precision = precision

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        torch.set_float32_matmul_precision(self.precision)
        torch.backends.cudnn.allow_tf32 = self.precision != "highest"
