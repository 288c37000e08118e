"""Wav2Lip's mel spectrogram and the per-video-frame mel windows every audio network in pctalk consumes.

The recipe (Wav2Lip ``audio.py`` with its ``hparams.py``): 16 kHz mono; pre-emphasis 0.97; STFT with n_fft 800,
hop 200, window 800 (Hann), centred; magnitude; 80 Slaney mel bands from 55 to 7600 Hz (librosa's filters); amplitude
to dB with a -100 dB floor, minus a 20 dB reference; then normalised from [-100, 0] dB to [-4, 4] and clipped.
That gives 80 mel frames per second.

Centring pads with zeros (``pad_mode="constant"``), which is librosa >= 0.10's default and what the public PC-Talk
release computes; Wav2Lip's original librosa 0.7 padded by reflection, available as ``pad_mode="reflect"``.

**The length rule**, used everywhere (data preparation, training, inference, evaluation): a clip has
``num_frames(len(wav)) = len(wav) * fps // sample_rate`` video frames (rounded down), and its audio is trimmed or
zero-padded at the end to exactly ``n_frames * sample_rate // fps`` samples (640 at 16 kHz and 25 fps) by
:func:`fit_to_frames` before the mel is computed. Video frame ``i`` then takes the 16 mel frames starting at
``int(80 * i / fps)``; windows running past the end repeat the last mel frame (edge padding).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torchaudio.functional as AF

__all__ = [
    "FPS",
    "MEL_FPS",
    "N_MELS",
    "SAMPLE_RATE",
    "WINDOW",
    "audio_windows",
    "fit_to_frames",
    "frame_windows",
    "melspectrogram",
    "normalised_mel",
    "num_frames",
    "samples_per_frame",
    "window_starts",
]

SAMPLE_RATE = 16000
FPS = 25
N_FFT = 800
HOP = 200
WIN = 800
N_MELS = 80
FMIN = 55.0
FMAX = 7600.0
PREEMPHASIS = 0.97
MIN_LEVEL_DB = -100.0
REF_LEVEL_DB = 20.0
MAX_ABS_VALUE = 4.0
#: Mel frames per second.
MEL_FPS = SAMPLE_RATE // HOP
#: Mel frames in one video frame's window.
WINDOW = 16


@lru_cache(maxsize=8)
def _mel_basis(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``(80, 401)`` Slaney-scale, Slaney-normalised mel filters, as ``librosa.filters.mel(sr=16000, n_fft=800,
    n_mels=80, fmin=55, fmax=7600)``."""
    fb = AF.melscale_fbanks(N_FFT // 2 + 1, FMIN, FMAX, N_MELS, SAMPLE_RATE, norm="slaney", mel_scale="slaney")
    return fb.T.contiguous().to(device=device, dtype=dtype)


@lru_cache(maxsize=8)
def _window(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return torch.hann_window(WIN, periodic=True, dtype=dtype, device=device)


def _compute_dtype(device: torch.device) -> torch.dtype:
    # The reference computes in float64 (scipy's lfilter promotes); float32 STFT noise in quiet bins exceeds 1e-4
    # after the dB conversion. MPS has no float64.
    return torch.float32 if device.type == "mps" else torch.float64


def melspectrogram(wav: torch.Tensor, pad_mode: str = "constant") -> torch.Tensor:
    """Wav2Lip's normalised log-mel spectrogram.

    Args:
        wav: ``(N,)`` or ``(B, N)`` 16 kHz mono waveform in [-1, 1].
        pad_mode: STFT centring pad, ``"constant"`` (zeros; default) or ``"reflect"`` (Wav2Lip's librosa 0.7).

    Returns:
        ``(80, M)`` or ``(B, 80, M)`` float32 in [-4, 4], with ``M = N // 200 + 1``.
    """
    if wav.ndim not in (1, 2):
        raise ValueError(f"melspectrogram expects a waveform (N,) or (B, N), got shape {tuple(wav.shape)}")
    if wav.shape[-1] == 0:
        raise ValueError("melspectrogram got an empty waveform (0 samples)")
    if pad_mode not in ("constant", "reflect"):
        raise ValueError(f"pad_mode must be 'constant' or 'reflect', got {pad_mode!r}")
    dtype = _compute_dtype(wav.device)
    x = wav.reshape(-1, wav.shape[-1]).to(dtype)
    x = preemphasis(x)
    if pad_mode == "reflect" and x.shape[-1] <= N_FFT // 2:
        raise ValueError(f"reflect padding needs more than {N_FFT // 2} samples, got {x.shape[-1]}")
    spec = torch.stft(
        x,
        n_fft=N_FFT,
        hop_length=HOP,
        win_length=WIN,
        window=_window(x.device, dtype),
        center=True,
        pad_mode=pad_mode,
        return_complex=True,
    ).abs()  # (B, 401, M)
    out = normalised_mel(spec)
    return out.reshape(*wav.shape[:-1], N_MELS, out.shape[-1])


def preemphasis(x: torch.Tensor) -> torch.Tensor:
    """``lfilter([1, -0.97], [1], x)`` along the last dimension (the first sample kept)."""
    return torch.cat([x[..., :1], x[..., 1:] - PREEMPHASIS * x[..., :-1]], dim=-1)


def normalised_mel(spec: torch.Tensor) -> torch.Tensor:
    """STFT magnitudes ``(..., 401, M)`` -> Wav2Lip's normalised log-mel ``(..., 80, M)`` float32 in [-4, 4]."""
    mel = _mel_basis(spec.device, spec.dtype) @ spec
    min_level = 10.0 ** (MIN_LEVEL_DB / 20.0)
    db = 20.0 * torch.log10(mel.clamp_min(min_level)) - REF_LEVEL_DB
    out = (2 * MAX_ABS_VALUE) * ((db - MIN_LEVEL_DB) / -MIN_LEVEL_DB) - MAX_ABS_VALUE
    return out.clamp(-MAX_ABS_VALUE, MAX_ABS_VALUE).to(torch.float32)


def samples_per_frame(fps: int = FPS, sample_rate: int = SAMPLE_RATE) -> int:
    """Audio samples in one video frame (640 at 16 kHz, 25 fps)."""
    if sample_rate % fps:
        raise ValueError(f"sample_rate {sample_rate} is not a multiple of fps {fps}")
    return sample_rate // fps


def num_frames(n_samples: int, fps: int = FPS, sample_rate: int = SAMPLE_RATE) -> int:
    """Video frames covered by ``n_samples`` of audio: ``n_samples * fps // sample_rate`` (rounded down)."""
    return int(n_samples) * fps // sample_rate


def fit_to_frames(wav: torch.Tensor, n_frames: int, fps: int = FPS, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Trim or zero-pad ``wav (..., N)`` at the end to exactly ``n_frames * sample_rate // fps`` samples."""
    target = n_frames * samples_per_frame(fps, sample_rate)
    n = wav.shape[-1]
    if n >= target:
        return wav[..., :target]
    return torch.nn.functional.pad(wav, (0, target - n))


def window_starts(n_frames: int, fps: int = FPS) -> torch.Tensor:
    """``(n_frames,)`` first mel frame of each video frame's window: ``int(80 * (i / fps))``, as Wav2Lip computes it."""
    return torch.from_numpy((float(MEL_FPS) * (np.arange(n_frames) / float(fps))).astype(np.int64))


def frame_windows(
    mel: torch.Tensor | np.ndarray, n_frames: int, fps: int = FPS, start: int = 0, count: int | None = None
) -> torch.Tensor:
    """Cut one 16-frame mel window per video frame.

    Args:
        mel: ``(80, M)`` or ``(B, 80, M)`` from :func:`melspectrogram` (a tensor, or a NumPy array).
        n_frames: number of video frames.
        fps: video frame rate.
        start, count: only the windows of frames ``start .. start + count - 1`` (default: all), as cut from the
            whole clip (a training window without cutting every frame's).

    Returns:
        ``(n_frames, 1, 80, 16)`` or ``(B, n_frames, 1, 80, 16)`` (``count`` instead of ``n_frames`` when given);
        window ``i`` starts at mel frame ``int(80 * i / fps)``, and columns past the end repeat the last mel frame.
    """
    if mel.ndim not in (2, 3) or mel.shape[-2] != N_MELS:
        raise ValueError(f"frame_windows expects a mel (80, M) or (B, 80, M), got shape {tuple(mel.shape)}")
    if mel.shape[-1] == 0:
        raise ValueError("frame_windows got an empty mel spectrogram (M = 0)")
    if n_frames < 0:
        raise ValueError(f"n_frames must be >= 0, got {n_frames}")
    starts = window_starts(n_frames, fps)[start : None if count is None else start + count]
    if isinstance(mel, np.ndarray):  # e.g. a read-only view into a shard: only the windows are copied out
        idx = np.minimum(starts.numpy()[:, None] + np.arange(WINDOW), mel.shape[-1] - 1)
        return torch.from_numpy(np.moveaxis(mel[..., idx], -2, -3)[..., None, :, :].copy())
    idx = starts.to(mel.device)[:, None] + torch.arange(WINDOW, device=mel.device)
    idx = idx.clamp_max(mel.shape[-1] - 1)  # (n_frames, 16)
    windows = mel[..., idx]  # (..., 80, n_frames, 16)
    return windows.movedim(-2, -3).unsqueeze(-3)  # (..., n_frames, 1, 80, 16)


def audio_windows(
    wav: torch.Tensor, n_frames: int | None = None, fps: int = FPS, pad_mode: str = "constant"
) -> torch.Tensor:
    """The length rule end to end: fit 16 kHz ``wav (N,)`` to ``n_frames`` (default :func:`num_frames`), compute
    the mel, cut the windows. Returns ``(n_frames, 1, 80, 16)``."""
    if n_frames is None:
        n_frames = num_frames(wav.shape[-1], fps)
    if n_frames < 1:
        raise ValueError(
            f"{wav.shape[-1]} samples is shorter than one video frame ({samples_per_frame(fps)} samples at {fps} fps)"
        )
    wav = fit_to_frames(wav, n_frames, fps)
    return frame_windows(melspectrogram(wav, pad_mode=pad_mode), n_frames, fps)
