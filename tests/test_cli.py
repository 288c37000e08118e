"""The ``pctalk`` command: verb dispatch, LightningCLI in subclass mode, composable configs, weights check."""

from __future__ import annotations

import pytest

from conftest import CONF
from pctalk.cli import TOOL_VERBS, TRAINER_VERBS, main
from pctalk.weights import REGISTRY


def test_help_lists_every_verb(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for verb in [*TRAINER_VERBS, *TOOL_VERBS]:
        assert f"  {verb} " in out


def test_no_verb_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: pctalk" in capsys.readouterr().out


def test_unknown_verb_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fitt"]) == 2
    assert "unknown verb 'fitt'" in capsys.readouterr().err


def test_fit_print_config_shows_the_subclass_mode_sections(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--print_config"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for key in ("trainer:", "model:", "data:", "optimizer:", "ckpt_path:"):
        assert key in out


def test_configs_compose_with_repeated_c(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["fit", "-c", str(CONF / "toy.yaml"), "-c", str(CONF / "toy_override.yaml"), "--print_config"])
    out = capsys.readouterr().out
    assert "class_path: toy_tasks.ToyTask" in out
    assert "hidden: 16" in out  # from the second file
    assert "max_epochs: 2" in out
    assert "n_samples: 64" in out  # kept from the first file


def test_rerun_into_the_same_log_dir_overwrites_its_config(log_dir) -> None:
    # A requeued SLURM job or a resumed wandb run starts again in the same directory.
    args = [
        "fit",
        "-c",
        str(CONF / "toy.yaml"),
        "--trainer.accelerator=cpu",
        f"--trainer.default_root_dir={log_dir}",
    ]
    assert main(args) == 0
    assert main([*args, "--model.init_args.hidden=4"]) == 0
    assert "hidden: 4" in (log_dir / "config.yaml").read_text()


def test_weights_check_lists_everything_missing(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    assert main(["weights", "check", "--root", str(tmp_path)]) == 0  # an empty root: every file listed, missing
    out = capsys.readouterr().out
    for entry in REGISTRY:
        assert entry.name in out
    assert out.count("missing") >= len(REGISTRY)
    assert f"0 of {len(REGISTRY)} files present" in out


def test_weights_check_strict_fails_on_missing(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    assert main(["weights", "check", "--root", str(tmp_path), "--strict"]) == 1
    out = capsys.readouterr().out
    assert "It comes from" in out


def test_weights_check_reports_present_files_and_sizes(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    for entry in REGISTRY:
        path = tmp_path / entry.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 2048)
    assert main(["weights", "check", "--root", str(tmp_path), "--strict"]) == 0
    out = capsys.readouterr().out
    assert f"{len(REGISTRY)} of {len(REGISTRY)} files present" in out
    assert "2.0 KiB" in out
