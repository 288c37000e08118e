"""Reading audio: any container PyAV or soundfile understands, as 16 kHz mono float32."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torchaudio.functional as AF

__all__ = [
    "SILENCE_DBFS",
    "AudioLoadError",
    "SilentAudioError",
    "ensure_audible",
    "load_audio",
    "peak_dbfs",
    "resample",
]

#: Extensions soundfile reads exactly and fast; everything else goes through PyAV (FFmpeg).
_SOUNDFILE_EXTS = {".wav", ".flac", ".ogg"}


class AudioLoadError(ValueError):
    """An audio file cannot be read, has no audio stream, or its stream is empty."""


class SilentAudioError(ValueError):
    """The audio holds no audible signal."""


def resample(wav: torch.Tensor, orig_rate: int, new_rate: int) -> torch.Tensor:
    """Resample ``wav (..., N)`` with ``torchaudio.functional.resample`` (identity when the rates match)."""
    if orig_rate == new_rate:
        return wav
    return AF.resample(wav, orig_rate, new_rate)


def _read_soundfile(path: Path) -> tuple[np.ndarray, int]:
    import soundfile

    data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)  # (N, C)
    return data.T, rate


def _wav_truncation(path: Path) -> tuple[int, int] | None:
    """``(declared, present)`` bytes of a RIFF WAV's ``data`` chunk when the file holds less than its header says
    (a copy or download cut short); ``None`` for a whole file, another format, or a streamed WAV whose header leaves
    the size open (0 or 0xFFFFFFFF)."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        if fh.read(4) != b"RIFF":
            return None
        fh.seek(12)
        while True:
            header = fh.read(8)
            if len(header) < 8:
                return None
            chunk, length = header[:4], int.from_bytes(header[4:], "little")
            if chunk == b"data":
                present = size - fh.tell()
                return (length, present) if 0 < length < 0xFFFFFFFF and present < length else None
            fh.seek(length + (length & 1), os.SEEK_CUR)


def _read_av(path: Path) -> tuple[np.ndarray, int]:
    import av

    with av.open(str(path)) as container:
        stream = next((s for s in container.streams if s.type == "audio"), None)
        if stream is None:
            raise AudioLoadError(
                f"{path} has no audio stream (streams: {[s.type for s in container.streams] or 'none'}); "
                f"give a file that contains speech, or pass the audio separately."
            )
        to_planar_float = av.AudioResampler(format="fltp")
        chunks: list[np.ndarray] = []
        rate = stream.rate or stream.codec_context.sample_rate
        for frame in container.decode(stream):
            rate = frame.sample_rate
            for out in to_planar_float.resample(frame):
                chunks.append(out.to_ndarray())  # (C, n)
        for out in to_planar_float.resample(None):
            chunks.append(out.to_ndarray())
    if not chunks:
        return np.zeros((1, 0), np.float32), rate
    return np.concatenate(chunks, axis=1), rate


def load_audio(path: str | os.PathLike[str], sample_rate: int = 16000) -> torch.Tensor:
    """Read the audio of ``path`` (wav, flac, mp3, m4a, or the audio track of mp4/mov) as mono float32 in [-1, 1].

    Channels are averaged; the signal is resampled to ``sample_rate`` with ``torchaudio.functional.resample``.

    Returns:
        ``(N,)`` float32 tensor.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        AudioLoadError: the file is unreadable, truncated (a WAV holding less than its header declares), has no
            audio stream, or its audio stream is empty.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audio file not found: {path}")
    if path.suffix.lower() == ".wav" and (cut := _wav_truncation(path)) is not None:
        declared, present = cut
        raise AudioLoadError(
            f"{path} is truncated: its header declares {declared} bytes of audio but the file holds {present} "
            f"({100 * present / declared:.0f}%). Copy or download it again, or re-export it."
        )
    try:
        if path.suffix.lower() in _SOUNDFILE_EXTS:
            try:
                data, rate = _read_soundfile(path)
            except RuntimeError:  # not a format libsndfile knows after all: let FFmpeg try
                data, rate = _read_av(path)
        else:
            data, rate = _read_av(path)
    except AudioLoadError:
        raise
    except Exception as err:  # PyAV / libsndfile errors for corrupt or unsupported files
        raise AudioLoadError(
            f"cannot read audio from {path}: {err}. The file may be corrupt or not a media file; "
            f"re-export it (e.g. as 16 kHz mono wav)."
        ) from err
    if data.shape[-1] == 0:
        raise AudioLoadError(f"the audio stream of {path} is empty (0 samples); give a file with speech in it.")
    wav = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32)).mean(0)
    return resample(wav, int(rate), sample_rate).clamp_(-1.0, 1.0).contiguous()


#: Speech quieter than this peak level is taken for silence (a muted track or microphone).
SILENCE_DBFS = -60.0


def peak_dbfs(peak: float) -> float:
    """A peak sample magnitude (1.0: full scale) in dBFS (-200 for digital silence)."""
    return 20.0 * float(np.log10(max(peak, 1e-10)))


def ensure_audible(
    wav: torch.Tensor, source: str | os.PathLike[str], threshold_dbfs: float = SILENCE_DBFS
) -> torch.Tensor:
    """Return ``wav`` unchanged, or raise :class:`SilentAudioError` naming ``source`` if its peak is below
    ``threshold_dbfs`` (silence, or a track that was muted)."""
    peak_db = peak_dbfs(float(wav.abs().max()) if wav.numel() else 0.0)
    if peak_db < threshold_dbfs:
        raise SilentAudioError(
            f"{source} is silent (peak {peak_db:.1f} dBFS, below {threshold_dbfs:.0f} dBFS); "
            f"a talking face needs speech: check the file, its volume, or the audio track chosen."
        )
    return wav
