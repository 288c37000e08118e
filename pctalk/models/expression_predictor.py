"""LAC's expression predictor: a FaceFormer-style autoregressive decoder from per-frame audio features and a
one-hot speaking style to the lip deformation ``D = s * exp[LIPS]`` (or, optionally, all 21 keypoints).

Token sequence (position ``t`` predicts frame ``t``)::

    token_0 = style                          style = obj_vector(one_hot)  (no bias)
    token_t = vertice_map(D_{t-1}) + style   for t >= 1
    D_t = vertice_map_r(decoder(token_0..t + pe, audio_t))

``forward`` is teacher-forced (the ground-truth ``D`` fills the tokens); ``generate`` feeds back its own outputs,
with cached keys and values, optionally warm-started from the previous window's last frames.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pctalk.models.config import PredictorConfig
from pctalk.models.decoder import Decoder, KVCache, PeriodicPositionalEncoding, alibi_bias

__all__ = ["ExpressionPredictor"]


class ExpressionPredictor(nn.Module):
    """Audio features ``(B, T, audio_dim)`` and a speaking style -> deformation ``(B, T, out_dim)``.

    Args:
        n_styles: number of speaking styles (training identities) of the one-hot style code.
        out_dim: 18 (the six lip keypoints' deformation) or 63 (all 21 keypoints), keypoint-major
            (``reshape(..., N, 3)``).
        audio_dim: width of the audio features (512 for the Wav2Lip-style audio encoder).
        config: the decoder's sizes (:class:`~pctalk.models.config.PredictorConfig`).
    """

    def __init__(
        self, n_styles: int, out_dim: int = 18, audio_dim: int = 512, config: PredictorConfig | None = None
    ) -> None:
        super().__init__()
        config = config or PredictorConfig()
        self.config = config
        self.n_styles, self.out_dim, self.n_heads, self.period = n_styles, out_dim, config.n_heads, config.period
        d = config.d_model
        self.audio_feature_map = nn.Linear(audio_dim, d)
        self.vertice_map = nn.Linear(out_dim, d)
        self.PPE = PeriodicPositionalEncoding(d, config.period, dropout=config.dropout)
        self.transformer_decoder = Decoder(d, config.n_heads, config.ff_dim, config.n_layers, config.dropout)
        self.vertice_map_r = nn.Linear(d, out_dim)
        self.obj_vector = nn.Linear(n_styles, d, bias=config.style_bias)
        nn.init.zeros_(self.vertice_map_r.weight)
        nn.init.zeros_(self.vertice_map_r.bias)

    @property
    def audio_dim(self) -> int:
        return self.audio_feature_map.in_features

    def style_embedding(self, style: torch.Tensor) -> torch.Tensor:
        """``(B, d_model)`` from style indices ``(B,)`` or one-hot / soft codes ``(B, n_styles)``. A negative index
        (a speaker outside the training identities) gets the uniform code, the mean of all styles."""
        if not style.is_floating_point():
            index = style.long()
            if (index >= self.n_styles).any():
                raise ValueError(f"style index {int(index.max())} is out of range for {self.n_styles} styles")
            uniform = torch.full((len(index), self.n_styles), 1.0 / self.n_styles, device=index.device)
            style = torch.where((index < 0)[:, None], uniform, F.one_hot(index.clamp_min(0), self.n_styles).float())
        if style.shape[-1] != self.n_styles:
            raise ValueError(f"style codes must have {self.n_styles} entries, got shape {tuple(style.shape)}")
        return self.obj_vector(style.to(self.obj_vector.weight.dtype))

    def _check(self, audio_feat: torch.Tensor) -> None:
        expected = self.audio_feature_map.in_features
        if audio_feat.ndim != 3 or audio_feat.shape[-1] != expected:
            raise ValueError(f"audio features must be (B, T, {expected}), got {tuple(audio_feat.shape)}")

    def forward(self, audio_feat: torch.Tensor, style: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Teacher-forced prediction ``(B, T, out_dim)``: frame ``t`` sees the ground truth of frames ``< t``."""
        self._check(audio_feat)
        return self.teacher_forced(self.audio_feature_map(audio_feat), style, target)

    def teacher_forced(self, memory: torch.Tensor, style: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` from the decoder's memory ``(B, T, d_model)`` (projected audio, or EMC's
        emotion-conditioned audio)."""
        n = memory.shape[1]
        style_emb = self.style_embedding(style)[:, None]  # (B, 1, d)
        tokens = torch.cat([style_emb, self.vertice_map(target[:, :-1]) + style_emb], dim=1)
        x = self.PPE(tokens)
        bias = alibi_bias(self.n_heads, n, self.period, device=x.device)
        return self.vertice_map_r(self.transformer_decoder(x, memory, bias))

    @torch.no_grad()
    def generate(
        self,
        audio_feat: torch.Tensor,
        style: torch.Tensor,
        warm_start: torch.Tensor | None = None,
        use_cache: bool = True,
    ) -> torch.Tensor:
        """Autoregressive prediction ``(B, T, out_dim)``.

        Args:
            audio_feat: ``(B, T, audio_dim)``.
            style: ``(B,)`` indices or ``(B, n_styles)`` codes.
            warm_start: ``(B, K, out_dim)``, K < T: known deformations of the first K frames (the previous window's
                overlap); they are fed back as tokens and returned unchanged.
            use_cache: incremental decoding with cached keys and values (``False`` recomputes the whole sequence at
                every step, as FaceFormer does; the results are the same).
        """
        self._check(audio_feat)
        return self.decode(self.audio_feature_map(audio_feat), style, warm_start, use_cache)

    @torch.no_grad()
    def decode(
        self,
        memory: torch.Tensor,
        style: torch.Tensor,
        warm_start: torch.Tensor | None = None,
        use_cache: bool = True,
    ) -> torch.Tensor:
        """:meth:`generate` from the decoder's memory ``(B, T, d_model)``."""
        n = memory.shape[1]
        k = 0 if warm_start is None else warm_start.shape[1]
        if k >= n:
            raise ValueError(f"warm_start covers {k} frames but the window has only {n}")
        style_emb = self.style_embedding(style)[:, None]
        audio = memory
        tokens = [style_emb] + ([self.vertice_map(warm_start) + style_emb] if k else [])
        outputs = [warm_start] if k else []
        if not use_cache:
            seq = torch.cat(tokens, dim=1)
            for t in range(k, n):
                bias = alibi_bias(self.n_heads, t + 1, self.period, device=seq.device)
                out = self.vertice_map_r(self.transformer_decoder(self.PPE(seq), audio[:, : t + 1], bias))[:, -1:]
                outputs.append(out)
                seq = torch.cat([seq, self.vertice_map(out) + style_emb], dim=1)
            return torch.cat(outputs, dim=1)
        cache = KVCache(len(self.transformer_decoder.layers), capacity=n)
        cross = self.transformer_decoder.cross(audio)  # the audio side of every step, at once
        biases = alibi_bias(self.n_heads, n, self.period, device=audio.device)  # every step's rows of it
        x = torch.cat(tokens, dim=1)  # prefill: the style token and the warm tokens in one pass
        start = 0
        for _ in range(k, n):
            length = x.shape[1]
            bias = biases[:, start : start + length, : start + length]
            step_cross = [c[:, start : start + length] for c in cross]
            h = self.transformer_decoder(self.PPE(x, start=start), None, bias, cache, step_cross)
            out = self.vertice_map_r(h[:, -1:])
            outputs.append(out)
            start += length
            x = self.vertice_map(out) + style_emb
        return torch.cat(outputs, dim=1)
