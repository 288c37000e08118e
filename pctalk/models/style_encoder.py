"""The speaking-style encoder: a clip's lip deformations -> a soft code over the training identities.

::

    D (B, T, 6, 3) -> standardised per value -> Linear(18 -> d) -> periodic positional encoding
      -> TransformerEncoder (2 layers) -> attention pooling over time -> Linear(d -> n_styles) -> logits
    code = softmax(logits)

The code is what LAC's frozen style embedding takes instead of a one-hot (``obj_vector(code)``), so the predictor
speaks "like" the reference clip without retraining, and codes mix linearly (style interpolation). The output layer
starts at zero: an untrained encoder gives the uniform code, the mean of every style. It is trained as an identity
classifier on the shards' lip deformations (:class:`pctalk.tasks.style.SpeakingStyleTask`), as the official
release trains its frozen-predictor style encoder. The input is standardised per value with running statistics of
the training data (LivePortrait's deformations are hundredths: raw, they barely move the tokens next to the
positional encoding, and a small encoder does not learn).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pctalk.models.config import StyleEncoderConfig
from pctalk.models.decoder import PeriodicPositionalEncoding

__all__ = ["AttentionPooling", "SpeakingStyleEncoder"]


class AttentionPooling(nn.Module):
    """Self-attention pooling (Safari et al. 2020): weights ``softmax_t(w(x_t))`` with ``w`` = Linear, Mish, Linear;
    ``(B, T, d)`` -> ``(B, d)``, frames where ``mask`` is False left out."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Linear(d_model, d_model), nn.Mish(), nn.Linear(d_model, 1))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        logits = self.score(x).squeeze(-1)  # (B, T)
        if mask is not None:
            logits = logits.masked_fill(~mask, float("-inf"))
        return (x * torch.softmax(logits, dim=-1)[..., None]).sum(1)


class SpeakingStyleEncoder(nn.Module):
    """Lip deformations ``(B, T, 6, 3)`` (or ``(B, T, 18)``, keypoint-major) -> ``(B, n_styles)`` style logits.

    Args:
        n_styles: the training identities of the LAC whose style embedding the code feeds.
        in_dim: values per frame (18: the six lip keypoints).
    """

    def __init__(self, n_styles: int, in_dim: int = 18, config: StyleEncoderConfig | None = None) -> None:
        super().__init__()
        config = config or StyleEncoderConfig()
        self.n_styles, self.in_dim, self.config = n_styles, in_dim, config
        d = config.d_model
        self.normalise = nn.BatchNorm1d(in_dim, affine=False)  # running mean / std of the training deformations
        self.vertice_map = nn.Linear(in_dim, d)
        self.positional = PeriodicPositionalEncoding(d, config.period, dropout=config.dropout)
        layer = nn.TransformerEncoderLayer(d, config.n_heads, config.ff_dim, config.dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, config.n_layers, enable_nested_tensor=False)
        self.pooling = AttentionPooling(d)
        self.style_map = nn.Linear(d, n_styles)
        nn.init.zeros_(self.style_map.weight)  # untrained: the uniform code (the mean style)
        nn.init.zeros_(self.style_map.bias)

    def forward(self, lips: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``(B, n_styles)``; ``mask (B, T)`` marks the real frames of padded clips."""
        x = lips.reshape(*lips.shape[:2], -1)
        if x.shape[-1] != self.in_dim:
            raise ValueError(f"expected {self.in_dim} values per frame, got {tuple(lips.shape)}")
        x = self.normalise(x.transpose(1, 2)).transpose(1, 2)
        h = self.encoder(self.positional(self.vertice_map(x)), src_key_padding_mask=None if mask is None else ~mask)
        return self.style_map(self.pooling(h, mask))

    def code(self, lips: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The soft style code ``(B, n_styles)`` (rows sum to 1), for LAC's style embedding."""
        return F.softmax(self.forward(lips, mask), dim=-1)
