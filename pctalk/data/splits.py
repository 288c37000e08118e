"""The split files beside the shards, as every reader sees them.

- ``splits.json``: ``{"version": 1, "datasets": {dataset: {identity: split}}}`` (identity-disjoint splits). Files of
  older builds are the bare ``{dataset: {identity: split}}`` mapping and read the same.
- ``test_clips.json``: the pieces evaluation scores (``pctalk-data build`` cuts test clips into pieces; HDTF's are
  10 s), one entry per piece with its raw video, audio and frame range, so that every method is scored on the same
  pieces: ``{"version": 1, "splits_sha256": ..., "sha256": ..., "clips": [TestClip, ...]}``.

Both carry a content hash (:func:`content_sha256`: SHA-256 of the canonical JSON of their content), which evaluation
stores in every result.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "SPLITS_FILE",
    "SPLITS_VERSION",
    "TEST_LIST_FILE",
    "TestClip",
    "content_sha256",
    "read_splits",
    "read_test_list",
    "splits_document",
    "test_list_document",
]

SPLITS_FILE = "splits.json"
TEST_LIST_FILE = "test_clips.json"
SPLITS_VERSION = 1


def content_sha256(content: Any) -> str:
    """SHA-256 of ``content`` as canonical JSON (sorted keys, no spaces, UTF-8): equal for equal content however
    the file was indented."""
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def read_splits(path: str | os.PathLike[str]) -> dict[str, dict[str, str]]:
    """``{dataset: {identity: split}}`` from a ``splits.json`` (this version's or an older build's bare mapping).

    Raises:
        ValueError: a newer version than this pctalk reads, or not a splits file (the message names it).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); rebuild it with pctalk-data build") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a splits file: expected a JSON object")
    if "datasets" in data:
        version = data.get("version", SPLITS_VERSION)
        if version > SPLITS_VERSION:
            raise ValueError(f"{path} is splits version {version}; this pctalk reads up to {SPLITS_VERSION}: upgrade")
        data = data["datasets"]
    return {str(dataset): dict(ids) for dataset, ids in data.items()}


def splits_document(datasets: dict[str, dict[str, str]]) -> dict[str, Any]:
    """What ``splits.json`` holds for ``datasets``."""
    return {"version": SPLITS_VERSION, "datasets": datasets}


@dataclass(frozen=True)
class TestClip:
    """One piece evaluation scores: frames ``start_frame ... start_frame + n_frames - 1`` (at 25 fps) of a raw clip
    and the same stretch of its audio. ``video`` and ``audio`` are relative to the raw dataset's root (so the list
    holds on any machine that mounts the dataset elsewhere); ``audio`` is ``None`` when it is the video's own track.
    """

    __test__ = False  # not a pytest class

    key: str
    dataset: str
    identity: str
    clip: str
    video: str
    audio: str | None
    start_frame: int
    n_frames: int
    emotion: str = "neutral"
    level: int = 0


def read_test_list(path: str | os.PathLike[str]) -> tuple[list[TestClip], dict[str, Any]]:
    """The pieces of a ``test_clips.json`` and its header (version, hashes).

    Raises:
        ValueError: a newer version, or a list whose content does not match its stored hash (edited by hand).
    """
    path = Path(path)
    data = json.loads(path.read_text())
    version = data.get("version", 0)
    if version > SPLITS_VERSION:
        raise ValueError(f"{path} is test-list version {version}; this pctalk reads up to {SPLITS_VERSION}: upgrade")
    clips = data.get("clips", [])
    if data.get("sha256") not in (None, content_sha256(clips)):
        raise ValueError(
            f"{path} does not match its own sha256 (edited after pctalk-data build wrote it?); rebuild it with "
            f"pctalk-data build (it resumes and only rewrites the lists), or give the pieces to score another way"
        )
    header = {k: v for k, v in data.items() if k != "clips"}
    return [TestClip(**c) for c in clips], header


def test_list_document(clips: list[TestClip], splits: dict[str, dict[str, str]]) -> dict[str, Any]:
    """What ``test_clips.json`` holds for ``clips`` (sorted by key) cut under ``splits``."""
    entries = [asdict(c) for c in sorted(clips, key=lambda c: c.key)]
    return {"version": SPLITS_VERSION, "splits_sha256": content_sha256(splits), "sha256": content_sha256(entries),
            "clips": entries}  # fmt: skip
