"""Dataset adapters: where each raw dataset keeps its clips, and what each clip's identity, emotion and audio are."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pctalk.data.schema import EMOTIONS, clip_key

__all__ = ["ADAPTERS", "VIDEO_EXTS", "ClipSource", "enumerate_clips"]

VIDEO_EXTS = (".mp4", ".mov", ".mkv", ".avi", ".webm")
_AUDIO_EXTS = (".m4a", ".wav", ".mp3", ".aac", ".flac")


@dataclass(frozen=True)
class ClipSource:
    """One raw clip: a video, its audio (the video's own track when ``audio`` is ``None``) and labels."""

    dataset: str
    identity: str
    clip: str
    video: Path
    audio: Path | None = None
    emotion: str = "neutral"
    level: int = 0

    @property
    def key(self) -> str:
        return clip_key(self.dataset, self.identity, self.clip)


def _videos(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_EXTS and p.is_file())


def hdtf(root: Path) -> list[ClipSource]:
    """HDTF: ``<root>/**/<identity>_<NNN>.mp4`` (e.g. ``WDA_BarackObama_000.mp4``); a name without a trailing
    number is a whole-identity clip."""
    out = []
    for video in _videos(root):
        match = re.fullmatch(r"(.+?)_(\d+)", video.stem)
        identity, clip = (match.group(1), match.group(2)) if match else (video.stem, "0")
        out.append(ClipSource("hdtf", identity, clip, video))
    return out


def mead(root: Path) -> list[ClipSource]:
    """MEAD front view: ``<root>/<id>/video/front/<emotion>/level_<n>/<clip>.mp4``, with the audio at
    ``<root>/<id>/audio/<emotion>/level_<n>/<clip>.m4a`` when present (else the video's own track)."""
    out = []
    for video in sorted(root.glob("*/video/front/*/level_*/*")):
        if video.suffix.lower() not in VIDEO_EXTS:
            continue
        identity, emotion, level_dir = video.parts[-6], video.parts[-3], video.parts[-2]
        if emotion not in EMOTIONS:
            continue
        level = int(level_dir.split("_")[1])
        audio_dir = root / identity / "audio" / emotion / level_dir
        audio = next(
            (audio_dir / f"{video.stem}{ext}" for ext in _AUDIO_EXTS if (audio_dir / f"{video.stem}{ext}").is_file()),
            None,
        )
        clip = f"{emotion}_{level}_{video.stem}"
        out.append(ClipSource("mead", identity, clip, video, audio, emotion, level))
    return out


def folder(root: Path) -> list[ClipSource]:
    """Any folder of talking videos: the identity is the video's folder relative to ``root`` (or its name, for
    videos directly in ``root``)."""
    out = []
    for video in _videos(root):
        rel = video.parent.relative_to(root)
        identity = "_".join(rel.parts) if rel.parts else video.stem
        out.append(ClipSource("folder", identity, video.stem, video))
    return out


def faces(root: Path) -> list[ClipSource]:
    """Augmented identities written by ``pctalk-data augment``: ``<root>/<image-id>/<clip>.mp4``, tagged
    ``aug/<image-id>``."""
    out = []
    for video in _videos(root):
        if video.parent == root:
            continue
        out.append(ClipSource("aug", video.parent.name, video.stem, video))
    return out


ADAPTERS: dict[str, Callable[[Path], list[ClipSource]]] = {"hdtf": hdtf, "mead": mead, "faces": faces, "folder": folder}


def enumerate_clips(dataset: str, root: str | Path) -> list[ClipSource]:
    """All clips of ``dataset`` under ``root``, sorted by key.

    Raises:
        FileNotFoundError: ``root`` does not exist.
        ValueError: unknown dataset, or no clip found (the message names the layout expected).
    """
    root = Path(root)
    if dataset not in ADAPTERS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(ADAPTERS)}")
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root {root} does not exist")
    clips = sorted(ADAPTERS[dataset](root), key=lambda c: c.key)
    for a, b in itertools.pairwise(clips):
        if a.key == b.key:
            raise ValueError(
                f"{a.video} and {b.video} would both be clip {a.key!r} (the same identity and clip name in "
                f"{dataset}'s layout); rename one of them so that each clip is written once"
            )
    if not clips:
        doc = (ADAPTERS[dataset].__doc__ or "").split("\n\n")[0].replace("\n", " ")
        raise ValueError(f"no {dataset} clips found under {root}; expected {doc}")
    return clips
