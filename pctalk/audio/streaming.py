"""Speech that arrives in chunks -> each video frame's mel window as soon as it is final, equal bit for bit to
:func:`pctalk.audio.mel.audio_windows` of the whole clip.

The length rule (:mod:`pctalk.audio.mel`) trims the audio to whole video frames and centres the STFT with zeros, so
a mel frame is final once the samples under it belong to a whole video frame; a video frame's window (16 mel frames
from ``int(80 i / 25)``) is final once its last mel frame is, which is about 170 ms of audio after the frame ends.
At :meth:`AudioStream.close` the clip's length is known and the last frames' windows follow the end rule.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from pctalk.audio.mel import (
    FPS,
    HOP,
    N_FFT,
    N_MELS,
    SAMPLE_RATE,
    WIN,
    WINDOW,
    _compute_dtype,
    _window,
    normalised_mel,
    preemphasis,
    samples_per_frame,
    window_starts,
)

__all__ = ["AudioStream", "live_pcm"]


class _Buffer:
    """A growing array along its last axis (amortised doubling)."""

    def __init__(self, rows: tuple[int, ...], dtype: type) -> None:
        self.data, self.size = np.zeros((*rows, 1024), dtype), 0

    def extend(self, values: np.ndarray) -> None:
        need = self.size + values.shape[-1]
        if need > self.data.shape[-1]:
            grown = np.zeros((*self.data.shape[:-1], max(need, 2 * self.data.shape[-1])), self.data.dtype)
            grown[..., : self.size] = self.data[..., : self.size]
            self.data = grown
        self.data[..., self.size : need] = values
        self.size = need

    def view(self, start: int, stop: int) -> np.ndarray:
        return self.data[..., start:stop]


class AudioStream:
    """16 kHz mono speech pushed in chunks of any size; the windows of the frames that are final.

    Example::

        audio = AudioStream()
        audio.push(chunk)              # (N,) float in [-1, 1]
        audio.windows(0, audio.ready)  # (ready, 1, 80, 16), equal to audio_windows(whole)[:ready]
        audio.close()                  # the end: every frame's window is final
    """

    def __init__(self, fps: int = FPS) -> None:
        self.fps, self.spf = fps, samples_per_frame(fps, SAMPLE_RATE)
        self._wav = _Buffer((), np.float32)
        self._mel = _Buffer((N_MELS,), np.float32)
        self._starts = window_starts(1024, fps).numpy()  # each frame's first mel frame, grown as frames come
        self.closed = False
        self.peak = 0.0  # the largest sample magnitude so far

    @property
    def samples(self) -> int:
        """Samples received."""
        return self._wav.size

    @property
    def frames(self) -> int:
        """Video frames the audio covers so far (the final count once closed)."""
        return self._wav.size // self.spf

    @property
    def ready(self) -> int:
        """Frames whose window is final."""
        if self.closed:
            return self.frames
        last = self._window_starts(self.frames) + WINDOW - 1  # each window's last mel frame
        return int(np.searchsorted(last, self._mel.size, side="left"))

    def push(self, chunk: torch.Tensor | np.ndarray) -> None:
        """Append samples ``(N,)`` and compute every mel frame they make final."""
        if self.closed:
            raise ValueError("the audio stream is closed")
        chunk = chunk.detach().cpu().numpy() if isinstance(chunk, torch.Tensor) else np.asarray(chunk)
        if chunk.ndim != 1 or not np.issubdtype(chunk.dtype, np.floating):
            raise ValueError(f"push 16 kHz mono float samples (N,) in [-1, 1], got {chunk.dtype} {chunk.shape} (int16 "
                             f"PCM: divide by 32768; stereo: average the channels)")  # fmt: skip
        self._wav.extend(chunk.astype(np.float32))
        if chunk.size:
            self.peak = max(self.peak, float(np.abs(chunk).max()))
        self._advance(self.frames * self.spf)

    def close(self) -> None:
        """No more audio: the clip is trimmed to whole frames and its last mel frames computed."""
        if not self.closed:
            self.closed = True
            self._advance(self.frames * self.spf, end=True)

    def windows(self, start: int, stop: int) -> torch.Tensor:
        """The mel windows ``(stop - start, 1, 80, 16)`` of frames ``start .. stop - 1`` (all final)."""
        if stop > self.ready:
            raise ValueError(f"frames up to {stop} requested, but only {self.ready} are final")
        starts = self._window_starts(stop)[start:]
        idx = np.minimum(starts[:, None] + np.arange(WINDOW), self._mel.size - 1)
        mel = torch.from_numpy(self._mel.view(0, self._mel.size))
        return mel[:, torch.from_numpy(idx)].movedim(-2, -3).unsqueeze(-3)

    def wav(self, start: int, stop: int) -> torch.Tensor:
        """The samples of frames ``start .. stop - 1`` ``((stop - start) * 640,)``."""
        return torch.from_numpy(self._wav.view(start * self.spf, stop * self.spf).copy())

    def _window_starts(self, n: int) -> np.ndarray:
        """The first mel frame of frames ``0 .. n - 1`` (computed once, grown by doubling)."""
        if len(self._starts) < n:
            self._starts = window_starts(2 * n, self.fps).numpy()
        return self._starts[:n]

    def _advance(self, length: int, end: bool = False) -> None:
        """Compute the mel frames that ``length`` whole-frame samples make final (at the end: all of them)."""
        first = self._mel.size
        last = length // HOP + 1 if end else max(0, (length - N_FFT // 2) // HOP + 1)  # one past
        if last <= first:
            return
        lo, hi = first * HOP - N_FFT // 2, (last - 1) * HOP + N_FFT // 2  # centred frames' samples
        dtype = _compute_dtype(torch.device("cpu"))
        a = max(lo - 1, 0)  # one sample before, for the pre-emphasis
        x = torch.from_numpy(self._wav.view(a, min(hi, length)).copy()).to(dtype)
        y = preemphasis(x)[lo - a if lo > 0 else 0 :]
        y = torch.nn.functional.pad(y, (max(0, -lo), hi - max(lo, 0) - len(y)))  # zeros outside the clip
        spec = torch.stft(y, N_FFT, HOP, WIN, window=_window(y.device, dtype), center=False, return_complex=True)
        self._mel.extend(normalised_mel(spec.abs()).numpy())


def _wav_format(head: bytes, name: str) -> tuple[int, int | None]:
    """The data chunk's offset and declared size (``None`` while a recorder has not written it) of a PCM WAV."""
    import struct

    if len(head) < 12:
        raise EOFError
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise ValueError(f"{name} is not a WAV file; stream a 16 kHz mono 16-bit WAV, or raw PCM on stdin (--audio -)")
    pos, fmt = 12, None
    while pos + 8 <= len(head):
        tag, size = head[pos : pos + 4], struct.unpack("<I", head[pos + 4 : pos + 8])[0]
        if tag == b"fmt ":
            fmt = struct.unpack("<HHIIHH", head[pos + 8 : pos + 24])
        elif tag == b"data":
            if fmt is None:
                break
            kind, channels, rate, _, _, bits = fmt
            if (kind, channels, rate, bits) != (1, 1, SAMPLE_RATE, 16):
                raise ValueError(
                    f"{name} is {channels}-channel {bits}-bit at {rate} Hz (format {kind}); streaming reads 16 kHz "
                    f"mono 16-bit PCM: record it so, or convert it (ffmpeg -i IN -ac 1 -ar 16000 -c:a pcm_s16le OUT)"
                )
            return pos + 8, (size if 0 < size < 0xFFFFFFF0 else None)
        pos += 8 + size + (size & 1)
    raise EOFError


