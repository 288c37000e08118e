"""The ``pctalk`` command: LightningCLI verbs (``fit``, ``validate``, ``test``, ``predict``) and tool verbs.

``python -m pctalk`` and the ``pctalk`` console script are the same function, :func:`main`; tests call
``main([...])``. Training verbs run a :class:`~lightning.pytorch.cli.LightningCLI` in subclass mode over
:class:`~pctalk.tasks.BaseTask` and :class:`~pctalk.data.BaseDataModule`, so the task and data module are chosen
by a config (``-c`` may be repeated to compose configs). Tool verbs are plain functions parsed by jsonargparse
(:mod:`pctalk.commands`).
"""

from __future__ import annotations

import itertools
import os
import sys
import warnings
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
    from pctalk.checkpoints import export

    return export


def _styles() -> Any:
    from pctalk.checkpoints.styles import styles_command

    return styles_command


def _card() -> Any:
    from pctalk.checkpoints.card import card_command

    return card_command


def _slurm() -> Any:
    from pctalk.cluster.slurm import slurm_main

    return slurm_main


def _export_onnx() -> Any:
    from pctalk.keypoints.backends import export_onnx_command

    return export_onnx_command


def _generate() -> Any:
    from pctalk.inference.cli import generate_main

    return generate_main


#: Non-training verbs; each feature that adds a verb registers it here.
TOOL_VERBS: dict[str, Verb] = {
    "generate": Verb(
        "audio or text + a face image or video -> a talking-face video (pctalk generate --help)", _generate, raw=True
    ),
    "styles": Verb(
        "the speaking styles of a checkpoint: pctalk styles CHECKPOINT (id, identity, dataset, clips)", _styles
    ),
    "card": Verb("the model card of a checkpoint: pctalk card CHECKPOINT (data, training, scores, files)", _card),
    "weights": Verb("inspect pretrained files: pctalk weights check --root DIR [--strict]", _weights),
    "slurm": Verb(
        "submit a requeue-safe DDP training job: pctalk slurm submit CONFIG --nodes N --gpus G (--help)",
        _slurm,
        raw=True,
    ),
    "export": Verb(
        "a trained stage to a release folder: pctalk export --checkpoint X.ckpt --out DIR [--format pctalk|official]",
        _export,
    ),
    "export-onnx": Verb(
        "LivePortrait's networks to ONNX, for generate --backend onnx: pctalk export-onnx --weights ROOT", _export_onnx
    ),
}


