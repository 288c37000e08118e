"""Per-video-frame loudness, the input of the loudness-driven lip scale."""

from __future__ import annotations

import torch

from pctalk.audio.mel import FPS, SAMPLE_RATE, fit_to_frames, samples_per_frame

__all__ = ["FLOOR_DBFS", "frame_loudness"]

#: Loudness reported for digital silence.
FLOOR_DBFS = -100.0


def frame_loudness(wav: torch.Tensor, n_frames: int, fps: int = FPS, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """RMS loudness of each video frame's audio, in dBFS (a full-scale square wave is 0 dBFS).

    Args:
        wav: ``(N,)`` or ``(B, N)`` waveform in [-1, 1]; fitted to ``n_frames`` by the length rule
            (:func:`pctalk.audio.mel.fit_to_frames`).
        n_frames: number of video frames.

    Returns:
        ``(n_frames,)`` or ``(B, n_frames)``, floored at -100 dBFS.
    """
    spf = samples_per_frame(fps, sample_rate)
    frames = fit_to_frames(wav, n_frames, fps, sample_rate).reshape(*wav.shape[:-1], n_frames, spf)
    rms = frames.double().pow(2).mean(-1).sqrt()
    floor = 10.0 ** (FLOOR_DBFS / 20.0)
    return (20.0 * torch.log10(rms.clamp_min(floor))).to(torch.float32)
