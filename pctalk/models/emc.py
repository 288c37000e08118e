"""EMC checkpoints in the release layout (``emc.pth``): the combined predictor, the learned sources' trainable parts,
the emotion classifier, and the sizes needed to rebuild them::

    {"emotion_predictor": state_dict, "config": {...sizes...},
     "emotion_classifier": state_dict, "sources": {"video": state_dict, "audio": {...}, "text": {...}}}

Frozen backbones of the audio and text sources are not stored: they are read from their own folders (the audio
source's folder path is recorded under ``sources_config``).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from pctalk.models.emotion_predictor import EmotionPredictor
from pctalk.weights import load_checkpoint, load_state_dict_strict, save_checkpoint

__all__ = ["EMC", "EmotionConfig", "load_emc", "save_emc"]


@dataclass
class EmotionConfig:
    """The sizes of an :class:`EmotionPredictor`."""

    n_styles: int
    n_emotions: int = 8
    audio_dim: int = 512
    d_model: int = 512
    n_layers: int = 1
    n_heads: int = 4
    ff_dim: int = 1024
    period: int = 25
    emotion_layers: int = 2

    def build(self, dropout: float = 0.1) -> EmotionPredictor:
        return EmotionPredictor(**asdict(self), dropout=dropout)


@dataclass
class EMC:
    """A loaded EMC: the predictor, the classifier, and the trainable parts of the learned sources (state dicts)."""

    predictor: EmotionPredictor
    classifier: torch.nn.Linear | None = None
    sources: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    sources_config: dict[str, str] = field(default_factory=dict)


def save_emc(
    path: str | os.PathLike[str],
    predictor: EmotionPredictor,
    config: EmotionConfig,
    classifier: torch.nn.Linear | None = None,
    sources: dict[str, dict[str, torch.Tensor]] | None = None,
    sources_config: dict[str, str] | None = None,
) -> Path:
    """Write ``emc.pth`` in the release layout (atomically)."""
    obj = {"emotion_predictor": predictor.state_dict(), "config": asdict(config)}
    if classifier is not None:
        obj["emotion_classifier"] = classifier.state_dict()
    obj["sources"] = sources or {}
    obj["sources_config"] = sources_config or {}
    return save_checkpoint(obj, path)


def load_emc(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> EMC:
    """Read a release-layout ``emc.pth``.

    Raises:
        KeyError: the file has no ``emotion_predictor`` (not an EMC checkpoint).
        CheckpointKeyError: the weights do not fit the sizes in its ``config``.
    """
    obj = load_checkpoint(path)
    if not isinstance(obj, dict) or "emotion_predictor" not in obj:
        found = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise KeyError(f"{path} is not an EMC checkpoint: no 'emotion_predictor' entry (found {found})")
    config = EmotionConfig(**obj["config"])
    predictor = load_state_dict_strict(config.build(), obj["emotion_predictor"], path).to(device).eval()
    classifier = None
    if "emotion_classifier" in obj:
        classifier = torch.nn.Linear(config.d_model, config.n_emotions)
        load_state_dict_strict(classifier, obj["emotion_classifier"], path)
        classifier = classifier.to(device).eval()
    return EMC(predictor, classifier, dict(obj.get("sources", {})), dict(obj.get("sources_config", {})))