def _cli_class() -> type:
    from lightning.fabric.plugins.environments import SLURMEnvironment
    from lightning.pytorch.cli import LightningCLI

    from pctalk.cluster.requeue import SlurmRequeue
    from pctalk.tracking import DEFAULT_LOGGER, pin_checkpoint_dirs, resolve_wandb_logger

    class PctalkCLI(LightningCLI):
        """LightningCLI with wandb as the default logger (project ``pctalk``) and its run id derived from
        ``trainer.default_root_dir`` (:mod:`pctalk.tracking`), so a requeued job continues its wandb run;
        checkpoints go to ``<default_root_dir>/checkpoints`` unless a ``ModelCheckpoint`` says otherwise; inside a
        SLURM batch job ``fit`` gets :class:`~pctalk.cluster.requeue.SlurmRequeue` (requeue checkpoints saved at a
        batch boundary, not from inside the signal handler)."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("trainer_defaults", {"logger": DEFAULT_LOGGER})
            super().__init__(*args, **kwargs)

        def add_arguments_to_parser(self, parser: Any) -> None:
            # one value of the target: the model's (ExpressionTask's argument; the refiner's and EMC's fixed) is the
            # data module's
            parser.link_arguments("model", "data.init_args.target", compute_fn=_task_target, apply_on="instantiate")

        def before_instantiate_classes(self) -> None:
            config = self.config[self.subcommand] if self.subcommand else self.config
            data = config.get("data")
            given = data.get("init_args", {}).get("target") if hasattr(data, "get") else None
            if given is not None:
                self.parser.error(
                    f"data.init_args.target ({given}) cannot be set: the data module takes the model's "
                    f"target (model.init_args.target of ExpressionTask; lips for the refiner, all for EMC). Remove it "
                    f"from the data section."
                )
            trainer = config["trainer"]
            trainer["logger"] = resolve_wandb_logger(trainer.get("logger"), trainer.get("default_root_dir"))

        def instantiate_trainer(self, **kwargs: Any) -> Any:
            if SLURMEnvironment.detect():  # the callback acts in fit only
                callbacks = self._get(self.config_init, "trainer", default={}).get("callbacks") or []
                callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
                if not any(isinstance(c, SlurmRequeue) for c in callbacks):
                    kwargs["callbacks"] = [*callbacks, SlurmRequeue()]
            trainer = super().instantiate_trainer(**kwargs)
            pin_checkpoint_dirs(trainer)
            return trainer

    return PctalkCLI


def _task_target(model: Any) -> str:
    return getattr(model, "target", "lips")


def lightning_cli(args: Sequence[str] | None = None, run: bool = True) -> Any:
    """Build (and by default run) the LightningCLI over every registered task and data module."""
    # Lightning 2.6 still calls jsonargparse APIs deprecated in 4.49; users can't act on those warnings.
    os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")
    from jsonargparse import set_parsing_settings

    set_parsing_settings(docstring_parse_attribute_docstrings=True)  # --help shows the size dataclasses' field docs
    # Lightning cautions that an IterableDataset's length may be wrong with several workers; the training stream's
    # length is exact by construction (pctalk.data.pipeline.TrainStream).
    warnings.filterwarnings("ignore", message=r"Your `IterableDataset` has `__len__` defined")
    import pctalk.data
    import pctalk.tasks

    return _cli_class()(
        pctalk.tasks.BaseTask,
        pctalk.data.BaseDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        args=None if args is None else list(args),
        run=run,
        parser_kwargs={"prog": "pctalk"},
    )


def _user_error_in(err: BaseException, kinds: tuple[type[BaseException], ...]) -> BaseException | None:
    """``err`` or the error it was raised from (LightningCLI and jsonargparse wrap what a task's constructor raises)
    when that is a problem with the user's input or files."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, kinds):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__  # type: ignore[assignment]
    return None


def _check_ckpt_path(argv: Sequence[str]) -> None:
    """Refuse a ``--ckpt_path`` holding pickled code by its name, before LightningCLI reads its hyper-parameters."""
    from pctalk.weights import load_checkpoint

    for i, arg in enumerate(argv):
        path = arg.split("=", 1)[1] if arg.startswith("--ckpt_path=") else None
        if arg == "--ckpt_path" and i + 1 < len(argv):
            path = argv[i + 1]
        if path and path not in ("last", "best", "hpc", "null"):
            load_checkpoint(path, mmap=True)


def _broken_config(argv: Sequence[str]) -> str | None:
    """A message naming the first config file (``-c`` / ``--config``) that is missing or not valid YAML."""
    import yaml

    for flag, path in itertools.pairwise(argv):
        if flag not in ("-c", "--config"):
            continue
        if not os.path.isfile(path):
            return f"config file {path} not found"
        try:
            with open(path) as fh:
                yaml.safe_load(fh)
        except yaml.YAMLError as err:
            return f"{path} is not valid YAML: {err}"
    return None


def main(args: Sequence[str] | None = None) -> int:
    """Run ``pctalk`` with ``args`` (default: ``sys.argv[1:]``); returns the exit status."""
    argv = list(sys.argv[1:] if args is None else args)
    if argv and argv[0] in TRAINER_VERBS:
        from pctalk.commands import _user_errors

        if (broken := _broken_config(argv)) is not None:
            print(f"pctalk {argv[0]}: error: {broken}", file=sys.stderr)
            return 2
        try:
            _check_ckpt_path(argv)
            lightning_cli(None if args is None else argv)
        except Exception as err:  # missing shards, a refused checkpoint ...: the message says what to do
            cause = _user_error_in(err, _user_errors())
            if cause is None or os.environ.get("PCTALK_DEBUG"):
                raise
            print(f"pctalk {argv[0]}: error: {cause}  (PCTALK_DEBUG=1 shows the traceback)", file=sys.stderr)
            return 2
        return 0
    help_text = usage(
        "pctalk",
        {
            "training verbs": TRAINER_VERBS,
            "tool verbs": {name: verb.help for name, verb in TOOL_VERBS.items()},
        },
    )
    return dispatch("pctalk", TOOL_VERBS, argv, help_text)
