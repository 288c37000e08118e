"""Media files: reading videos at 25 fps with decord, writing H.264 mp4 (audio muxed in) and audio with PyAV.

Every writer goes through a temporary file renamed on success, so a failed or interrupted write never leaves a
half-written file at the destination.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from pctalk.weights.io import atomic_write

__all__ = ["VideoError", "VideoReader", "write_audio", "write_video"]

_VIDEO_FORMATS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska"}
_AUDIO_CODECS = {".mp3": "libmp3lame", ".m4a": "aac", ".flac": "flac"}


def _as_array(x: np.ndarray | torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


class _AudioStream:
    """A mono audio stream of ``container``, encoded in the codec's frame size with running timestamps."""

    def __init__(self, container, sample_rate: int, codec: str) -> None:
        self.container = container
        self.sample_rate = sample_rate
        self.stream = container.add_stream(codec, rate=sample_rate)
        self.stream.layout = "mono"

    def write(self, wav: np.ndarray) -> None:
        import av

        ctx = self.stream.codec_context
        fmt = ctx.format.name if ctx.format is not None else "fltp"
        samples = np.clip(wav.astype(np.float32), -1.0, 1.0)[None]
        if fmt.startswith("s16"):
            samples, fmt = (samples * 32767).astype(np.int16), "s16"
        elif not fmt.startswith("flt"):
            fmt = "fltp"
        step = ctx.frame_size or 1024
        for start in range(0, samples.shape[1], step):
            chunk = np.ascontiguousarray(samples[:, start : start + step])
            frame = av.AudioFrame.from_ndarray(chunk, format=fmt, layout="mono")
            frame.sample_rate, frame.pts = self.sample_rate, start
            for packet in self.stream.encode(frame):
                self.container.mux(packet)
        for packet in self.stream.encode(None):
            self.container.mux(packet)


def write_video(
    path: str | os.PathLike[str],
    frames: np.ndarray | torch.Tensor | Iterable[np.ndarray],
    fps: int = 25,
    audio: np.ndarray | torch.Tensor | Callable[[], np.ndarray | torch.Tensor] | None = None,
    sample_rate: int = 16000,
    crf: int = 18,
) -> Path:
    """Write RGB frames as an H.264 (yuv420p) mp4, with ``audio`` muxed as AAC when given.

    Args:
        frames: ``(T, H, W, 3)`` uint8 RGB, or an iterable of ``(H, W, 3)`` frames (written as they come). H and W
            must be even (yuv420p).
        fps: frame rate.
        audio: ``(N,)`` mono waveform in [-1, 1] at ``sample_rate``, or a function giving it once the frames are
            written (a stream's audio, known at its end).
        crf: x264 quality (lower is better; 18 is visually lossless).
    """
    import av

    path = Path(path)

    def check(i: int, frame: np.ndarray | torch.Tensor) -> np.ndarray:
        frame = np.ascontiguousarray(_as_array(frame))
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"frame {i}: expected (H, W, 3) uint8 RGB, got {frame.shape} {frame.dtype}")
        return frame

    def write(tmp: Path) -> None:
        stream_of_frames = iter(frames)
        first = next(stream_of_frames, None)
        if first is None:
            raise ValueError(f"no frames to write to {path}")
        first = check(0, first)
        h, w = first.shape[:2]
        if h % 2 or w % 2:
            raise ValueError(f"H.264 yuv420p needs even frame sizes, got {w}x{h}")
        with av.open(str(tmp), mode="w", format=_VIDEO_FORMATS.get(path.suffix.lower(), "mp4")) as container:
            video = container.add_stream("libx264", rate=fps)
            video.width, video.height, video.pix_fmt = w, h, "yuv420p"
            video.options = {"crf": str(crf)}
            sound = None if audio is None else _AudioStream(container, sample_rate, "aac")
            for i, frame in enumerate(itertools.chain([first], stream_of_frames)):
                frame = check(i, frame) if i else frame
                if frame.shape[:2] != (h, w):
                    raise ValueError(f"frame {i} is {frame.shape[1]}x{frame.shape[0]}, the first was {w}x{h}")
                for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in video.encode(None):
                container.mux(packet)
            if sound is not None:
                sound.write(_as_array(audio() if callable(audio) else audio).reshape(-1))

    return atomic_write(path, write)


