"""Plain ``nn.Module`` networks of PC-Talk (no Lightning here): the LAC expression predictor and lip refiner."""

from pctalk.models.expression_predictor import ExpressionPredictor
from pctalk.models.lip_refiner import LipRefiner

__all__ = ["ExpressionPredictor", "LipRefiner"]
