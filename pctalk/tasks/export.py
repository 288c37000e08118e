"""``pctalk export``: a training checkpoint to the release layout (``lac.pth`` / ``emc.pth``, ``audio_encoder.pth``)."""

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
        raise ValueError(f"{checkpoint} is not a checkpoint of an ExpressionTask, LipRefinerTask or EmotionTask run")
    state = ckpt["state_dict"]
    out = Path(out)
    if "emotion_config" in ckpt["pctalk"]:
        return _export_emc(ckpt, state, checkpoint, out)
    predictor = PredictorConfig(**ckpt["pctalk"]["predictor_config"]).build()
    load_state_dict_strict(predictor, _part(state, "predictor."), checkpoint)
    refiner = None
    if any(k.startswith("refiner.") for k in state):
        weight = state["refiner.linear.weight"]
        refiner = LipRefiner(weight.shape[0], weight.shape[1] - weight.shape[0])
        load_state_dict_strict(refiner, _part(state, "refiner."), checkpoint)
    lac = save_lac(out / "lac.pth", predictor, refiner)
    encoder = save_checkpoint(
        {f"audio_encoder.{k}": v for k, v in _part(state, "audio_encoder.audio_encoder.").items()},
        out / "audio_encoder.pth",
    )
    print(f"wrote {lac} ({'predictor and refiner' if refiner else 'predictor'}) and {encoder}")
    return 0


def _export_emc(ckpt: dict, state: dict, checkpoint: Path, out: Path) -> int:
    """An EmotionTask checkpoint -> OUT/emc.pth (and the audio encoder it was trained with)."""
    from torch import nn

    from pctalk.models.emc import EmotionConfig, save_emc

    config = EmotionConfig(**ckpt["pctalk"]["emotion_config"])
    predictor = load_state_dict_strict(config.build(), _part(state, "predictor."), checkpoint)
    classifier = load_state_dict_strict(
        nn.Linear(config.d_model, config.n_emotions), _part(state, "emotion_classifier."), checkpoint
    )
    sources = {name: _part(state, f"source_modules.{name}.") for name in ckpt["pctalk"]["sources"] if name != "label"}
    hparams = ckpt.get("hyper_parameters", {})
    folders = {"audio": hparams.get("wav2vec2"), "text": hparams.get("text_encoder")}
    emc = save_emc(
        out / "emc.pth", predictor, config, classifier, sources, {k: str(v) for k, v in folders.items() if v}
    )
    encoder = save_checkpoint(
        {f"audio_encoder.{k}": v for k, v in _part(state, "audio_encoder.audio_encoder.").items()},
        out / "audio_encoder.pth",
    )
    print(f"wrote {emc} and {encoder}")
    return 0
