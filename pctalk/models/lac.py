"""LAC checkpoints in the release layout (``lac.pth``): the expression predictor and, under its own key, the lip
refiner, with the sizes needed to rebuild them.

Layout written by :func:`save_lac` (``pctalk export --format pctalk-release``) and read by :func:`load_lac`::

    {"expression_predictor": state_dict, "lip_refiner": state_dict (optional), "config": {...sizes...}}

Parameter names follow FaceFormer, which PC-Talk's predictor adapts (``audio_feature_map``, ``vertice_map``,
``PPE.pe``, ``transformer_decoder.layers.N.*``, ``vertice_map_r``, ``obj_vector``).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from pctalk.models.expression_predictor import ExpressionPredictor
from pctalk.models.lip_refiner import LipRefiner
from pctalk.weights import load_checkpoint, load_state_dict_strict, save_checkpoint

__all__ = ["LAC", "PredictorConfig", "load_lac", "save_lac"]


@dataclass
class PredictorConfig:
    """The sizes of an :class:`ExpressionPredictor`."""

    n_styles: int
    out_dim: int = 18
    audio_dim: int = 512
    d_model: int = 512
    n_layers: int = 1
    n_heads: int = 4
    ff_dim: int = 1024
    period: int = 25

    @classmethod
    def of(cls, model: ExpressionPredictor) -> PredictorConfig:
        layer = model.transformer_decoder.layers[0]
        return cls(
            n_styles=model.n_styles,
            out_dim=model.out_dim,
            audio_dim=model.audio_feature_map.in_features,
            d_model=model.audio_feature_map.out_features,
            n_layers=len(model.transformer_decoder.layers),
            n_heads=model.n_heads,
            ff_dim=layer.linear1.out_features,
            period=model.period,
        )

    def build(self) -> ExpressionPredictor:
        return ExpressionPredictor(**asdict(self))


@dataclass
class LAC:
    """A loaded LAC: the predictor and, when the file has one, the refiner (both in eval mode)."""

    predictor: ExpressionPredictor
    refiner: LipRefiner | None


def save_lac(path: str | os.PathLike[str], predictor: ExpressionPredictor, refiner: LipRefiner | None = None) -> Path:
    """Write ``lac.pth`` in the release layout (atomically)."""
    obj = {"expression_predictor": predictor.state_dict(), "config": asdict(PredictorConfig.of(predictor))}
    if refiner is not None:
        obj["lip_refiner"] = refiner.state_dict()
    return save_checkpoint({k: _cpu(v) for k, v in obj.items()}, path)


def _cpu(value):
    return (
        {k: v.detach().cpu() for k, v in value.items()}
        if isinstance(value, dict) and value and isinstance(next(iter(value.values())), torch.Tensor)
        else value
    )


def load_lac(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> LAC:
    """Read a release-layout ``lac.pth``.

    Raises:
        KeyError: the file has no ``expression_predictor`` (not a LAC checkpoint).
        CheckpointKeyError: the weights do not fit the sizes in its ``config``.
    """
    obj = load_checkpoint(path)
    if not isinstance(obj, dict) or "expression_predictor" not in obj:
        found = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise KeyError(f"{path} is not a LAC checkpoint: no 'expression_predictor' entry (found {found})")
    config = PredictorConfig(**obj["config"])
    predictor = load_state_dict_strict(config.build(), obj["expression_predictor"], path)
    refiner = None
    if "lip_refiner" in obj:
        weight = obj["lip_refiner"]["linear.weight"]
        kp_dim = weight.shape[0]
        refiner = load_state_dict_strict(LipRefiner(kp_dim, weight.shape[1] - kp_dim), obj["lip_refiner"], path)
    return LAC(predictor.to(device).eval(), None if refiner is None else refiner.to(device).eval())
