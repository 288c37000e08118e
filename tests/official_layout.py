"""The official PC-Talk inference release (BQ-Wang0511/PC-Talk) as a test oracle, written in our own code from the
facts of its layout and inference (``../shared/docs/method.md`` section 8): networks with its parameter names built
from PyTorch's own ``nn.TransformerDecoder``, random weights in its file layout, and its motion semantics (windows
with warm start, the refiner inside each window, pykalman smoothing, lip scale, articulation edits, EMC's pure
emotion per region). Nothing here imports pctalk's networks, windows or controls.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from pykalman import KalmanFilter
from torch import nn

LIPS = (6, 12, 14, 17, 19, 20)
REGIONS = {
    "all": tuple(range(21)),
    "lips": LIPS,
    "eyes": (11, 13, 15, 16, 18),
    "brows": (0, 1, 2),
    "upper_face": (0, 1, 2, 11, 13, 15, 16, 18),
    "lower_face": LIPS,
}
#: the release's sparse articulation directions: ((keypoint, axis), value)
ARTICULATIONS = {
    "pursing": (((14, 1), 0.001), ((17, 2), -0.0005)),
    "widening": (((20, 2), -0.001), ((20, 1), -0.001), ((14, 1), -0.001)),
    "opening": (((19, 1), 0.001), ((19, 2), 0.0001), ((17, 1), -0.0001)),
}
EMOTIONS = ("neutral", "happy", "sad", "angry", "fear", "disgusted", "surprised", "contempt")


class PeriodicEncoding(nn.Module):
    """Sinusoids of period ``T`` repeated to cover 600 frames, under the name ``pe``."""

    def __init__(self, d: int, T: int) -> None:
        super().__init__()
        position = torch.arange(T, dtype=torch.float)[:, None]
        div = torch.exp(torch.arange(0, d, 2).float() * (-math.log(10000.0) / d))
        pe = torch.zeros(T, d)
        pe[:, 0::2], pe[:, 1::2] = torch.sin(position * div), torch.cos(position * div)
        self.register_buffer("pe", pe[None].repeat(1, 600 // T + 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pe[:, : x.shape[1]]


def _decoder(d: int, layers: int) -> nn.TransformerDecoder:
    return nn.TransformerDecoder(nn.TransformerDecoderLayer(d, 4, 2 * d, batch_first=True), num_layers=layers)


class MotionDecoder(nn.Module):
    """The release's LAC predictor (and EMC's main decoder): FaceFormer's names, vertex vectors coordinate-major."""

    def __init__(self, person_num: int, T: int, V: int, style_bias: bool, d: int = 512) -> None:
        super().__init__()
        self.T = T
        self.audio_feature_map = nn.Linear(512, d)
        self.vertice_map = nn.Linear(V, d)
        self.PPE = PeriodicEncoding(d, T)
        self.transformer_decoder = _decoder(d, 1)
        self.vertice_map_r = nn.Linear(d, V)
        self.obj_vector = nn.Linear(person_num, d, bias=style_bias)


class EmotionFormer(nn.Module):
    """The release's emotion-conditioning decoder (``audio_emo_former``, emotion_type 3)."""

    def __init__(self, T: int, d: int = 512) -> None:
        super().__init__()
        self.T = T
        self.audio_feature_map = nn.Linear(512, d)
        self.emo_feature_map = nn.Linear(len(EMOTIONS), d)
        self.PPE = PeriodicEncoding(d, T)
        self.transformer_decoder = _decoder(d, 2)
        self.map_output = nn.Linear(512, d)
        self.audio_map_r = nn.Linear(d, 512)


class OfficialEMC(MotionDecoder):
    def __init__(self, person_num: int, T: int, style_bias: bool = True) -> None:
        super().__init__(person_num, T, 63, style_bias)
        self.audio_emo_former = EmotionFormer(T)