def write_audio(path: str | os.PathLike[str], wav: np.ndarray | torch.Tensor, sample_rate: int = 16000) -> Path:
    """Write a mono waveform in [-1, 1]: ``.wav`` as 16-bit PCM (soundfile), ``.mp3``, ``.m4a`` (AAC) or ``.flac``
    through PyAV."""
    path = Path(path)
    data = _as_array(wav).reshape(-1).astype(np.float32)
    ext = path.suffix.lower()
    if ext == ".wav":
        import soundfile

        return atomic_write(
            path, lambda tmp: soundfile.write(str(tmp), data, sample_rate, subtype="PCM_16", format="WAV")
        )
    if ext not in _AUDIO_CODECS:
        raise ValueError(f"cannot write audio as {ext!r}; use one of .wav, {', '.join(_AUDIO_CODECS)}")

    def write(tmp: Path) -> None:
        import av

        fmt = {".m4a": "ipod"}.get(ext, ext[1:])
        with av.open(str(tmp), mode="w", format=fmt) as container:
            _AudioStream(container, sample_rate, _AUDIO_CODECS[ext]).write(data)

    return atomic_write(path, write)


class VideoError(ValueError):
    """A video cannot be read."""


class VideoReader:
    """Frames of ``path`` resampled to ``fps`` by timestamp: target frame ``i`` is the last source frame that has
    started by ``i / fps``, so 30 fps and variable-frame-rate sources convert correctly.

    Raises:
        VideoError: the file is missing, unreadable, or has no frames.
    """

    def __init__(self, path: str | os.PathLike[str], fps: int = 25) -> None:
        import decord

        self.path = Path(path)
        if not self.path.is_file():
            raise VideoError(f"video not found: {self.path}")
        try:
            self._reader = decord.VideoReader(str(self.path), ctx=decord.cpu(0), num_threads=1)
            n = len(self._reader)
            if n == 0:
                raise VideoError(f"{self.path} has no video frames")
            stamps = np.asarray(self._reader.get_frame_timestamp(range(n)), dtype=np.float64)
        except VideoError:
            raise
        except Exception as err:  # decord raises its own error types for corrupt files
            raise VideoError(f"cannot read video {self.path}: {err}") from err
        starts = stamps[:, 0]
        self.duration = float(stamps[-1, 1])
        self.source_fps = float(self._reader.get_avg_fps())
        # decord's timestamps are float32: a 2.56 s clip ends at 2.5599999 s, so allow 1% of a frame (else the last
        # frame of a 25 fps video is dropped)
        n_out = int(np.floor(self.duration * fps + 0.01))
        targets = np.arange(n_out) / fps
        self.indices = np.clip(np.searchsorted(starts, targets + 1e-6, side="right") - 1, 0, n - 1)
        self.fps = fps

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)`` of the frames."""
        h, w = self._reader[0].shape[:2]
        return int(h), int(w)

    def chunks(self, size: int = 64, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        """``(n, H, W, 3)`` uint8 RGB chunks of the 25 fps frames ``start ... stop - 1`` (default: all), in order.

        Raises:
            VideoError: a frame cannot be decoded (a truncated file, for instance).
        """
        indices = self.indices[start:stop]
        for first in range(0, len(indices), size):
            idx = indices[first : first + size]
            try:
                yield self._reader.get_batch(idx.tolist()).asnumpy()
            except Exception as err:
                raise VideoError(f"cannot decode frames {idx[0]}..{idx[-1]} of {self.path}: {err}") from err
