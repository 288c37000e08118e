"""``benchmarks/gpu_check.py --dry-run``: every check of the GPU check runs on CPU at tiny sizes and passes, and the
table (printed and written with ``--out``) lists each as ok."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, offline_env

SCRIPT = REPO / "benchmarks" / "gpu_check.py"
#: every check the table must list (several have more than one row)
CHECKS = (
    "train ExpressionTask",
    "train LipRefinerTask",
    "train EmotionTask [label,video]",
    "train EmotionTask [label,audio,text,video]",
    "train EmotionClassifierTask",
    "generate: motion stage",
    "generate: render + paste-back",
    "pctalk generate (end to end)",
    "realtime: streamed motion",
    "realtime: compiled render",
    "pctalk-data build",
    "eval LSE-C/D",
    "eval FID",
    "eval NIQE",
    "eval FVD",
    "eval Acc_emo",
    "eval E-FID",
    "pctalk-eval run",
)


def _rows(text: str) -> list[list[str]]:
    lines = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith(("| check ", "| ---"))]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines]


@pytest.mark.slow
def test_the_dry_run_passes_every_check(tmp_path: Path) -> None:
    out = tmp_path / "gpu_check.md"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--dry-run", "--out", str(out), "--workdir", str(tmp_path / "work")],
        cwd=tmp_path, env=offline_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-6000:] + "\n--- stderr ---\n" + proc.stderr[-6000:]
    assert "DRY RUN" in proc.stdout and "torch" in proc.stdout
    rows = _rows(proc.stdout)
    assert rows and all(r[-1] == "ok" for r in rows), [r for r in rows if r[-1] != "ok"]
    assert {name for name, *_ in rows} >= set(CHECKS), set(CHECKS) - {name for name, *_ in rows}
    assert sum(name == "generate: render + paste-back" for name, *_ in rows) == 3  # batch 1, batched, bf16
    steps = [r for r in rows if r[0].startswith("train ") and r[3].startswith("steps/s")]
    assert len(steps) == 5 and all(float(r[2]) > 0 for r in steps)
    assert _rows(out.read_text()) == rows


def test_without_cuda_it_stops_with_a_clear_message(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(SCRIPT)], cwd=tmp_path, env=offline_env({"CUDA_VISIBLE_DEVICES": ""}),
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2 and "no CUDA device" in proc.stderr and "--dry-run" in proc.stderr
