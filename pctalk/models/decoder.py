"""The FaceFormer-style autoregressive decoder shared by the expression and emotion predictors.

- :class:`PeriodicPositionalEncoding`: sinusoidal encoding repeating every ``period`` frames.
- :func:`alibi_bias`: FaceFormer's temporal bias, a causal mask plus an ALiBi-style penalty
  ``-slope_h * floor((i - j) / period)`` per head.
- :class:`DecoderLayer`: a post-norm transformer decoder layer (self-attention, cross-attention, feed-forward) with
  ``nn.TransformerDecoderLayer``'s parameter names, whose cross-attention is *diagonal*: frame ``i`` attends only to
  audio frame ``i`` (FaceFormer's alignment bias), and whose self-attention can run incrementally with cached keys
  and values.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Decoder", "DecoderLayer", "KVCache", "PeriodicPositionalEncoding", "alibi_bias", "alibi_slopes"]


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """ALiBi's head slopes (geometric, 2^(-8/n) ratio; for non-powers of two, interleaved as in ALiBi)."""

    def power_of_two(n: int) -> list[float]:
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start * start**i for i in range(n)]

    if math.log2(n_heads).is_integer():
        return torch.tensor(power_of_two(n_heads))
    closest = 2 ** math.floor(math.log2(n_heads))
    extra = alibi_slopes(2 * closest).tolist()[0::2][: n_heads - closest]
    return torch.tensor(power_of_two(closest) + extra)


def alibi_bias(
    n_heads: int, length: int, period: int, device: torch.device | None = None, start: int = 0, keys: int | None = None
) -> torch.Tensor:
    """``(n_heads, length, keys)`` additive attention bias for queries at positions ``start .. start + length`` over
    keys ``0 .. keys``: ``-slope_h * floor((i - j) / period)`` where ``j <= i``, ``-inf`` where ``j > i``."""
    keys = start + length if keys is None else keys
    i = torch.arange(start, start + length, device=device)[:, None]
    j = torch.arange(keys, device=device)[None, :]
    distance = torch.div(i - j, period, rounding_mode="floor").float()
    bias = -alibi_slopes(n_heads).to(device)[:, None, None] * distance
    return bias.masked_fill(j > i, float("-inf"))


