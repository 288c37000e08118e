"""Every shipped config parses against the code it feeds (so none goes stale)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import REPO
from pctalk.cli import main

CONFIGS = sorted(p for p in (REPO / "experiments").rglob("*.yaml"))


def _stack(path: Path) -> list[str]:
    """``-c`` arguments for ``path``, preceded by its base when its first line names one (``# base: FILE``)."""
    first = path.read_text().splitlines()[0]
    base = [str(REPO / first.split(":", 1)[1].strip())] if first.startswith("# base:") else []
    return [arg for config in [*base, str(path)] for arg in ("-c", config)]


def test_configs_exist() -> None:
    names = {p.relative_to(REPO / "experiments").as_posix() for p in CONFIGS}
    assert {"lac/expression.yaml", "lac/refiner.yaml", "emc/emotion.yaml", "quickstart/expression.yaml"} <= names
    for config in ("lac/expression.yaml", "lac/refiner.yaml", "emc/emotion.yaml"):  # every stage has a debug twin
        assert config.replace(".yaml", "_debug.yaml") in names


@pytest.mark.parametrize("path", CONFIGS, ids=[p.relative_to(REPO).as_posix() for p in CONFIGS])
def test_config_parses(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["fit", *_stack(path), "--print_config"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "class_path: pctalk." in out
