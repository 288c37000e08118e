"""EMC's combined expression predictor (the paper's CPred): the expression predictor's decoder over all 21
keypoints, fed with audio features conditioned on an emotion.

Emotion conditioning: the emotion embedding (``emotion_embedding``: a bias-free ``Linear(8 -> d)`` of a one-hot or
soft emotion code, or an embedding from a learned source) is the first token of a 2-layer transformer over the
frames' projected audio features; its outputs go through a zero-initialised map and are added to the audio
features, so an untrained model predicts the same motion for every emotion (a zero pure emotion).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pctalk.models.expression_predictor import ExpressionPredictor

__all__ = ["EmotionAudioEncoder", "EmotionPredictor"]


class EmotionAudioEncoder(nn.Module):
    """``audio (B, T, A)`` and an emotion embedding ``(B, d)`` -> emotion-conditioned audio ``(B, T, A)``."""

    def __init__(
        self,
        audio_dim: int = 512,
        d_model: int = 512,
        n_layers: int = 2,
        n_heads: int = 4,
        ff_dim: int = 1024,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.audio_map = nn.Linear(audio_dim, d_model)
        layer = nn.TransformerEncoderLayer(d_model, n_heads, ff_dim, dropout, batch_first=True)
        self.transformer = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.output_map = nn.Linear(d_model, audio_dim)
        nn.init.zeros_(self.output_map.weight)
        nn.init.zeros_(self.output_map.bias)

    def forward(self, audio: torch.Tensor, emotion: torch.Tensor) -> torch.Tensor:
        tokens = torch.cat([emotion[:, None], self.audio_map(audio)], dim=1)
        return audio + self.output_map(self.transformer(tokens)[:, 1:])


class EmotionPredictor(nn.Module):
    """Audio features, speaking style and emotion -> deformation of all 21 keypoints ``(B, T, 63)`` (``s * exp``).

    Args:
        n_styles: speaking styles (training identities).
        n_emotions: emotion classes (MEAD's 8, in ``pctalk.data.schema.EMOTIONS`` order; index 0 is neutral).
        audio_dim, d_model, n_layers, n_heads, ff_dim, period, dropout: as the expression predictor.
        emotion_layers: layers of the emotion-conditioning transformer (paper: 2).
        out_dim: 63 (all keypoints).
    """

    def __init__(
        self,
        n_styles: int,
        n_emotions: int = 8,
        audio_dim: int = 512,
        d_model: int = 512,
        n_layers: int = 1,
        n_heads: int = 4,
        ff_dim: int = 1024,
        period: int = 25,
        emotion_layers: int = 2,
        dropout: float = 0.1,
        out_dim: int = 63,
    ) -> None:
        super().__init__()
        self.n_emotions = n_emotions
        self.emotion_embedding = nn.Linear(n_emotions, d_model, bias=False)
        self.emotion_encoder = EmotionAudioEncoder(audio_dim, d_model, emotion_layers, n_heads, ff_dim, dropout)
        self.decoder = ExpressionPredictor(
            n_styles, out_dim, audio_dim, d_model, n_layers, n_heads, ff_dim, period, dropout
        )

    def embed(self, emotion: torch.Tensor) -> torch.Tensor:
        """``(B, d)`` embedding of emotion indices ``(B,)`` or one-hot / soft codes ``(B, n_emotions)`` (mixes of
        labels embed as the same mix of their embeddings)."""
        if not emotion.is_floating_point():
            emotion = F.one_hot(emotion.long(), self.n_emotions).float()
        if emotion.shape[-1] != self.n_emotions:
            raise ValueError(f"emotion codes must have {self.n_emotions} entries, got shape {tuple(emotion.shape)}")
        return self.emotion_embedding(emotion.to(self.emotion_embedding.weight.dtype))

    def forward(
        self, audio_feat: torch.Tensor, style: torch.Tensor, emotion: torch.Tensor, target: torch.Tensor
    ) -> torch.Tensor:
        """Teacher-forced ``(B, T, 63)``; ``emotion`` is an embedding ``(B, d)`` (:meth:`embed` or a source)."""
        return self.decoder(self.emotion_encoder(audio_feat, emotion), style, target)

    @torch.no_grad()
    def generate(
        self,
        audio_feat: torch.Tensor,
        style: torch.Tensor,
        emotion: torch.Tensor,
        warm_start: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Autoregressive ``(B, T, 63)`` for an emotion embedding ``(B, d)`` (see
        :meth:`ExpressionPredictor.generate`)."""
        return self.decoder.generate(self.emotion_encoder(audio_feat, emotion), style, warm_start)
