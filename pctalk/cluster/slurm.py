"""``pctalk slurm submit``: render ``experiments/slurm/train.sbatch`` for a run and submit it with ``sbatch``.

The rendered script goes to ``<default_root_dir>/slurm/train.sbatch`` (a record of what ran) with the job's sizes,
the absolute config paths, the working directory and the Python that submitted it; the job log goes to
``<default_root_dir>/slurm/<job name>-<job id>.out`` and a requeued job appends to it.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

__all__ = ["TEMPLATE", "SlurmJob", "render", "run_dir", "slurm_main", "submit"]

#: The training script every submission renders (in the repository, beside the other sbatch files).
TEMPLATE = Path(__file__).resolve().parents[2] / "experiments" / "slurm" / "train.sbatch"


@dataclass
class SlurmJob:
    """What ``sbatch`` is asked for. ``gpus`` is per node; ``tasks_per_node`` defaults to it (one task per GPU) and
    must be given for CPU jobs (``gpus=0``)."""

    configs: list[str]
    nodes: int = 1
    gpus: int = 8
    tasks_per_node: int | None = None
    cpus_per_task: int = 8
    time: str = "24:00:00"
    partition: str | None = None
    account: str | None = None
    job_name: str = "pctalk-train"
    fit_args: list[str] = field(default_factory=list)

    @property
    def tasks(self) -> int:
        tasks = self.tasks_per_node if self.tasks_per_node is not None else self.gpus
        if tasks < 1:
            raise ValueError("a CPU job (--gpus 0) needs --tasks-per-node N: the number of DDP processes per node")
        return tasks


def _option(args: Sequence[str], name: str) -> str | None:
    """The last value of ``--name=V`` or ``--name V`` in ``args``."""
    value = None
    for i, arg in enumerate(args):
        if arg.startswith(f"{name}="):
            value = arg.split("=", 1)[1]
        elif arg == name and i + 1 < len(args):
            value = args[i + 1]
    return value


def run_dir(configs: Sequence[str], fit_args: Sequence[str] = ()) -> Path:
    """The run's ``trainer.default_root_dir``: from the command line, else the last config that sets it.

    Raises:
        ValueError: when none sets it; a requeued job must find its ``hpc_ckpt`` in a fixed folder.
    """
    root = _option(fit_args, "--trainer.default_root_dir")
    if root is None:
        for config in configs:
            loaded = yaml.safe_load(Path(config).read_text()) or {}
            root = (loaded.get("trainer") or {}).get("default_root_dir", root)
    if not root:
        raise ValueError(
            "set trainer.default_root_dir (in the config or as -- --trainer.default_root_dir=DIR): a requeued job "
            "resumes from the hpc_ckpt in that folder, so it must be fixed"
        )
    return Path(root).expanduser().resolve()


_DIRECTIVE = re.compile(r"^#SBATCH\s+--([a-z-]+)(?:[=\s]\S*)?\s*$")


def render(job: SlurmJob, root: Path, template: Path = TEMPLATE, python: str = sys.executable) -> str:
    """The sbatch script for ``job`` writing into ``root``: the template's ``#SBATCH`` lines set to the job, its
    Python pinned, its arguments baked in (configs made absolute, ``default_root_dir`` fixed)."""
    if not template.is_file():
        raise FileNotFoundError(f"{template}: the sbatch template is missing; give --template PATH")
    directives = {
        "job-name": job.job_name,
        "nodes": str(job.nodes),
        "ntasks-per-node": str(job.tasks),
        "gres": f"gpu:{job.gpus}" if job.gpus else None,
        "cpus-per-task": str(job.cpus_per_task),
        "time": job.time,
        "partition": job.partition,
        "account": job.account,
        "output": str(root / "slurm" / "%x-%j.out"),
        "chdir": os.getcwd(),
    }
    lines, seen = [], set()
    body = template.read_text().splitlines()
    for line in body:
        match = _DIRECTIVE.match(line)
        if match and match.group(1) in directives:
            name = match.group(1)
            seen.add(name)
            if directives[name] is not None:
                lines.append(f"#SBATCH --{name}={directives[name]}")
            continue
        lines.append(line)
    last = max(i for i, line in enumerate(lines) if line.startswith("#SBATCH"))
    extra = [f"#SBATCH --{k}={v}" for k, v in directives.items() if k not in seen and v is not None]
    lines[last + 1 : last + 1] = extra
    args = [a for c in job.configs for a in ("-c", str(Path(c).resolve()))]
    args += [*job.fit_args, f"--trainer.default_root_dir={root}"]
    script = "\n".join(lines) + "\n"
    script = script.replace("PYTHON=${PCTALK_PYTHON:-python}", f"PYTHON=${{PCTALK_PYTHON:-{shlex.quote(python)}}}")
    return script.replace('fit "$@"', f"fit {shlex.join(args)}")


def submit(job: SlurmJob, template: Path = TEMPLATE, dry_run: bool = False) -> tuple[str | None, Path]:
    """Render ``job`` into its run directory and ``sbatch`` it; returns (job id or None on a dry run, script)."""
    for config in job.configs:
        if not Path(config).is_file():
            raise FileNotFoundError(f"{config}: no such config")
    root = run_dir(job.configs, job.fit_args)
    script = render(job, root, template)
    path = root / "slurm" / "train.sbatch"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".sbatch.tmp")
    tmp.write_text(script)
    tmp.replace(path)
    if dry_run:
        return None, path
    if shutil.which("sbatch") is None:
        raise FileNotFoundError("sbatch: not found; run this on a SLURM login node (or use --dry-run)")
    proc = subprocess.run(["sbatch", "--parsable", str(path)], capture_output=True, text=True)
    if proc.returncode:
        raise ValueError(f"sbatch refused {path}:\n{proc.stderr.strip()}")
    return proc.stdout.strip().split(";")[0], path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pctalk slurm submit",
        description="Render experiments/slurm/train.sbatch for a run and submit it (requeue-safe DDP training).",
        epilog="examples:\n  pctalk slurm submit experiments/lac/expression.yaml --nodes 2 --gpus 8 --partition gpu "
        "-- --data.init_args.root /data/shards/hdtf\n  pctalk slurm submit cfg.yaml --gpus 0 --tasks-per-node 2 "
        "-- --trainer.accelerator=cpu   # CPU DDP\nOther sbatch options: set SBATCH_* variables (e.g. SBATCH_QOS).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("configs", nargs="+", metavar="CONFIG", help="pctalk fit configs (composed in order, like -c)")
    p.add_argument("--nodes", type=int, default=1)
    p.add_argument("--gpus", type=int, default=8, help="GPUs per node (one DDP task each); 0 for a CPU job")
    p.add_argument("--tasks-per-node", type=int, help="DDP processes per node (default: --gpus)")
    p.add_argument("--cpus-per-task", type=int, default=8, help="data-loading CPUs per task")
    p.add_argument("--time", default="24:00:00", help="wall-clock limit (the job requeues itself at the end)")
    p.add_argument("--partition")
    p.add_argument("--account")
    p.add_argument("--job-name", default="pctalk-train")
    p.add_argument("--template", type=Path, default=TEMPLATE, help="the sbatch template")
    p.add_argument("--dry-run", action="store_true", help="write the script and print it; do not submit")
    return p


def slurm_main(argv: Sequence[str]) -> int:
    """``pctalk slurm submit ...``; returns the exit status."""
    from pctalk.commands import _user_errors

    argv = list(argv)
    if not argv or argv[0] != "submit":
        print("usage: pctalk slurm submit CONFIG [CONFIG ...] [options] [-- FIT_ARGS ...]", file=sys.stderr)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    argv = argv[1:]
    fit_args: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, fit_args = argv[:at], argv[at + 1 :]
    args = _parser().parse_args(argv)
    job = SlurmJob(
        configs=args.configs, nodes=args.nodes, gpus=args.gpus, tasks_per_node=args.tasks_per_node,
        cpus_per_task=args.cpus_per_task, time=args.time, partition=args.partition, account=args.account,
        job_name=args.job_name, fit_args=fit_args,
    )  # fmt: skip
    try:
        job_id, script = submit(job, args.template, dry_run=args.dry_run)
    except _user_errors() as err:
        if os.environ.get("PCTALK_DEBUG"):
            raise
        print(f"pctalk slurm submit: error: {err}", file=sys.stderr)
        return 2
    if job_id is None:
        print(script.read_text(), end="")
        print(f"# written to {script} (not submitted)", file=sys.stderr)
    else:
        print(f"submitted job {job_id}: {job.nodes} node(s) x {job.tasks} task(s)")
        print(f"  script: {script}\n  log:    {script.parent / f'{job.job_name}-{job_id}.out'}")
    return 0
