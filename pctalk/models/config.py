"""The sizes of PC-Talk's predictors as documented dataclasses, one default per size (litgpt style).

The tasks take them as one argument each (``--model.init_args.predictor.d_model 256`` on the command line, a
``predictor:`` block in a YAML config; ``pctalk fit ... --help`` prints these docs), the networks are built from them,
and every checkpoint records them (:mod:`pctalk.checkpoints`). What the data decides (the number of speaking styles,
the width of the audio features, the keypoints predicted) is passed beside them, not stored in them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, TypeVar

__all__ = ["EmotionConfig", "PredictorConfig", "StyleEncoderConfig", "config_from"]

C = TypeVar("C", bound="PredictorConfig")


@dataclass(frozen=True)
class PredictorConfig:
    """Sizes of the FaceFormer-style autoregressive decoder (LAC's expression predictor; EMC's main decoder)."""

    d_model: int = 512
    """Token width (paper and official release: 512)."""
    n_layers: int = 1
    """Decoder layers (paper: 1)."""
    n_heads: int = 4
    """Attention heads (paper: 4); each has its own ALiBi slope."""
    ff_dim: int = 1024
    """Feed-forward width (paper: 1024, twice the token width)."""
    period: int = 25
    """Period in frames of the positional encoding and of the temporal attention bias. The official release calls
    it ``T`` and also uses it as its inference window."""
    dropout: float = 0.1
    """Dropout of the decoder and the positional encoding (training only)."""
    style_bias: bool = False
    """Whether the style embedding ``obj_vector`` has a bias (LAC: no; the official EMC: yes, by default)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls: type[C], values: Mapping[str, Any]) -> C:
        """Build from a mapping (a checkpoint's record, a YAML block); keys of other fields are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


@dataclass(frozen=True)
class EmotionConfig(PredictorConfig):
    """Sizes of EMC's combined predictor (the paper's CPred): the main decoder's, then the emotion conditioning."""

    style_bias: bool = True
    """Whether the style embedding has a bias (the official EMC's default: yes)."""
    emotion_layers: int = 2
    """Layers of the emotion-conditioning decoder (paper and official release: 2)."""
    n_emotions: int = 8
    """Emotion classes (MEAD's 8; index 0 is neutral)."""
    conditioning: Literal["autoregressive", "encoder"] = "autoregressive"
    """How the emotion conditions the audio: ``autoregressive`` is the paper's and official release's decoder over
    the frames (the emotion as first token; its outputs are the main decoder's memory); ``encoder`` is pctalk 0.1's
    transformer encoder added to the audio features (kept so that older checkpoints load)."""


@dataclass(frozen=True)
class StyleEncoderConfig:
    """Sizes of the speaking-style encoder (a transformer encoder over a clip's lip deformations with attention
    pooling; the official release's ``SpeakingStyleEncoder3`` layout)."""

    d_model: int = 512
    """Token width (official: 512)."""
    n_layers: int = 2
    """Encoder layers (official: 2)."""
    n_heads: int = 4
    """Attention heads (official: 4)."""
    ff_dim: int = 1024
    """Feed-forward width (official: twice the token width)."""
    period: int = 100
    """Period in frames of the positional encoding (official: 100)."""
    dropout: float = 0.1
    """Dropout of the encoder and the positional encoding (training only)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> StyleEncoderConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


def config_from(cls: type[C], value: C | Mapping[str, Any] | None) -> C:
    """``value`` as a ``cls``: an instance, a mapping of its fields (hyper-parameters saved by Lightning or given
    by LightningCLI), or ``None`` for the defaults."""
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    if isinstance(value, Mapping):
        return cls.from_dict(value)
    raise TypeError(f"expected a {cls.__name__} or a mapping of its fields, got {type(value).__name__}")