class PeriodicPositionalEncoding(nn.Module):
    """Adds ``pe[position % period]`` (sin/cos over ``d_model``) to ``(B, T, d_model)`` tokens, then dropout."""

    def __init__(self, d_model: int, period: int = 25, max_len: int = 600, dropout: float = 0.1) -> None:
        super().__init__()
        self.period = period
        self.dropout = nn.Dropout(dropout)
        position = torch.arange(period, dtype=torch.float).unsqueeze(1)
        div = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(10000.0) / d_model))
        pe = torch.zeros(period, d_model)
        pe[:, 0::2] = torch.sin(position * div)
        pe[:, 1::2] = torch.cos(position * div)
        self.register_buffer("pe", pe.unsqueeze(0).repeat(1, max_len // period + 1, 1))  # FaceFormer's layout

    def forward(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        stop = start + x.shape[1]
        if stop <= self.pe.shape[1]:  # the buffer repeats the period: a slice holds the same rows as the gather
            return self.dropout(x + self.pe[:, start:stop])
        positions = torch.arange(start, stop, device=x.device) % self.period
        return self.dropout(x + self.pe[0, positions])


class KVCache:
    """Self-attention keys and values of the tokens decoded so far, per layer: ``(B, heads, n, head_dim)``.

    With a ``capacity`` (decoding without gradients, the number of tokens known in advance) each layer's keys and
    values are written into buffers allocated once; without, they grow by concatenation (which autograd needs).
    """

    def __init__(self, n_layers: int, capacity: int | None = None) -> None:
        self.keys: list[torch.Tensor | None] = [None] * n_layers
        self.values: list[torch.Tensor | None] = [None] * n_layers
        self.capacity = capacity
        self.lengths = [0] * n_layers

    @property
    def length(self) -> int:
        return self.lengths[0]

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Add ``k, v (B, heads, n, head_dim)``; returns every cached token's ``(B, heads, length, head_dim)``."""
        a, b = self.lengths[layer], self.lengths[layer] + k.shape[2]
        self.lengths[layer] = b
        if self.capacity is None:
            if self.keys[layer] is not None:
                k = torch.cat([self.keys[layer], k], dim=2)
                v = torch.cat([self.values[layer], v], dim=2)
            self.keys[layer], self.values[layer] = k, v
            return k, v
        if b > self.capacity:
            raise ValueError(f"the cache holds {self.capacity} tokens; {b} were appended")
        if self.keys[layer] is None:
            shape = (*k.shape[:2], self.capacity, k.shape[3])
            self.keys[layer], self.values[layer] = k.new_empty(shape), v.new_empty(shape)
        keys, values = self.keys[layer], self.values[layer]
        keys[:, :, a:b], values[:, :, a:b] = k, v
        return keys[:, :, :b], values[:, :, :b]


class DecoderLayer(nn.Module):
    """Post-norm decoder layer: ``x = norm1(x + SA(x)); x = norm2(x + CA(x, audio)); x = norm3(x + FF(x))``.

    Cross-attention is diagonal: with one visible key per query the softmax is exactly 1, so ``CA`` at frame ``i``
    is ``out_proj(v_proj(audio_i))``, computed without attention (identical to the masked attention).
    """

    def __init__(self, d_model: int, n_heads: int, ff_dim: int, dropout: float = 0.1) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.n_heads = n_heads
        self.self_attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.multihead_attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.linear1 = nn.Linear(d_model, ff_dim)
        self.linear2 = nn.Linear(ff_dim, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        return x.view(b, n, self.n_heads, d // self.n_heads).transpose(1, 2)

    def cross(self, audio: torch.Tensor) -> torch.Tensor:
        """Diagonal cross-attention values for audio tokens ``(B, T, d)`` -> ``(B, T, d)``."""
        d = audio.shape[-1]
        v = F.linear(audio, self.multihead_attn.in_proj_weight[2 * d :], self.multihead_attn.in_proj_bias[2 * d :])
        return self.multihead_attn.out_proj(v)

    def self_attention(self, x: torch.Tensor, bias: torch.Tensor, cache: KVCache | None, layer: int) -> torch.Tensor:
        q, k, v = F.linear(x, self.self_attn.in_proj_weight, self.self_attn.in_proj_bias).chunk(3, dim=-1)
        q, k, v = self._heads(q), self._heads(k), self._heads(v)
        if cache is not None:
            k, v = cache.append(layer, k, v)
        drop = self.self_attn.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.unsqueeze(0), dropout_p=drop)
        b, _, n, _ = out.shape
        return self.self_attn.out_proj(out.transpose(1, 2).reshape(b, n, -1))

    def forward(
        self, x: torch.Tensor, cross: torch.Tensor, bias: torch.Tensor, cache: KVCache | None = None, layer: int = 0
    ) -> torch.Tensor:
        """``x (B, n, d)`` tokens at the positions ``bias`` describes; ``cross (B, n, d)`` from :meth:`cross`."""
        x = self.norm1(x + self.dropout1(self.self_attention(x, bias, cache, layer)))
        x = self.norm2(x + self.dropout2(cross))
        return self.norm3(x + self.dropout3(self.linear2(self.dropout(F.relu(self.linear1(x))))))


class Decoder(nn.Module):
    """A stack of :class:`DecoderLayer` under ``layers.N`` (``nn.TransformerDecoder``'s names)."""

    def __init__(self, d_model: int, n_heads: int, ff_dim: int, n_layers: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(d_model, n_heads, ff_dim, dropout) for _ in range(n_layers))

    def cross(self, audio: torch.Tensor) -> list[torch.Tensor]:
        """Every layer's diagonal cross-attention values for audio tokens ``(B, T, d)`` (computed once per window
        when decoding step by step)."""
        return [layer.cross(audio) for layer in self.layers]

    def forward(
        self,
        x: torch.Tensor,
        audio: torch.Tensor | None,
        bias: torch.Tensor,
        cache: KVCache | None = None,
        cross: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """``x (B, n, d)``, audio tokens ``(B, n, d)`` aligned with ``x`` (or their precomputed ``cross`` values per
        layer), ``bias (heads, n, keys)``."""
        cross = self.cross(audio) if cross is None else cross
        for i, layer in enumerate(self.layers):
            x = layer(x, cross[i], bias, cache, i)
        return x