class OfficialRefiner(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.out_fc = nn.Linear(512 + 18, 18)


def randomised(module: nn.Module, seed: int, std: float = 0.02, output_std: float = 0.002) -> nn.Module:
    """Seeded random weights everywhere (the vertex outputs small, as trained ones are), in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            scale = output_std if name.split(".")[0] in ("vertice_map_r", "out_fc") else std
            if "norm" in name:
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=generator) if name.endswith("weight") else 0 * p)
            else:
                p.copy_(scale * torch.randn(p.shape, generator=generator))
    return module.eval()


def save_official(path: Path, model: nn.Module, person_num: int, T: int, **extra: object) -> Path:
    torch.save({"model": model.state_dict(), "args": {"person_num": person_num, "T": T}, **extra}, path)
    return path


# -- the release's inference semantics ---------------------------------------------------------------------------------
def biased_mask(length: int, T: int, n_heads: int = 4) -> torch.Tensor:
    """``(heads, L, L)``: 0 / ``-slope_h * floor((i - j) / T)`` on and below the diagonal, ``-inf`` above."""
    start = 2 ** (-(2 ** -(math.log2(n_heads) - 3)))
    slopes = torch.tensor([start**k for k in range(1, n_heads + 1)])
    i, j = torch.arange(length)[:, None], torch.arange(length)[None]
    bias = -slopes[:, None, None] * torch.div(i - j, T, rounding_mode="floor").float()
    return bias.masked_fill(j > i, float("-inf"))


def diagonal(length: int, memory: int) -> torch.Tensor:
    """Memory mask: query ``i`` sees memory ``i`` only (True = hidden)."""
    return ~torch.eye(length, memory, dtype=torch.bool)


def _run(decoder: nn.TransformerDecoder, ppe: PeriodicEncoding, T: int, tokens: torch.Tensor, memory: torch.Tensor):
    length = tokens.shape[1]
    mask = biased_mask(length, T).repeat(tokens.shape[0], 1, 1)
    return decoder(ppe(tokens), memory, tgt_mask=mask, memory_mask=diagonal(length, memory.shape[1]))


@torch.no_grad()
def decode(model: MotionDecoder, memory: torch.Tensor, style: torch.Tensor, warm: torch.Tensor | None) -> torch.Tensor:
    """The release's autoregressive ``predict`` from the decoder memory: recomputes the whole sequence each step;
    returns every position ``(B, L, V)`` (the warm positions re-predicted)."""
    style = style[:, None]
    tokens = [style] + (
        [] if warm is None else [model.vertice_map(warm[:, j : j + 1]) + style for j in range(warm.shape[1])]
    )
    out = None
    for _ in range(0 if warm is None else warm.shape[1], memory.shape[1]):
        out = model.vertice_map_r(_run(model.transformer_decoder, model.PPE, model.T, torch.cat(tokens, 1), memory))
        tokens.append(model.vertice_map(out[:, -1:]) + style)
    return out


@torch.no_grad()
def emotion_memory(former: EmotionFormer, audio: torch.Tensor, emotion: torch.Tensor) -> torch.Tensor:
    memory = former.audio_feature_map(audio)
    e = former.emo_feature_map(emotion)[:, None]
    tokens, out = [e], None
    for _ in range(audio.shape[1]):
        out = former.audio_map_r(_run(former.transformer_decoder, former.PPE, former.T, torch.cat(tokens, 1), memory))
        tokens.append(former.audio_feature_map(out[:, -1:]) + e)
    return former.map_output(out)


def one_hot(size: int, index: int) -> torch.Tensor:
    code = torch.zeros(1, size)
    code[0, index] = 1
    return code


def windowed(predict, audio: np.ndarray, reference: np.ndarray, T: int) -> np.ndarray:
    """Overlapping windows of ``T`` (overlap ``T // 5``), each warm-started from the previous window's last outputs,
    the warm frames dropped: ``(n, V)``."""
    overlap = T // 5
    chunks, tail = [], None
    for start in range(0, len(audio), T - overlap):
        end = min(start + T, len(audio))
        warm = 0 if tail is None else min(overlap, end - start - 1)
        out = predict(torch.from_numpy(audio[start:end])[None], torch.from_numpy(reference[start:end])[None],
                      None if not warm else tail[:, -warm:])  # fmt: skip
        tail = out[:, -min(overlap, out.shape[1]) :]
        chunks.append(out[0, warm:].numpy())
        if end >= len(audio):
            break
    return np.concatenate(chunks)[: len(audio)]


def smooth(x: np.ndarray) -> np.ndarray:
    if len(x) < 3:
        return x
    flat = x.reshape(len(x), -1)
    kalman = KalmanFilter(
        initial_state_mean=flat[0], n_dim_obs=flat.shape[1], transition_covariance=1e-5 * np.eye(flat.shape[1]),
        observation_covariance=1e-6 * np.eye(flat.shape[1]),
    )  # fmt: skip
    return kalman.smooth(flat)[0].reshape(x.shape).astype(np.float32)


def undeformed(kp: np.ndarray, R: np.ndarray, scale: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``(n, 21, 3)``: ``s * (kp @ R) + t`` with ``t_z = 0``."""
    out = np.einsum("nkc,ncd->nkd", kp, R) * scale[:, :, None]
    out[..., :2] += t[:, None, :2]
    return out.astype(np.float32)


def lac_motion(
    model: MotionDecoder, refiner: OfficialRefiner | None, audio: np.ndarray, frames: dict[str, np.ndarray],
    person: int, lip_scale: float = 1.0, edits: dict[str, float] | None = None, smooth_on: bool = True,
) -> np.ndarray:  # fmt: skip
    """The expression after LAC ``(n, 21, 3)``."""
    idx = LIPS if model.vertice_map.in_features == 18 else tuple(range(21))
    n_kp = len(idx)
    ref = undeformed(frames["kp"], frames["R"], frames["scale"], frames["t"])[:, idx].transpose(0, 2, 1).copy()
    style = model.obj_vector(one_hot(model.obj_vector.in_features, person))

    def predict(a, r, warm):
        with torch.no_grad():
            pred = decode(model, model.audio_feature_map(a), style, warm)  # (1, L, 3N) coordinate-major
            if refiner is not None:
                x = r.reshape(1, -1, 3 * n_kp) + pred
                pred = x + refiner.out_fc(torch.cat([x, a], -1)) - r.reshape(1, -1, 3 * n_kp)
        return pred

    D = windowed(predict, audio, ref.reshape(len(ref), -1), model.T).reshape(-1, 3, n_kp).transpose(0, 2, 1)
    D = smooth(D) if smooth_on else D
    D = D * lip_scale
    for name, beta in (edits or {}).items():
        v = np.zeros((n_kp, 3), np.float32)
        for (k, axis), value in ARTICULATIONS[name]:
            v[idx.index(k), axis] = value
        projection = (D * v).sum(axis=(1, 2)) / (v * v).sum()
        D = D + (beta - 1) * projection[:, None, None] * v
    exp = frames["exp"].copy()
    exp[:, idx] = D / frames["scale"][:, :, None]
    return exp


def emc_motion(
    model: OfficialEMC, audio: np.ndarray, frames: dict[str, np.ndarray], exp: np.ndarray, person: int,
    conditions: list[tuple[str, str, float]],
) -> np.ndarray:  # fmt: skip
    """EMC on top of LAC's ``exp``: ``exp[region] += intensity * (CPred(e) - CPred(neutral))[region] / s``."""
    ref = np.zeros((len(audio), 63), np.float32)
    style = model.obj_vector(one_hot(model.obj_vector.in_features, person))

    def prediction(emotion: str) -> np.ndarray:
        code = one_hot(len(EMOTIONS), EMOTIONS.index(emotion))

        def predict(a, _r, warm):
            with torch.no_grad():
                return decode(model, emotion_memory(model.audio_emo_former, a, code), style, warm)

        return windowed(predict, audio, ref, model.T).reshape(-1, 3, 21).transpose(0, 2, 1)

    neutral = prediction("neutral")
    out = exp.copy()
    for emotion, region, intensity in conditions:
        pure = prediction(emotion) - neutral
        idx = list(REGIONS[region])
        out[:, idx] += pure[:, idx] * intensity / frames["scale"][:, :, None]
    return out
