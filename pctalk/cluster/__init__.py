"""Running pctalk on clusters: SLURM submission (``pctalk slurm submit``, :mod:`pctalk.cluster.slurm`) and
requeue checkpoints saved at a batch boundary (:class:`pctalk.cluster.requeue.SlurmRequeue`, which imports
Lightning and so is not imported here)."""

from pctalk.cluster.slurm import SlurmJob, render, run_dir, submit

__all__ = ["SlurmJob", "render", "run_dir", "submit"]
