"""``pctalk slurm submit``: the rendered sbatch script; ``SlurmRequeue`` saving at a batch boundary; and a real
single-node SLURM cluster running a 2-task CPU DDP fit, then a SIGUSR1 that makes the ranks save
``hpc_ckpt_1.ckpt``, requeue the job and resume from it."""

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


# -- requeue checkpoints at a batch boundary (one process, SLURM's environment variables) -----------------------


@pytest.fixture
def in_slurm_job(monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment of one task of a SLURM batch job, as Lightning's ``SLURMEnvironment`` detects it."""
    for name, value in {"SLURM_NTASKS": "1", "SLURM_JOB_NAME": "pctalk-unit", "SLURM_JOB_ID": "7",
                        "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0",
                        "SLURM_NODELIST": "localhost"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SLURM_NTASKS_PER_NODE", raising=False)
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)


def _toy_fit(root: Path, *extra: str, run: bool = True):
    from pctalk.cli import lightning_cli

    args = ["fit", "-c", str(CONF / "toy.yaml"), f"--trainer.default_root_dir={root}", "--trainer.accelerator=cpu",
            "--trainer.max_epochs=3", *extra]  # fmt: skip
    return lightning_cli(args if run else args[1:], run=run)


def test_the_warning_signal_saves_at_the_next_batch_boundary_and_the_job_resumes_exactly(
    in_slurm_job: None, tmp_path: Path
) -> None:
    """The signal lands inside optimizer step 11 (8 steps an epoch): Lightning's own handler would save right
    there, mid-step; ``SlurmRequeue`` saves once that batch is done, at global step 12, and a job started again in
    the same folder resumes from it on its own and trains exactly the 12 missing batches."""
    root = tmp_path / "run"
    own = ["--trainer.callbacks+=pctalk.cluster.requeue.SlurmRequeue", "--trainer.callbacks.requeue=false"]
    signal_at_11 = ["--trainer.callbacks+=toy_tasks.SignalInsideStep", "--trainer.callbacks.at=11"]
    first = _toy_fit(root, *own, *signal_at_11, "--trainer.max_steps=14")  # then SLURM stops the job
    assert first.trainer.global_step == 14
    hpc = torch.load(root / "hpc_ckpt_1.ckpt", weights_only=True)
    assert (hpc["global_step"], hpc["epoch"]) == (12, 1)
    resumed = _toy_fit(root, *own)
    assert resumed.trainer.ckpt_path == str(root / "hpc_ckpt_1.ckpt")
    assert resumed.trainer.global_step == 24 and resumed.trainer.current_epoch == 3
    assert len(resumed.model.seen) == 12 * 8  # samples of the 12 missing batches, none repeated or skipped
    assert not (root / "hpc_ckpt_2.ckpt").exists()  # no signal, no checkpoint


def test_inside_a_gradient_accumulation_window_the_save_waits_for_the_optimizer_step(
    in_slurm_job: None, tmp_path: Path
) -> None:
    """Two batches per optimizer step: a signal as batch 4 starts (the first of step 3's window) is acted on after
    batch 5, at global step 3; the partial gradients of batch 4 alone would not be in the checkpoint."""
    root = tmp_path / "run"
    own = ["--trainer.callbacks+=pctalk.cluster.requeue.SlurmRequeue", "--trainer.callbacks.requeue=false"]
    signal = ["--trainer.callbacks+=toy_tasks.SignalAtBatch", "--trainer.callbacks.batch_idx=4"]
    _toy_fit(root, *own, *signal, "--trainer.accumulate_grad_batches=2", "--trainer.max_epochs=1")
    hpc = torch.load(root / "hpc_ckpt_1.ckpt", weights_only=True)
    assert hpc["global_step"] == 3
    assert hpc["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]["processed"] == 6


def test_fit_gets_slurm_requeue_inside_a_slurm_job_only(
    monkeypatch: pytest.MonkeyPatch, in_slurm_job: None, tmp_path: Path
) -> None:
    from pctalk.cluster.requeue import SlurmRequeue

    def requeues(cli) -> list:
        return [c for c in cli.trainer.callbacks if isinstance(c, SlurmRequeue)]

    (added,) = requeues(_toy_fit(tmp_path, run=False))
    assert added.requeue
    own = ["--trainer.callbacks+=pctalk.cluster.requeue.SlurmRequeue", "--trainer.callbacks.requeue=false"]
    (configured,) = requeues(_toy_fit(tmp_path, *own, run=False))  # a configured one is kept, not doubled
    assert not configured.requeue
    monkeypatch.delenv("SLURM_NTASKS")
    assert requeues(_toy_fit(tmp_path, run=False)) == []


def test_hpc_checkpoint_names_follow_lightnings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lightning.pytorch.trainer.connectors.checkpoint_connector import _CheckpointConnector

    from pctalk.cluster.requeue import hpc_checkpoint_path, slurm_job_id

    assert hpc_checkpoint_path(tmp_path / "missing") == f"{tmp_path}/missing/hpc_ckpt_1.ckpt"
    for name in ("hpc_ckpt_1.ckpt", "hpc_ckpt_3.ckpt", "last.ckpt"):
        (tmp_path / name).touch()
    expected = f"{tmp_path}/hpc_ckpt_4.ckpt"
    assert hpc_checkpoint_path(tmp_path) == expected == _CheckpointConnector.hpc_save_path(tmp_path)
    monkeypatch.setenv("SLURM_JOB_ID", "41")
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    assert slurm_job_id() == "41"
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "40")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    assert slurm_job_id() == "40_3"


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
    assert "SLURM requeue: on SIGUSR1, hpc_ckpt_N.ckpt is saved at the next batch boundary" in text
    assert "SLURM auto-requeueing enabled" not in text  # Lightning's in-handler save is off
    for rank in (0, 1):
        assert f"Initializing distributed: GLOBAL_RANK: {rank}, MEMBER: {rank + 1}/2" in text
    (last,) = (tmp_path / "run").rglob("last.ckpt")
    assert torch.load(last, weights_only=True)["epoch"] == 1


@pytest.mark.cluster
@pytest.mark.slow
def test_sigusr1_saves_an_hpc_checkpoint_requeues_and_resumes(
    cluster: LocalSlurm, run_cli, tmp_path: Path, synthetic_corpus
) -> None:
    max_epochs = 20  # the signal lands after the first epoch; 19 more leave a wide margin
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
    assert f"SLURM requeue: saved {root / 'hpc_ckpt_1.ckpt'} at global step" in text
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
