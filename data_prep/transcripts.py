"""Transcripts for ``pctalk-data build --transcripts FILE``: clip id -> the words spoken, stored in the shards.

The text emotion source (:class:`~pctalk.models.emotion_sources.TextEmotionSource`) trains on them. ``FILE`` is a
JSON object ``{clip id: text}`` or text lines ``clip id<TAB>text`` (or ``clip id`` and the text after the first run of
spaces); a clip id is any of the clip's pctalk key (``mead/M005/happy_3_001``), its video's path under the dataset
root without the extension (``M005/video/front/happy/level_3/001``), or the video's file name without the extension
(``001``; the most specific match wins).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from data_prep.sources import ClipSource

__all__ = ["load_transcripts", "transcript_of"]


def load_transcripts(path: str | os.PathLike[str]) -> dict[str, str]:
    """``clip id -> text`` from ``path`` (JSON, or ``id<TAB>text`` / ``id text`` lines; ``#`` starts a comment).

    Raises:
        ValueError: the file is neither form, or holds no transcript.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            mapping = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err}); give {{clip id: text}} or 'id<TAB>text' lines") from None
        if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
            raise ValueError(f"{path}: expected a JSON object of clip id -> text")
    else:
        mapping = {}
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            parts = line.split("\t", 1) if "\t" in line else line.strip().split(None, 1)
            if len(parts) != 2 or not parts[1].strip():
                raise ValueError(f"{path}, line {number}: expected 'clip id<TAB>text', got {line!r}")
            mapping[parts[0].strip()] = parts[1].strip()
    if not mapping:
        raise ValueError(f"{path} holds no transcript")
    return {str(k): v for k, v in mapping.items()}


def transcript_of(src: ClipSource, root: str | os.PathLike[str], transcripts: dict[str, str]) -> str | None:
    """The transcript of ``src`` (by key, then path under ``root``, then file name), or ``None``."""
    try:
        relative = src.video.relative_to(root).with_suffix("").as_posix()
    except ValueError:
        relative = None
    for candidate in (src.key, relative, src.video.stem):
        if candidate is not None and candidate in transcripts:
            return transcripts[candidate]
    return None
