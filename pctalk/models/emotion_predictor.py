"""EMC's combined expression predictor (the paper's CPred): the expression predictor's decoder over all 21
keypoints, its memory conditioned on an emotion.

Emotion conditioning (``EmotionConfig.conditioning``):

- ``autoregressive`` (the paper's and the official release's): :class:`EmotionConditionDecoder`, a 2-layer
  autoregressive transformer decoder over the frames whose first token is the emotion embedding and whose every
  fed-back token has it added; each step attends to its own frame's projected audio. Its outputs, through a
  zero-initialised map, are the main decoder's memory (the main decoder's own ``audio_feature_map`` is then unused,
  and frozen; it is kept so that the official files round-trip).
- ``encoder`` (pctalk 0.1; kept so that older checkpoints load): :class:`EmotionAudioEncoder`, a transformer
  encoder over the emotion token and the frames, added to the audio features through a zero-initialised map.

Either way an untrained model predicts the same motion for every emotion (a zero pure emotion).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pctalk.models.config import EmotionConfig
from pctalk.models.decoder import Decoder, KVCache, PeriodicPositionalEncoding, alibi_bias
from pctalk.models.expression_predictor import ExpressionPredictor
from pctalk.models.windows import Window

__all__ = ["EmotionAudioEncoder", "EmotionConditionDecoder", "EmotionPredictor"]


class EmotionConditionDecoder(nn.Module):
    """``audio (B, T, A)`` and an emotion embedding ``(B, d)`` -> the main decoder's memory ``(B, T, d)``.

    Token ``0`` is the emotion embedding ``e``; token ``t`` is ``audio_map(feedback_map(h_{t-1})) + e`` where
    ``h_{t-1}`` is the decoder's output at ``t - 1``; step ``t`` attends (diagonally) to ``audio_map(audio_t)``. The
    output is ``output_map(feedback_map(h))`` (``output_map`` zero-initialised). Decoding is incremental with cached
    keys and values, with gradients when training.
    """

    def __init__(self, audio_dim: int, config: EmotionConfig) -> None:
        super().__init__()
        d = config.d_model
        self.n_heads, self.period = config.n_heads, config.period
        self.audio_map = nn.Linear(audio_dim, d)
        self.PPE = PeriodicPositionalEncoding(d, config.period, dropout=config.dropout)
        self.transformer_decoder = Decoder(d, config.n_heads, config.ff_dim, config.emotion_layers, config.dropout)
        self.feedback_map = nn.Linear(d, audio_dim)
        self.output_map = nn.Linear(audio_dim, d)
        nn.init.zeros_(self.output_map.weight)
        nn.init.zeros_(self.output_map.bias)

    def forward(self, audio: torch.Tensor, emotion: torch.Tensor) -> torch.Tensor:
        memory = self.audio_map(audio)  # (B, T, d)
        cross = self.transformer_decoder.cross(memory)
        n = audio.shape[1]
        cache = KVCache(len(self.transformer_decoder.layers), capacity=None if torch.is_grad_enabled() else n)
        biases = alibi_bias(self.n_heads, n, self.period, device=audio.device)  # step t's bias is its row t
        token = emotion[:, None]  # (B, 1, d)
        outputs = []
        for t in range(n):
            bias = biases[:, t : t + 1, : t + 1]
            h = self.transformer_decoder(self.PPE(token, start=t), None, bias, cache, [c[:, t : t + 1] for c in cross])
            fed_back = self.feedback_map(h)  # (B, 1, A)
            outputs.append(fed_back)
            token = self.audio_map(fed_back) + emotion[:, None]
        return self.output_map(torch.cat(outputs, dim=1))


class EmotionAudioEncoder(nn.Module):
    """pctalk 0.1's conditioning: ``audio (B, T, A)`` and an emotion embedding ``(B, d)`` -> conditioned audio
    ``(B, T, A)`` (the audio plus a zero-initialised map of a transformer encoder over ``[emotion, audio...]``)."""

    def __init__(self, audio_dim: int, config: EmotionConfig) -> None:
        super().__init__()
        d = config.d_model
        self.audio_map = nn.Linear(audio_dim, d)
        layer = nn.TransformerEncoderLayer(d, config.n_heads, config.ff_dim, config.dropout, batch_first=True)
        self.transformer = nn.TransformerEncoder(layer, config.emotion_layers, enable_nested_tensor=False)
        self.output_map = nn.Linear(d, audio_dim)
        nn.init.zeros_(self.output_map.weight)
        nn.init.zeros_(self.output_map.bias)

    def forward(self, audio: torch.Tensor, emotion: torch.Tensor) -> torch.Tensor:
        tokens = torch.cat([emotion[:, None], self.audio_map(audio)], dim=1)
        return audio + self.output_map(self.transformer(tokens)[:, 1:])


class EmotionPredictor(nn.Module):
    """Audio features, speaking style and emotion -> deformation of all 21 keypoints ``(B, T, 63)`` (``s * exp``,
    keypoint-major).

    Args:
        n_styles: speaking styles (training identities).
        audio_dim: width of the audio features.
        config: the sizes and the conditioning (:class:`~pctalk.models.config.EmotionConfig`).
    """

    def __init__(self, n_styles: int, audio_dim: int = 512, config: EmotionConfig | None = None) -> None:
        super().__init__()
        config = config or EmotionConfig()
        self.config = config
        self.n_emotions = config.n_emotions
        self.autoregressive = config.conditioning == "autoregressive"
        d = config.d_model
        self.emotion_embedding = nn.Linear(config.n_emotions, d, bias=self.autoregressive)
        if self.autoregressive:
            self.emotion_decoder = EmotionConditionDecoder(audio_dim, config)
        elif config.conditioning == "encoder":
            self.emotion_encoder = EmotionAudioEncoder(audio_dim, config)
        else:
            raise ValueError(f"unknown emotion conditioning {config.conditioning!r}; use autoregressive or encoder")
        self.decoder = ExpressionPredictor(n_styles, 63, audio_dim, config)
        if self.autoregressive:  # its memory is the emotion decoder's output: the audio projection is unused
            self.decoder.audio_feature_map.requires_grad_(False)

    def embed(self, emotion: torch.Tensor) -> torch.Tensor:
        """``(B, d)`` embedding of emotion indices ``(B,)`` or one-hot / soft codes ``(B, n_emotions)`` (mixes of
        labels embed as the same mix of their embeddings)."""
        if not emotion.is_floating_point():
            emotion = F.one_hot(emotion.long(), self.n_emotions).float()
        if emotion.shape[-1] != self.n_emotions:
            raise ValueError(f"emotion codes must have {self.n_emotions} entries, got shape {tuple(emotion.shape)}")
        return self.emotion_embedding(emotion.to(self.emotion_embedding.weight.dtype))

    def memory(self, audio_feat: torch.Tensor, emotion: torch.Tensor) -> torch.Tensor:
        """The main decoder's memory ``(B, T, d)`` for audio features ``(B, T, A)`` and an emotion embedding."""
        self.decoder._check(audio_feat)
        if self.autoregressive:
            return self.emotion_decoder(audio_feat, emotion)
        return self.decoder.audio_feature_map(self.emotion_encoder(audio_feat, emotion))

    def window_memories(
        self, audio_feat: torch.Tensor, emotion: torch.Tensor, windows: Sequence[Window]
    ) -> dict[Window, torch.Tensor]:
        """:meth:`memory` of each window of ``audio_feat (B, N, A)``: ``(B, length, d)`` per window. The
        autoregressive conditioning runs once for all windows (batched, the last one padded at its end, which a
        causal decoder does not see); the encoder conditioning, which sees its whole window, one window at a time."""
        if not self.autoregressive or len(windows) < 2:
            return {w: self.memory(audio_feat[:, w.start : w.stop], emotion) for w in windows}
        b, length = audio_feat.shape[0], max(w.stop - w.start for w in windows)
        pieces = [F.pad(audio_feat[:, w.start : w.stop], (0, 0, 0, length - (w.stop - w.start))) for w in windows]
        memory = self.memory(torch.cat(pieces), emotion.repeat(len(windows), 1))  # (W * B, length, d)
        return {w: memory[i * b : (i + 1) * b, : w.stop - w.start] for i, w in enumerate(windows)}

    def forward(
        self, audio_feat: torch.Tensor, style: torch.Tensor, emotion: torch.Tensor, target: torch.Tensor
    ) -> torch.Tensor:
        """Teacher-forced ``(B, T, 63)``; ``emotion`` is an embedding ``(B, d)`` (:meth:`embed` or a source)."""
        return self.decoder.teacher_forced(self.memory(audio_feat, emotion), style, target)

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
        return self.decoder.decode(self.memory(audio_feat, emotion), style, warm_start)
