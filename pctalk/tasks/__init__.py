"""Training tasks: thin LightningModules over the networks in :mod:`pctalk.models`."""

from pctalk.tasks.base import BaseTask
from pctalk.tasks.emotion import EmotionTask
from pctalk.tasks.expression import ExpressionTask
from pctalk.tasks.refiner import LipRefinerTask
from pctalk.tasks.style import SpeakingStyleTask

__all__ = ["BaseTask", "EmotionTask", "ExpressionTask", "LipRefinerTask", "SpeakingStyleTask"]
