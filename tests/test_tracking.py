"""Experiment tracking: wandb as the default logger with a run id derived from the run directory, CSV and
TensorBoard as drop-ins, and the SampleLogger callback's videos and lip plots."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import yaml

from conftest import CONF
from pctalk.cli import main
from pctalk.tasks.samples import lip_plot
from pctalk.tracking import resolve_wandb_logger, run_id


def _toy_config(tmp_path: Path, **trainer: object) -> Path:
    """tests/conf/toy.yaml without its ``logger: false`` (so the default logger applies), plus ``trainer``."""
    config = yaml.safe_load((CONF / "toy.yaml").read_text())
    del config["trainer"]["logger"]
    config["trainer"].update(accelerator="cpu", **trainer)
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_run_id_is_stable_per_directory_and_safe_for_wandb(tmp_path: Path) -> None:
    a = run_id(tmp_path / "runs" / "lac expression:v2")
    assert a == run_id(tmp_path / "runs" / "." / "lac expression:v2")  # same directory, same id
    assert a != run_id(tmp_path / "other" / "lac expression:v2")  # same name elsewhere, another run
    assert a.startswith("lac_expression_v2-")
    assert all(c.isalnum() or c in "_.-" for c in a)


def test_resolve_fills_only_what_the_user_left_unset(tmp_path: Path) -> None:
    wandb = {"class_path": "lightning.pytorch.loggers.WandbLogger", "init_args": {"project": "p", "save_dir": "."}}
    resolved = resolve_wandb_logger(wandb, tmp_path)
    assert resolved["init_args"] == {
        "project": "p",
        "save_dir": str(tmp_path),
        "id": run_id(tmp_path),
        "resume": "allow",
    }
    mine = {"class_path": "WandbLogger", "init_args": {"id": "mine", "save_dir": "/logs", "resume": "must"}}
    assert resolve_wandb_logger(mine, tmp_path)["init_args"] == {"id": "mine", "save_dir": "/logs", "resume": "must"}
    csv = {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": "."}}
    assert resolve_wandb_logger([csv], tmp_path) == [csv]
    assert resolve_wandb_logger(False, tmp_path) is False


def test_wandb_is_the_default_logger(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["fit", "--print_config"])
    logger = yaml.safe_load(capsys.readouterr().out)["trainer"]["logger"]
    assert logger["class_path"] == "lightning.pytorch.loggers.WandbLogger"
    assert logger["init_args"]["project"] == "pctalk"


@pytest.mark.slow
def test_offline_wandb_run_continues_under_the_same_id_when_restarted(run_cli, tmp_path: Path) -> None:
    config = _toy_config(tmp_path)
    root = tmp_path / "runs" / "toy"
    args = ["fit", "-c", config, f"--trainer.default_root_dir={root}"]
    run_cli(args, env={"WANDB_MODE": "offline"})
    run_cli(
        [*args, "--trainer.max_epochs=2", f"--ckpt_path={next(root.rglob('*.ckpt'))}"], env={"WANDB_MODE": "offline"}
    )
    expected = run_id(root)
    runs = sorted((root / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(r.name.endswith(f"-{expected}") for r in runs), runs
    assert (runs[0] / f"run-{expected}.wandb").is_file()
    checkpoints = sorted(p.name for p in (root / "checkpoints").iterdir())
    assert checkpoints == ["epoch=0-step=8.ckpt", "epoch=1-step=16.ckpt"]


@pytest.mark.parametrize(
    ("logger", "written"),
    [
        ("lightning.pytorch.loggers.CSVLogger", "metrics.csv"),
        ("lightning.pytorch.loggers.TensorBoardLogger", "events.*"),
    ],
)
def test_csv_and_tensorboard_loggers_are_drop_ins(tmp_path: Path, logger: str, written: str) -> None:
    config = _toy_config(tmp_path)
    root = tmp_path / "run"
    assert main(["fit", "-c", str(config), f"--trainer.default_root_dir={root}", f"--trainer.logger={logger}",
                 f"--trainer.logger.save_dir={root}"]) == 0  # fmt: skip
    assert list(root.rglob(written)), sorted(root.rglob("*"))
    assert list((root / "checkpoints").glob("*.ckpt"))  # one fixed folder whatever the logger
    assert not (root / "wandb").exists()


def test_lip_plot_draws_target_in_green_and_prediction_in_red() -> None:
    t = np.linspace(0, 4 * np.pi, 100)
    target = np.stack([np.zeros_like(t), np.sin(t)], 1)
    image = lip_plot(target * 0.5, target)
    assert image.shape == (240, 640, 3) and image.dtype == np.uint8
    green = (image[..., 1] > 140) & (image[..., 0] < 80)
    red = (image[..., 0] > 200) & (image[..., 1] < 80)
    assert green.sum() > 300 and red.sum() > 300
    # The prediction has half the amplitude: its rows span about half the target's.
    rows = lambda mask: np.ptp(np.nonzero(mask)[0])  # noqa: E731
    assert 0.35 < rows(red) / rows(green) < 0.65


def _sample_config(tmp_path: Path, corpus: Path, default_logger: bool = False, **sample_args: object) -> Path:
    config = yaml.safe_load((CONF / "expression_tiny.yaml").read_text())
    if default_logger:
        del config["trainer"]["logger"]
    config["data"]["init_args"]["root"] = str(corpus)
    config["trainer"]["callbacks"] = [
        {"class_path": "pctalk.tasks.samples.SampleLogger", "init_args": {"every_n_val_epochs": 2, **sample_args}}
    ]
    config["trainer"].update(max_epochs=2, limit_train_batches=1, limit_val_batches=1, num_sanity_val_steps=0)
    path = tmp_path / "samples.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _streams(path: Path) -> tuple[tuple[int, int, int], bool]:
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        return (len(frames), *frames[0].shape[:2]), bool(container.streams.audio)


@pytest.mark.slow
def test_sample_logger_writes_keypoint_videos_and_logs_them_to_wandb(
    run_cli, tmp_path: Path, synthetic_corpus: Path
) -> None:
    config = _sample_config(tmp_path, synthetic_corpus, default_logger=True, num_samples=2)
    root = tmp_path / "run"
    run_cli(["fit", "-c", config, f"--trainer.default_root_dir={root}"], env={"WANDB_MODE": "offline"})
    (step,) = (root / "samples").iterdir()  # every 2nd validation epoch of 2: once
    videos, plots = sorted(step.glob("*.mp4")), sorted(step.glob("*_lips.png"))
    assert len(videos) == len(plots) == 2
    (n, h, w), has_audio = _streams(videos[0])
    assert has_audio and (h, w) == (256, 512)  # prediction beside ground truth
    assert n > 20
    (run,) = (root / "wandb").glob("offline-run-*")
    logged = {p.suffix for p in (run / "files" / "media").rglob("*.*")}
    assert {".mp4", ".png"} <= logged, logged


@pytest.mark.slow
def test_sample_logger_renders_faces_when_weights_are_given(
    tmp_path: Path, synthetic_corpus: Path, liveportrait_weights: Path
) -> None:
    config = _sample_config(
        tmp_path, synthetic_corpus, num_samples=1, weights=str(liveportrait_weights), liveportrait_size="tiny"
    )
    root = tmp_path / "run"
    assert main(["fit", "-c", str(config), f"--trainer.default_root_dir={root}"]) == 0
    (video,) = root.rglob("samples/*/*.mp4")
    (n, h, w), has_audio = _streams(video)
    assert has_audio and (h, w) == (128, 128) and n > 20  # the tiny LivePortrait renders 64x64 crops at 128x128
    with av.open(str(video)) as container:
        frame = next(container.decode(video=0)).to_ndarray(format="rgb24")
    assert frame.std() > 1.0  # a rendered image, not a blank frame
