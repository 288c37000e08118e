"""Tiny raw "datasets" made on the fly: talking videos of the astronaut photo whose mouth opens with real eSpeak
speech, written with PyAV in HDTF, MEAD and plain-folder layouts, plus the broken files data preparation must
survive."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import torch
from skimage import data

from pctalk.audio.loudness import frame_loudness
from pctalk.audio.mel import num_frames
from pctalk.audio.tts import synthesize
from pctalk.media import write_audio, write_video

SENTENCES = (
    "The duck ate too many bees before lunch.",
    "Then it flew away over the quiet lake.",
    "Children counted clouds and laughed at the wind.",
    "Nobody expected the boat to float so well.",
)


@lru_cache(maxsize=16)
def speech(text: str) -> torch.Tensor:
    return synthesize(text).wav


@lru_cache(maxsize=4)
def _face(size: int) -> np.ndarray:
    return cv2.resize(data.astronaut(), (size, size), interpolation=cv2.INTER_AREA)


def talking_frames(wav: torch.Tensor, n: int, size: int = 320, fps: int = 25) -> np.ndarray:
    """``(n, size, size, 3)`` uint8: the astronaut with a mouth that opens with the loudness of ``wav``."""
    loud = frame_loudness(wav, max(1, num_frames(len(wav)))) if len(wav) else torch.full((1,), -100.0)
    opening = ((loud + 60) / 60).clamp(0, 1).numpy()  # at 25 fps; frame i of the video is at time i / fps
    base = _face(size)
    frames = np.repeat(base[None], n, axis=0)
    cx, cy = int(0.436 * size), int(0.315 * size)  # the astronaut's mouth
    for i in range(n):
        o = opening[min(int(i / fps * 25), len(opening) - 1)]
        cv2.ellipse(frames[i], (cx, cy), (int(0.03 * size), max(1, int(0.02 * size * o))), 0, 0, 360, (40, 10, 10), -1)
    return frames


def talking_video(
    path: Path,
    text: str = SENTENCES[0],
    fps: int = 25,
    audio: bool = True,
    audio_seconds: float | None = None,
    silent: bool = False,
    blank: bool = False,
) -> Path:
    """An mp4 of the astronaut speaking ``text`` (``fps`` frames per second), with the speech muxed in.

    Args:
        audio: mux an audio track at all.
        audio_seconds: cut the audio to this length (the video keeps the speech's length).
        silent: replace the speech by digital silence.
        blank: grey frames with no face.
    """
    wav = speech(text)
    n = int(len(wav) / 16000 * fps)
    frames = talking_frames(wav, n, fps=fps)
    if blank:
        frames[:] = 128
    track = torch.zeros_like(wav) if silent else wav
    if audio_seconds is not None:
        track = track[: int(audio_seconds * 16000)]
    return write_video(path, frames, fps=fps, audio=track if audio else None)


def hdtf_dataset(root: Path, identities: dict[str, int]) -> Path:
    """``root/<identity>_<NNN>.mp4`` clips, ``identities[id]`` of them each."""
    k = 0
    for identity, count in identities.items():
        for i in range(count):
            talking_video(root / f"{identity}_{i:03d}.mp4", SENTENCES[k % len(SENTENCES)])
            k += 1
    return root


def mead_dataset(root: Path, identities: tuple[str, ...], emotions: tuple[str, ...] = ("neutral", "happy")) -> Path:
    """MEAD's layout: video in ``<id>/video/front/<emotion>/level_<n>``, m4a audio in ``<id>/audio/...``."""
    k = 0
    for identity in identities:
        for emotion in emotions:
            level = 1 if emotion == "neutral" else 3
            text = SENTENCES[k % len(SENTENCES)]
            k += 1
            talking_video(root / identity / "video/front" / emotion / f"level_{level}" / "001.mp4", text, audio=False)
            write_audio(root / identity / "audio" / emotion / f"level_{level}" / "001.m4a", speech(text))
    return root


def variable_frame_rate_video(path: Path, gaps_ms: tuple[int, ...] = (50, 20), n: int = 60, size: int = 64) -> Path:
    """A video whose frames are ``gaps_ms`` apart in turn (variable frame rate); frame ``i`` is filled with the
    grey level ``4 * i`` so a test can tell which source frame it got."""
    from fractions import Fraction

    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    times = np.concatenate([[0], np.cumsum([gaps_ms[i % len(gaps_ms)] for i in range(n - 1)])])
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        stream.options = {"crf": "0"}
        for i, t in enumerate(times):
            frame = av.VideoFrame.from_ndarray(np.full((size, size, 3), 4 * i, np.uint8), format="rgb24")
            frame.pts, frame.time_base = int(t), Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


# -- datasets in their real shapes ---------------------------------------------------------------------------------
#: MEAD's layout: neutral at level 1, the other emotions at levels 1 and 3 (the paper's test identities are M003,
#: M030, W009, W015).
MEAD_CLIPS = (("neutral", 1), ("happy", 1), ("happy", 3), ("angry", 1), ("angry", 3))


@lru_cache(maxsize=4)
def _head(size: int) -> np.ndarray:
    """The astronaut's head and shoulders, ``(size, size, 3)``: at 150 px its face is about 55 px, which OpenCV's
    Haar cascade finds."""
    return cv2.resize(data.astronaut()[0:280, 90:370], (size, size), interpolation=cv2.INTER_AREA)


@lru_cache(maxsize=4)
def _background(width: int, height: int) -> np.ndarray:
    return cv2.GaussianBlur(cv2.resize(data.chelsea(), (width, height)), (0, 0), 6)


def scene_frames(
    wav: torch.Tensor, n: int, width: int = 384, height: int = 216, fps: int = 30, head: int = 150, seed: int = 0
) -> np.ndarray:
    """``(n, height, width, 3)`` uint8: a talking head off-centre in a wider (or taller) frame, moving on a slow
    path as a speaker's head does, its mouth opening with the loudness of ``wav``; ``seed`` picks the path."""
    loud = frame_loudness(wav, max(1, num_frames(len(wav)))) if len(wav) else torch.full((1,), -100.0)
    opening = ((loud + 60) / 60).clamp(0, 1).numpy()
    rng = np.random.default_rng(seed)
    x0 = rng.uniform(0.05, 0.2) * (width - head) if seed % 2 else rng.uniform(0.7, 0.95) * (width - head)
    y0 = rng.uniform(0.1, 0.6) * (height - head)
    amp = 0.08 * min(width, height)
    base, back = _head(head), _background(width, height)
    frames = np.empty((n, height, width, 3), np.uint8)
    for i in range(n):
        phase = 2 * np.pi * i / max(n, 1)
        x = int(np.clip(x0 + amp * np.sin(phase), 0, width - head))
        y = int(np.clip(y0 + 0.5 * amp * np.sin(2 * phase), 0, height - head))
        frames[i] = back
        face = base.copy()
        o = opening[min(int(i / fps * 25), len(opening) - 1)]
        cv2.ellipse(face, (int(0.475 * head), int(0.6 * head)), (int(0.07 * head), max(1, int(0.045 * head * o))),
                    0, 0, 360, (40, 10, 10), -1)  # fmt: skip
        frames[i, y : y + head, x : x + head] = face
    return frames


def scene_video(
    path: Path, text: str, width: int = 384, height: int = 216, fps: int = 30, audio: bool = True, seed: int = 0
) -> Path:
    """An mp4 of :func:`scene_frames` speaking ``text`` at ``fps``, the speech muxed in as AAC when ``audio``."""
    wav = speech(text)
    n = int(len(wav) / 16000 * fps)
    return write_video(path, scene_frames(wav, n, width, height, fps, seed=seed), fps=fps,
                       audio=wav if audio else None)  # fmt: skip


def hdtf_shaped(root: Path, identities: dict[str, int], fps: int = 30, sentences: int = 1) -> Path:
    """A mini HDTF: ``root/<identity>_<NNN>.mp4``, 16:9 landscape (384x216), the face off-centre and moving,
    ``fps`` frames per second, AAC speech muxed; ``identities[id]`` clips each, ``sentences`` sentences long."""
    k = 0
    for n, (identity, count) in enumerate(identities.items()):
        for i in range(count):
            text = " ".join(SENTENCES[(k + j) % len(SENTENCES)] for j in range(sentences))
            scene_video(root / f"{identity}_{i:03d}.mp4", text, fps=fps, seed=n * 7 + i)
            k += 1
    return root


def mead_shaped(
    root: Path, identities: tuple[str, ...], clips=MEAD_CLIPS, fps: int = 30, sentences: tuple[str, ...] = SENTENCES
) -> Path:
    """A mini MEAD in its real layout: video only in ``<id>/video/front/<emotion>/level_<n>/<NNN>.mp4`` (16:9,
    ``fps``), the speech (``sentences`` in turn) as AAC in ``<id>/audio/<emotion>/level_<n>/<NNN>.m4a``."""
    k = 0
    for n, identity in enumerate(identities):
        for emotion, level in clips:
            text = sentences[k % len(sentences)]
            k += 1
            name = f"level_{level}/001"
            scene_video(root / identity / "video/front" / emotion / f"{name}.mp4", text, fps=fps, audio=False,
                        seed=n * 5 + k)  # fmt: skip
            write_audio(root / identity / "audio" / emotion / f"{name}.m4a", speech(text))
    return root
