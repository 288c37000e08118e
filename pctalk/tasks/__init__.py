"""Training tasks: thin LightningModules over the networks in :mod:`pctalk.models`."""

from pctalk.tasks.base import BaseTask

__all__ = ["BaseTask"]
