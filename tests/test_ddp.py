"""The training plumbing under 2-process CPU DDP: both ranks run, see disjoint data and write one checkpoint."""

from __future__ import annotations

import json

import pytest

from conftest import CONF


@pytest.mark.ddp
def test_two_process_ddp_fit(ddp_fit, log_dir) -> None:
    proc = ddp_fit(["-c", str(CONF / "toy.yaml")])
    ranks = sorted(json.loads(p.read_text())["rank"] for p in (log_dir / "ranks").glob("rank*.json"))
    assert ranks == [0, 1], proc.stderr[-3000:]
    records = [json.loads((log_dir / "ranks" / f"rank{r}.json").read_text()) for r in ranks]
    assert all(r["world_size"] == 2 for r in records)
    seen = [set(r["seen"]) for r in records]
    assert seen[0].isdisjoint(seen[1])
    assert len(records[0]["seen"]) == len(records[1]["seen"]) == 32
    assert seen[0] | seen[1] == set(range(64))
    assert len(list((log_dir / "checkpoints").glob("*.ckpt"))) == 1
    assert (log_dir / "config.yaml").is_file()
