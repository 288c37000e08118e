"""Experiment tracking: wandb is the default logger, and a run's wandb id is derived from its run directory.

A SLURM job that is preempted and requeued starts again with the same ``trainer.default_root_dir``; deriving the
wandb id from that directory (instead of letting wandb draw a random one) makes the requeued job continue the same
wandb run, and :func:`pin_checkpoint_dirs` keeps checkpoints in ``<root>/checkpoints`` whatever the logger. A
different directory is a different run. ``WANDB_MODE=offline`` keeps the run on disk
(``<root>/wandb/offline-run-*-<id>``; upload it later with ``wandb sync``), ``WANDB_MODE=disabled`` turns wandb off
(CI does).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_LOGGER", "WANDB_LOGGER", "pin_checkpoint_dirs", "resolve_wandb_logger", "run_id"]

WANDB_LOGGER = "lightning.pytorch.loggers.WandbLogger"

#: The ``trainer.logger`` every ``pctalk fit`` gets unless its config names another (CSV, TensorBoard, ``false``).
DEFAULT_LOGGER: dict[str, Any] = {"class_path": WANDB_LOGGER, "init_args": {"project": "pctalk"}}


def run_id(root: str | os.PathLike[str]) -> str:
    """A wandb run id for the run directory ``root``: its name (made id-safe) and a hash of its absolute path.

    >>> run_id("/scratch/runs/lac_expression")
    'lac_expression-c58c6ef04b'
    """
    path = Path(root).expanduser().resolve()
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.name).strip("._-")[:48] or "run"
    return f"{stem}-{digest}"


def _is_wandb(class_path: Any) -> bool:
    return isinstance(class_path, str) and class_path.rsplit(".", 1)[-1] == "WandbLogger"


def resolve_wandb_logger(logger: Any, root: str | os.PathLike[str] | None) -> Any:
    """Fill in a (parsed, not yet instantiated) wandb logger config: ``id`` from the run directory unless set,
    ``save_dir`` = the run directory unless set, and ``resume="allow"`` unless set. Other loggers, lists of loggers
    and ``None``/``False`` pass through.

    ``logger`` is what jsonargparse parsed for ``trainer.logger``: a namespace or dict with ``class_path`` and
    ``init_args``, a list of those, or a bool.
    """
    if isinstance(logger, list):
        return [resolve_wandb_logger(item, root) for item in logger]
    get = (lambda o, k: o.get(k)) if isinstance(logger, dict) else (lambda o, k: getattr(o, k, None))
    if logger is None or isinstance(logger, bool) or not _is_wandb(get(logger, "class_path")):
        return logger
    root = Path(root or os.getcwd())
    init = get(logger, "init_args")
    if init is None:
        return logger
    setter = init.__setitem__ if isinstance(init, dict) else lambda k, v: setattr(init, k, v)
    init_get = init.get if isinstance(init, dict) else lambda k: getattr(init, k, None)
    if not init_get("id") and not init_get("version"):
        setter("id", run_id(root))
    if init_get("save_dir") in (None, ".", "") and not init_get("dir"):
        setter("save_dir", str(root))
    if not init_get("resume"):  # a parsed config passes resume=None explicitly, which would drop Lightning's "allow"
        setter("resume", "allow")
    return logger


def pin_checkpoint_dirs(trainer: Any) -> None:
    """Point every ``ModelCheckpoint`` of ``trainer`` that has no ``dirpath`` (Lightning's default one included)
    at ``<default_root_dir>/checkpoints``.

    Lightning would otherwise nest checkpoints under the logger's name and version (``<root>/pctalk/<id>/...`` for
    wandb, ``version_N`` for CSV); one fixed folder is what configs, docs and requeued jobs can rely on.
    """
    for callback in trainer.checkpoint_callbacks:
        if getattr(callback, "dirpath", "") is None:
            callback.dirpath = os.path.realpath(Path(trainer.default_root_dir) / "checkpoints")
