"""``pctalk export``: a training checkpoint to the release layout (``lac.pth`` and ``audio_encoder.pth``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pctalk.models.lac import PredictorConfig, save_lac
from pctalk.models.lip_refiner import LipRefiner
from pctalk.weights import load_checkpoint, load_state_dict_strict, save_checkpoint

__all__ = ["export"]


def _part(state: dict, prefix: str) -> dict:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def export(checkpoint: Path, out: Path, format: Literal["pctalk-release"] = "pctalk-release") -> int:
    """Export an ExpressionTask or LipRefinerTask checkpoint in the release layout: OUT/lac.pth (the expression
    predictor, and the lip refiner when the checkpoint has one) and OUT/audio_encoder.pth (its audio encoder).

    Args:
        checkpoint: a Lightning checkpoint (.ckpt) written by `pctalk fit`.
        out: the folder to write into.
        format: the layout; pctalk-release is the PC-Talk release's (lac.pth, audio_encoder.pth).
    """
    ckpt = load_checkpoint(checkpoint)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "pctalk" not in ckpt:
        raise ValueError(f"{checkpoint} is not a checkpoint of an ExpressionTask or LipRefinerTask run")
    state = ckpt["state_dict"]
    predictor = PredictorConfig(**ckpt["pctalk"]["predictor_config"]).build()
    load_state_dict_strict(predictor, _part(state, "predictor."), checkpoint)
    refiner = None
    if any(k.startswith("refiner.") for k in state):
        weight = state["refiner.linear.weight"]
        refiner = LipRefiner(weight.shape[0], weight.shape[1] - weight.shape[0])
        load_state_dict_strict(refiner, _part(state, "refiner."), checkpoint)
    out = Path(out)
    lac = save_lac(out / "lac.pth", predictor, refiner)
    encoder = save_checkpoint(
        {f"audio_encoder.{k}": v for k, v in _part(state, "audio_encoder.audio_encoder.").items()},
        out / "audio_encoder.pth",
    )
    print(f"wrote {lac} ({'predictor and refiner' if refiner else 'predictor'}) and {encoder}")
    return 0
