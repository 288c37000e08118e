"""Loading the trained stages for inference, from pctalk's training checkpoints or the release layout.

- LAC: an ``ExpressionTask`` or ``LipRefinerTask`` checkpoint (``.ckpt``: predictor, audio encoder, refiner), or
  ``lac.pth`` with an ``audio_encoder.pth`` (beside it, or given).
- EMC: an ``EmotionTask`` checkpoint, or ``emc.pth`` with its audio encoder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from pctalk.audio.encoder import AudioEncoder, load_audio_encoder
from pctalk.models.emc import EmotionConfig, load_emc
from pctalk.models.emotion_predictor import EmotionPredictor
from pctalk.models.emotion_sources import AudioEmotionSource, TextEmotionSource, VideoEmotionSource
from pctalk.models.expression_predictor import ExpressionPredictor
from pctalk.models.lac import PredictorConfig, load_lac
from pctalk.models.lip_refiner import LipRefiner
from pctalk.weights import load_checkpoint, load_state_dict_strict

__all__ = ["EMCStage", "LACStage", "load_emc_stage", "load_lac_stage"]


@dataclass
class LACStage:
    predictor: ExpressionPredictor
    audio_encoder: AudioEncoder
    refiner: LipRefiner | None = None


@dataclass
class EMCStage:
    predictor: EmotionPredictor
    audio_encoder: AudioEncoder
    classifier: nn.Linear | None = None
    sources: dict[str, nn.Module] = field(default_factory=dict)


def _part(state: dict, prefix: str) -> dict:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def _encoder_from_state(state: dict, source: str | os.PathLike[str]) -> AudioEncoder:
    encoder_state = _part(state, "audio_encoder.")
    width = encoder_state["audio_encoder.0.conv_block.0.weight"].shape[0] / 32
    return load_state_dict_strict(AudioEncoder(width), encoder_state, source)


def _release_encoder(release: Path, audio_encoder: str | os.PathLike[str] | None) -> AudioEncoder:
    if audio_encoder is None:
        beside = release.with_name("audio_encoder.pth")
        if not beside.is_file():
            raise FileNotFoundError(
                f"{release} needs its audio encoder: put audio_encoder.pth beside it or pass --audio-encoder "
                f"(the file `pctalk export` writes, or SyncTalk's audio_visual_encoder.pth)"
            )
        audio_encoder = beside
    return load_audio_encoder(audio_encoder)


def load_lac_stage(path: str | os.PathLike[str], audio_encoder: str | os.PathLike[str] | None = None) -> LACStage:
    """The LAC stage in eval mode, from a training checkpoint or a release ``lac.pth``."""
    path = Path(path)
    obj = load_checkpoint(path)
    if isinstance(obj, dict) and "expression_predictor" in obj:
        lac = load_lac(path)
        return LACStage(lac.predictor, _release_encoder(path, audio_encoder).eval(), lac.refiner)
    if not isinstance(obj, dict) or "predictor_config" not in obj.get("pctalk", {}):
        raise ValueError(f"{path} is neither a LAC training checkpoint nor a release lac.pth")
    state = obj["state_dict"]
    predictor = load_state_dict_strict(
        PredictorConfig(**obj["pctalk"]["predictor_config"]).build(), _part(state, "predictor."), path
    )
    refiner = None
    if "refiner.linear.weight" in state:
        weight = state["refiner.linear.weight"]
        refiner = load_state_dict_strict(
            LipRefiner(weight.shape[0], weight.shape[1] - weight.shape[0]), _part(state, "refiner."), path
        )
        refiner.eval()
    encoder = load_audio_encoder(audio_encoder) if audio_encoder else _encoder_from_state(state, path)
    return LACStage(predictor.eval(), encoder.eval(), refiner)


def _sources(names: list[str], states: dict[str, dict], folders: dict[str, str], config: EmotionConfig) -> dict:
    """The learned emotion sources that can run here: the video source always; the audio and text sources when
    their frozen backbone's folder is known (the text source defaults to the bundled sentence encoder)."""
    modules: dict[str, nn.Module] = {}
    for name in names:
        if name == "video":
            module = VideoEmotionSource(config.d_model, n_heads=config.n_heads, ff_dim=config.ff_dim)
            module.load_state_dict(states[name])
        elif name == "audio" and "audio" in folders:
            module = AudioEmotionSource(folders["audio"], config.d_model)
            module.projection.load_state_dict(_part(states[name], "projection."))
        elif name == "text":
            module = TextEmotionSource(folders.get("text"), config.d_model)
            module.projection.load_state_dict(_part(states[name], "projection."))
        else:
            continue
        modules[name] = module.eval()
    return modules


def load_emc_stage(path: str | os.PathLike[str], audio_encoder: str | os.PathLike[str] | None = None) -> EMCStage:
    """The EMC stage in eval mode, from a training checkpoint or a release ``emc.pth``."""
    path = Path(path)
    obj = load_checkpoint(path)
    if isinstance(obj, dict) and "emotion_predictor" in obj:
        emc = load_emc(path)
        config = EmotionConfig(**obj["config"])
        sources = _sources(list(emc.sources), emc.sources, emc.sources_config, config)
        return EMCStage(emc.predictor, _release_encoder(path, audio_encoder).eval(), emc.classifier, sources)
    if not isinstance(obj, dict) or "emotion_config" not in obj.get("pctalk", {}):
        raise ValueError(f"{path} is neither an EMC training checkpoint nor a release emc.pth")
    state = obj["state_dict"]
    config = EmotionConfig(**obj["pctalk"]["emotion_config"])
    predictor = load_state_dict_strict(config.build(), _part(state, "predictor."), path).eval()
    classifier = nn.Linear(config.d_model, config.n_emotions)
    load_state_dict_strict(classifier, _part(state, "emotion_classifier."), path)
    names = [n for n in obj["pctalk"]["sources"] if n != "label"]
    states = {n: _part(state, f"source_modules.{n}.") for n in names}
    hparams = obj.get("hyper_parameters", {})
    folders = {k: v for k, v in {"audio": hparams.get("wav2vec2"), "text": hparams.get("text_encoder")}.items() if v}
    sources = _sources(names, states, folders, config)
    encoder = load_audio_encoder(audio_encoder) if audio_encoder else _encoder_from_state(state, path)
    return EMCStage(predictor, encoder.eval(), classifier.eval(), sources)


def to_device(stage: LACStage | EMCStage, device: torch.device) -> None:
    """Move every network of ``stage`` to ``device``."""
    for value in vars(stage).values():
        if isinstance(value, nn.Module):
            value.to(device)
        elif isinstance(value, dict):
            for module in value.values():
                module.to(device)