def live_pcm(source: str | Path | BinaryIO, chunk_ms: int = 40, idle: float = 2.0) -> Iterator[torch.Tensor]:
    """16 kHz speech as it arrives, in chunks of about ``chunk_ms``: from a WAV file that may still be growing (it
    ends at its declared size, or when it has not grown for ``idle`` seconds), or from a binary stream of raw 16-bit
    mono PCM at 16 kHz (stdin; it ends at EOF).

    Raises:
        ValueError: not 16 kHz mono 16-bit PCM (the message says how to convert it).
    """
    import time

    step = SAMPLE_RATE * chunk_ms // 1000 * 2
    if not isinstance(source, (str, Path)):
        if hasattr(source, "isatty") and source.isatty():
            raise ValueError(
                "--audio - reads raw 16 kHz mono 16-bit PCM from stdin, but stdin is a terminal: pipe the audio in, "
                "e.g. ffmpeg -i IN -f s16le -ac 1 -ar 16000 - | pctalk generate --stream --audio - ..."
            )
        leftover = b""
        while data := source.read(step):
            data = leftover + data
            usable = len(data) // 2 * 2  # a short read may split a sample: keep its byte for the next one
            data, leftover = data[:usable], data[usable:]
            if data:
                yield torch.from_numpy(np.frombuffer(data, "<i2").astype(np.float32) / 32768)
        return
    path, name = Path(source), str(source)
    with open(path, "rb") as fh:
        offset = size = None
        waited, pos, leftover = time.monotonic(), 0, b""
        while True:
            if offset is None:
                fh.seek(0)
                try:
                    offset, size = _wav_format(fh.read(4096), name)
                    pos = offset
                except EOFError:  # the header is not all there yet
                    pass
            if offset is not None:
                fh.seek(pos)
                data = leftover + fh.read(step if size is None else min(step, offset + size - pos))
                pos += len(data) - len(leftover)
                usable = len(data) // 2 * 2
                data, leftover = data[:usable], data[usable:]
                if data:
                    waited = time.monotonic()
                    yield torch.from_numpy(np.frombuffer(data, "<i2").astype(np.float32) / 32768)
                    continue
                if size is not None and pos >= offset + size:
                    return
            if time.monotonic() - waited > idle:
                if offset is None:
                    raise ValueError(f"{name}: no WAV header after {idle} s; is something writing it?")
                return
            time.sleep(0.01)
