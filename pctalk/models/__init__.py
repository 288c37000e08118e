"""Plain ``nn.Module`` networks of PC-Talk (no Lightning here): the LAC expression predictor, lip refiner and
speaking-style encoder."""

from pctalk.models.expression_predictor import ExpressionPredictor
from pctalk.models.lip_refiner import LipRefiner
from pctalk.models.style_encoder import SpeakingStyleEncoder

__all__ = ["ExpressionPredictor", "LipRefiner", "SpeakingStyleEncoder"]
