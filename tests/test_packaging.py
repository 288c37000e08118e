"""The package installs as declared: dependencies in sync with environment.yml, entry points present."""

from __future__ import annotations

import tomllib

import pytest
import yaml
from packaging.requirements import Requirement

from conftest import REPO


def _normalise(spec: str) -> tuple[str, str, frozenset[str]]:
    req = Requirement(spec)
    return req.name.lower().replace("_", "-"), str(req.specifier), frozenset(req.extras)


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _conda_pip_requirements() -> list[str]:
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip_sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_sections) == 1, "environment.yml must have exactly one pip section"
    return [r for r in pip_sections[0] if not r.startswith("-e")]


def test_environment_yml_matches_pyproject() -> None:
    declared = {_normalise(r) for r in _pyproject()["project"]["dependencies"]}
    conda = {_normalise(r) for r in _conda_pip_requirements()}
    assert conda - declared == set(), f"in environment.yml only: {sorted(conda - declared)}"
    assert declared - conda == set(), f"in pyproject.toml only: {sorted(declared - conda)}"


def test_environment_yml_installs_the_package_and_pins_python() -> None:
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    plain = [d for d in env["dependencies"] if isinstance(d, str)]
    assert "python=3.11" in plain
    assert "ffmpeg" in plain
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "-e ." in pip


def test_torch_stack_is_pinned_together() -> None:
    deps = {_normalise(r)[0]: _normalise(r)[1] for r in _pyproject()["project"]["dependencies"]}
    assert deps["torch"] == "==2.11.*"
    assert deps["torchvision"] == "==0.26.*"
    assert deps["torchaudio"] == "==2.11.0"  # 2.11.1 does not load beside torch 2.11.0


def test_console_scripts_point_at_main_functions() -> None:
    scripts = _pyproject()["project"]["scripts"]
    assert scripts == {
        "pctalk": "pctalk.cli:main",
        "pctalk-data": "data_prep.cli:main",
        "pctalk-eval": "eval.cli:main",
    }


@pytest.mark.parametrize("module", ["pctalk", "data_prep", "eval"])
def test_python_dash_m_entry_points(run_cli, module: str) -> None:
    proc = run_cli(["--help"], module=module, timeout=120)
    assert "usage:" in proc.stdout


def test_installed_torch_is_the_pinned_build() -> None:
    import torch
    import torchaudio
    import torchvision

    assert torch.__version__.startswith("2.11.")
    assert torchvision.__version__.startswith("0.26.")
    assert torchaudio.__version__.startswith("2.11.")
