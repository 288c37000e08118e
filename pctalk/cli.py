"""The ``pctalk`` command: LightningCLI verbs (``fit``, ``validate``, ``test``, ``predict``) and tool verbs.

``python -m pctalk`` and the ``pctalk`` console script are the same function, :func:`main`; tests call
``main([...])``. Training verbs run a :class:`~lightning.pytorch.cli.LightningCLI` in subclass mode over
:class:`~pctalk.tasks.BaseTask` and :class:`~pctalk.data.BaseDataModule`, so the task and data module are chosen
by a config (``-c`` may be repeated to compose configs). Tool verbs are plain functions parsed by jsonargparse
(:mod:`pctalk.commands`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

from pctalk.commands import Verb, dispatch, usage

__all__ = ["TOOL_VERBS", "TRAINER_VERBS", "lightning_cli", "main"]

TRAINER_VERBS = {
    "fit": "train a task (LightningCLI), e.g. pctalk fit -c CONFIG.yaml",
    "validate": "run a task's validation loop",
    "test": "run a task's test loop",
    "predict": "run a task's predict loop",
}


def _weights() -> dict[str, Any]:
    from pctalk.weights import cli

    return {"check": cli.check}


def _export() -> Any:
    from pctalk.tasks.export import export

    return export


def _generate() -> Any:
    from pctalk.inference.cli import generate_main

    return generate_main


#: Non-training verbs; each feature that adds a verb registers it here.
TOOL_VERBS: dict[str, Verb] = {
    "generate": Verb(
        "audio or text + a face image or video -> a talking-face video (pctalk generate --help)", _generate, raw=True
    ),
    "weights": Verb("inspect pretrained files: pctalk weights check --root DIR [--strict]", _weights),
    "export": Verb("a training checkpoint to the release layout: pctalk export --checkpoint X.ckpt --out DIR", _export),
}


def lightning_cli(args: Sequence[str] | None = None, run: bool = True) -> Any:
    """Build (and by default run) the LightningCLI over every registered task and data module."""
    # Lightning 2.6 still calls jsonargparse APIs deprecated in 4.49; users can't act on those warnings.
    os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")
    from lightning.pytorch.cli import LightningCLI

    import pctalk.data
    import pctalk.tasks

    return LightningCLI(
        pctalk.tasks.BaseTask,
        pctalk.data.BaseDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        args=None if args is None else list(args),
        run=run,
        parser_kwargs={"prog": "pctalk"},
    )


def main(args: Sequence[str] | None = None) -> int:
    """Run ``pctalk`` with ``args`` (default: ``sys.argv[1:]``); returns the exit status."""
    argv = list(sys.argv[1:] if args is None else args)
    if argv and argv[0] in TRAINER_VERBS:
        lightning_cli(None if args is None else argv)
        return 0
    help_text = usage(
        "pctalk",
        {
            "training verbs": TRAINER_VERBS,
            "tool verbs": {name: verb.help for name, verb in TOOL_VERBS.items()},
        },
    )
    return dispatch("pctalk", TOOL_VERBS, argv, help_text)
