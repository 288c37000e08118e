"""A real single-node SLURM cluster on localhost for the integration tests: Debian's ``slurm-wlm`` and ``munge``
(installed when missing), ``munged``, ``slurmctld`` and ``slurmd`` with a private config, state and logs in a
temporary folder. Every process it starts, it stops."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

__all__ = ["ClusterUnavailable", "LocalSlurm"]

PACKAGES = ("slurm-wlm", "munge")
MUNGE_RUN = Path("/run/munge")
MUNGE_KEY = Path("/etc/munge/munge.key")


class ClusterUnavailable(RuntimeError):
    """SLURM cannot be installed or started here (not root, no apt-get)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(*cmd: str, timeout: float = 60, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def install() -> None:
    """``apt-get install slurm-wlm munge`` unless both daemons are already there."""
    if all(shutil.which(b) for b in ("slurmctld", "slurmd", "sbatch", "munged")):
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise ClusterUnavailable("slurm-wlm and munge are missing and cannot be installed (needs root and apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *PACKAGES]):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if proc.returncode:
            raise ClusterUnavailable(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")


class LocalSlurm:
    """``with LocalSlurm(tmp) as cluster:`` a one-node cluster (``cpus`` CPUs, partition ``debug``) on localhost.

    ``cluster.env`` is the environment for ``sbatch``/``scontrol`` (it points ``SLURM_CONF`` at the private config).
    """

    def __init__(self, root: Path, cpus: int = 2) -> None:
        self.root, self.cpus = Path(root), cpus
        self.host = socket.gethostname().split(".")[0]
        self.conf = self.root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self._daemons: list[subprocess.Popen] = []
        self._munged_pid: int | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def __enter__(self) -> LocalSlurm:
        install()
        if os.geteuid() != 0:
            raise ClusterUnavailable("starting slurmd needs root")
        try:
            self._start_munge()
            self._write_config()
            for daemon in ("slurmctld", "slurmd"):
                log = open(self.root / f"{daemon}.stdout", "w")
                self._daemons.append(
                    subprocess.Popen([daemon, "-D", "-f", str(self.conf)], env=self.env, stdout=log, stderr=log)
                )
            self._wait_idle()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Cancel what is left, stop slurmd, slurmctld and (if this harness started it) munged."""
        if self._daemons and shutil.which("scancel"):
            subprocess.run(["scancel", "--user=root"], env=self.env, capture_output=True, timeout=30)
        for proc in reversed(self._daemons):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        self._daemons.clear()
        # slurmstepd processes of killed jobs exit with their steps; make sure none is left behind
        subprocess.run(["pkill", "-f", f"slurmstepd.*{self.root}"], capture_output=True)
        if self._munged_pid is not None:
            try:
                os.kill(self._munged_pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            self._munged_pid = None

    def _start_munge(self) -> None:
        if subprocess.run(["pgrep", "-x", "munged"], capture_output=True).returncode == 0:
            return  # the machine's own munged: leave it alone
        MUNGE_RUN.mkdir(parents=True, exist_ok=True)
        shutil.chown(MUNGE_RUN, "munge", "munge")
        if not MUNGE_KEY.is_file():
            MUNGE_KEY.parent.mkdir(parents=True, exist_ok=True)
            MUNGE_KEY.write_bytes(os.urandom(128))
            shutil.chown(MUNGE_KEY, "munge", "munge")
            MUNGE_KEY.chmod(0o400)
        _run("runuser", "-u", "munge", "--", "munged", "--force")
        pid_file = MUNGE_RUN / "munged.pid"
        for _ in range(50):
            if pid_file.is_file() and pid_file.read_text().strip():
                self._munged_pid = int(pid_file.read_text())
                return
            time.sleep(0.1)
        raise ClusterUnavailable("munged did not start")

    def _write_config(self) -> None:
        for sub in ("state", "spool"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        memory = min(8000, int(Path("/proc/meminfo").read_text().split()[1]) // 1024 - 1024)
        r = self.root
        self.conf.write_text(
            f"""ClusterName=pctalk-test
SlurmctldHost={self.host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobRequeue=1
ReturnToService=2
SchedulerType=sched/builtin
MinJobAge=600
KillWait=10
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={r}/slurmctld.log
SlurmdLogFile={r}/slurmd.log
NodeName={self.host} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={memory} State=UNKNOWN
PartitionName=debug Nodes={self.host} Default=YES MaxTime=INFINITE State=UP
"""
        )

    def _wait_idle(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc in self._daemons:
                if proc.poll() is not None:
                    raise ClusterUnavailable(f"{proc.args[0]} exited {proc.returncode}:\n{self.logs()}")
            out = subprocess.run(["sinfo", "-h", "-o", "%T"], env=self.env, capture_output=True, text=True)
            if out.returncode == 0 and out.stdout.strip() == "idle":
                return
            time.sleep(0.5)
        raise ClusterUnavailable(f"the node did not become idle in {timeout} s:\n{self.logs()}")

    # -- jobs --------------------------------------------------------------------------------------------------
    def job(self, job_id: str) -> dict[str, str]:
        """``scontrol show job`` as a dict (``JobState``, ``Restarts``, ...)."""
        out = _run("scontrol", "show", "job", "-o", job_id, env=self.env) if self._daemons else ""
        return dict(re.findall(r"(\w+)=(\S*)", out))

    def wait(self, job_id: str, until: set[str], timeout: float, log: Path | None = None) -> dict[str, str]:
        """Wait until the job's state is in ``until``; fail on a final state not in it."""
        final = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL"}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = self.job(job_id)
            state = info.get("JobState", "")
            if state in until:
                return info
            if state in final:
                raise AssertionError(f"job {job_id} ended {state} ({info.get('Reason')}):\n{self._tail(log)}")
            time.sleep(1)
        raise AssertionError(f"job {job_id} not {until} after {timeout} s: {self.job(job_id)}\n{self._tail(log)}")

    def _tail(self, log: Path | None) -> str:
        text = log.read_text()[-6000:] if log and log.is_file() else "(no job log)"
        return f"--- job log ---\n{text}\n{self.logs()}"

    def logs(self) -> str:
        """The last lines of the daemons' logs (for failure messages)."""
        parts = []
        for name in ("slurmctld.log", "slurmd.log", "slurmctld.stdout", "slurmd.stdout"):
            path = self.root / name
            if path.is_file():
                parts.append(f"--- {name} ---\n" + "\n".join(path.read_text().splitlines()[-25:]))
        return "\n".join(parts)
