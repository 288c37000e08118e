"""``pctalk slurm submit``: the rendered sbatch script, and a real single-node SLURM cluster running a 2-task CPU DDP
fit, then a SIGUSR1 that makes Lightning save ``hpc_ckpt_1.ckpt``, requeue the job and resume from it."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml

from conftest import CONF
from pctalk.cluster.slurm import TEMPLATE, SlurmJob, render, run_dir
from slurm_cluster import ClusterUnavailable, LocalSlurm


def _directives(script: str) -> dict[str, str]:
    out = {}
    for line in script.splitlines():
        if line.startswith("#SBATCH --"):
            key, _, value = line[len("#SBATCH --") :].partition("=")
            out[key] = value
    return out


def test_render_sets_the_job_sizes_and_bakes_in_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    job = SlurmJob(configs=["a.yaml", "b.yaml"], nodes=2, gpus=4, time="02:00:00", partition="gpu",
                   fit_args=["--data.init_args.root", "/data/shards/hdtf"])  # fmt: skip
    script = render(job, tmp_path / "run", python="/opt/venv/bin/python")
    d = _directives(script)
    assert (d["nodes"], d["ntasks-per-node"], d["gres"], d["time"], d["partition"]) == ("2", "4", "gpu:4",
                                                                                       "02:00:00", "gpu")  # fmt: skip
    assert d["signal"] == "SIGUSR1@90" and "requeue" in d and d["open-mode"] == "append"
    assert d["output"] == f"{tmp_path}/run/slurm/%x-%j.out" and d["chdir"] == str(tmp_path)
    assert "account" not in d  # unset options are left out
    assert f"fit -c {tmp_path}/a.yaml -c {tmp_path}/b.yaml --data.init_args.root /data/shards/hdtf" in script
    assert f"--trainer.default_root_dir={tmp_path}/run" in script
    assert "PYTHON=${PCTALK_PYTHON:-/opt/venv/bin/python}" in script
    assert '--trainer.devices="${SLURM_NTASKS_PER_NODE}"' in script  # Lightning's devices = tasks per node
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)  # valid bash


def test_a_cpu_job_has_no_gres_and_needs_its_task_count(tmp_path: Path) -> None:
    d = _directives(render(SlurmJob(configs=[], gpus=0, tasks_per_node=2, cpus_per_task=1), tmp_path))
    assert "gres" not in d and d["ntasks-per-node"] == "2" and d["cpus-per-task"] == "1"
    with pytest.raises(ValueError, match="--tasks-per-node"):
        render(SlurmJob(configs=[], gpus=0), tmp_path)


def test_the_run_directory_must_be_fixed(tmp_path: Path) -> None:
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("trainer:\n  default_root_dir: runs/a\n")
    b.write_text("model: {}\n")
    assert run_dir([str(a), str(b)]) == Path("runs/a").resolve()  # the last config that sets it
    assert run_dir([str(a)], ["--trainer.default_root_dir", "/x/y"]) == Path("/x/y")  # the command line wins
    with pytest.raises(ValueError, match="default_root_dir"):
        run_dir([str(b)])


def test_submit_without_sbatch_explains_and_dry_run_writes_the_script(run_cli, tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"trainer:\n  default_root_dir: {tmp_path / 'run'}\n")
    dry = run_cli(["slurm", "submit", config, "--gpus", "2", "--dry-run"])
    assert (tmp_path / "run" / "slurm" / "train.sbatch").read_text() == dry.stdout
    missing = run_cli(["slurm", "submit", tmp_path / "nope.yaml"], check=False)
    assert missing.returncode == 2 and "nope.yaml: no such config" in missing.stderr


def test_the_shipped_template_is_a_valid_script_on_its_own() -> None:
    d = _directives(TEMPLATE.read_text())
    assert {"nodes", "ntasks-per-node", "gres", "signal", "requeue", "time"} <= set(d)
    subprocess.run(["bash", "-n", str(TEMPLATE)], check=True)


# -- a real SLURM ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSlurm]:
    try:
        with LocalSlurm(tmp_path_factory.mktemp("slurm"), cpus=min(2, os.cpu_count() or 1)) as running:
            yield running
    except ClusterUnavailable as err:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the SLURM integration test: {err}")
        pytest.skip(str(err))


def _fit_config(tmp_path: Path, corpus: Path, max_epochs: int) -> Path:
    config = yaml.safe_load((CONF / "expression_tiny.yaml").read_text())
    config["data"]["init_args"]["root"] = str(corpus)
    del config["trainer"]["logger"]  # the default (wandb; disabled in tests)
    config["trainer"].update(
        max_epochs=max_epochs,
        default_root_dir=str(tmp_path / "run"),
        callbacks=[{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": {"save_last": True}}],
    )
    path = tmp_path / "fit.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _submit(run_cli, cluster: LocalSlurm, config: Path) -> tuple[str, Path]:
    proc = run_cli(
        ["slurm", "submit", config, "--gpus", "0", "--tasks-per-node", "2", "--cpus-per-task", "1",
         "--time", "00:10:00", "--partition", "debug", "--job-name", "pctalk-test",
         "--", "--trainer.accelerator=cpu", "--trainer.strategy=ddp"],
        env={"SLURM_CONF": str(cluster.conf)},
    )  # fmt: skip
    job_id = proc.stdout.split("submitted job ")[1].split(":")[0]
    return job_id, config.parent / "run" / "slurm" / f"pctalk-test-{job_id}.out"


@pytest.mark.cluster
@pytest.mark.slow
def test_a_two_task_ddp_job_trains_on_slurm(cluster: LocalSlurm, run_cli, tmp_path: Path, synthetic_corpus) -> None:
    job_id, log = _submit(run_cli, cluster, _fit_config(tmp_path, synthetic_corpus, max_epochs=2))
    cluster.wait(job_id, {"COMPLETED"}, timeout=300, log=log)
    text = log.read_text()
    assert "SLURM auto-requeueing enabled" in text
    for rank in (0, 1):
        assert f"Initializing distributed: GLOBAL_RANK: {rank}, MEMBER: {rank + 1}/2" in text
    (last,) = (tmp_path / "run").rglob("last.ckpt")
    assert torch.load(last, weights_only=True)["epoch"] == 1


@pytest.mark.cluster
@pytest.mark.slow
def test_sigusr1_saves_an_hpc_checkpoint_requeues_and_resumes(
    cluster: LocalSlurm, run_cli, tmp_path: Path, synthetic_corpus
) -> None:
    max_epochs = 60
    job_id, log = _submit(run_cli, cluster, _fit_config(tmp_path, synthetic_corpus, max_epochs=max_epochs))
    root = tmp_path / "run"
    cluster.wait(job_id, {"RUNNING"}, timeout=120, log=log)
    deadline = time.monotonic() + 240
    while not list(root.rglob("last.ckpt")):  # training is under way: the first epoch is done
        assert time.monotonic() < deadline, cluster._tail(log)
        assert cluster.job(job_id)["JobState"] == "RUNNING", cluster._tail(log)
        time.sleep(0.5)
    subprocess.run(["scancel", "--signal=USR1", job_id], env=cluster.env, check=True)
    info = cluster.wait(job_id, {"COMPLETED"}, timeout=600, log=log)
    text = log.read_text()
    assert (root / "hpc_ckpt_1.ckpt").is_file(), text[-4000:]
    assert info["Restarts"] == "1"
    assert "(restart 0)" in text and "(restart 1)" in text
    assert f"Restoring states from the checkpoint path at {root / 'hpc_ckpt_1.ckpt'}" in text
    interrupted_at = torch.load(root / "hpc_ckpt_1.ckpt", weights_only=True)["epoch"]
    assert 0 <= interrupted_at < max_epochs - 1
    final = torch.load(next(root.rglob("last.ckpt")), weights_only=True)
    steps_per_epoch = 2  # 16 samples per epoch over 2 ranks, batches of 4
    assert (final["epoch"], final["global_step"]) == (max_epochs - 1, max_epochs * steps_per_epoch)


@pytest.mark.cluster
@pytest.mark.slow
def test_the_eval_sbatch_scores_a_table_with_two_ranks(cluster: LocalSlurm, tmp_path: Path) -> None:
    """``experiments/slurm/eval.sbatch`` as a user submits it, on CPUs (no GPU visible: it picks the CPU)."""
    import json
    import sys

    from conftest import REPO
    from raw_media import hdtf_dataset

    raw = hdtf_dataset(tmp_path / "HDTF", {"B": 2})
    config = {
        "table": "table1", "dataset": "hdtf", "root": str(raw), "out": str(tmp_path / "results"),
        "methods": [{"name": "Reference", "videos": str(raw)}],
        "settings": {"metrics": ["niqe"], "frame_stride": 25},
    }  # fmt: skip
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    env = {**cluster.env, "PCTALK_PYTHON": sys.executable, "WANDB_MODE": "disabled", "CUDA_VISIBLE_DEVICES": ""}
    log = tmp_path / "eval.out"
    job_id = subprocess.run(
        ["sbatch", "--parsable", "--ntasks-per-node=2", "--cpus-per-task=1", "--gres=none", "--partition=debug",
         "--time=00:10:00", f"--output={log}", f"--chdir={tmp_path}", str(REPO / "experiments/slurm/eval.sbatch"),
         "--config", str(tmp_path / "run.yaml")],
        env=env, capture_output=True, text=True, check=True,
    ).stdout.strip().split(";")[0]  # fmt: skip
    cluster.wait(job_id, {"COMPLETED"}, timeout=300, log=log)
    text = log.read_text()
    for rank in (0, 1):
        assert f"GLOBAL_RANK: {rank}, MEMBER: {rank + 1}/2" in text, text[-3000:]
    results = json.loads((tmp_path / "results" / "results.json").read_text())
    assert results["blocks"]["HDTF"]["Reference"]["clips"] == 2 and results["blocks"]["HDTF"]["Reference"]["niqe"] > 0
    assert (tmp_path / "results" / "table.md").is_file()
