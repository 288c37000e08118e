"""Every shipped config parses against the code it feeds (so none goes stale)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import REPO
from eval.cli import main as eval_main
from pctalk.cli import main

CONFIGS = sorted(p for p in (REPO / "experiments").rglob("*.yaml") if not p.name.startswith("table"))
TABLES = sorted((REPO / "experiments" / "eval").glob("table*.yaml"))


def _stack(path: Path) -> list[str]:
    """``-c`` arguments for ``path``, preceded by its base when its first line names one (``# base: FILE``)."""
    first = path.read_text().splitlines()[0]
    base = [str(REPO / first.split(":", 1)[1].strip())] if first.startswith("# base:") else []
    return [arg for config in [*base, str(path)] for arg in ("-c", config)]


def test_configs_exist() -> None:
    names = {p.relative_to(REPO / "experiments").as_posix() for p in CONFIGS}
    assert {"lac/expression.yaml", "lac/refiner.yaml", "emc/emotion.yaml", "quickstart/expression.yaml"} <= names
    assert "eval/emotion_classifier.yaml" in names
    for config in (
        "lac/expression.yaml",
        "lac/refiner.yaml",
        "emc/emotion.yaml",
        "eval/emotion_classifier.yaml",
        "lac/style_encoder.yaml",
    ):
        assert config.replace(".yaml", "_debug.yaml") in names


@pytest.mark.parametrize("path", CONFIGS, ids=[p.relative_to(REPO).as_posix() for p in CONFIGS])
def test_config_parses(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["fit", *_stack(path), "--print_config"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "class_path: pctalk." in out or "class_path: eval." in out


def test_every_paper_table_has_configs() -> None:
    names = {p.name for p in TABLES}
    assert {"table1_hdtf.yaml", "table1_mead_neutral.yaml", "table2_hdtf.yaml", "table2_mead.yaml"} <= names
    assert "table3_ablation.yaml" in names


@pytest.mark.parametrize("path", TABLES, ids=[p.name for p in TABLES])
def test_eval_config_parses(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        eval_main(["run", "--config", str(path), "--print_config"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "methods:" in out and "table: table" in out
