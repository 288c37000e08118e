"""Running pctalk on clusters: SLURM submission (``pctalk slurm submit``)."""

from pctalk.cluster.slurm import SlurmJob, render, run_dir, submit

__all__ = ["SlurmJob", "render", "run_dir", "submit"]
