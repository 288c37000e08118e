"""Identity-disjoint train / val / test splits, written next to the shards (``splits.json``) and re-used by eval,
and the list of test pieces evaluation scores (``test_clips.json``, see :mod:`pctalk.data.splits`)."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path

from pctalk.data.schema import SPLITS
from pctalk.data.splits import (
    SPLITS_FILE,
    TEST_LIST_FILE,
    TestClip,
    read_splits,
    splits_document,
    test_list_document,
)
from pctalk.weights.io import atomic_write

__all__ = ["MEAD_TEST_IDENTITIES", "assign_splits", "load_split_file", "write_splits", "write_test_list"]

#: MEAD identities held out for testing by default (the paper's).
MEAD_TEST_IDENTITIES = ("M003", "M030", "W009", "W015")

_SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                "test": "test", "testing": "test"}  # fmt: skip


def _fraction(identity: str) -> float:
    """A stable pseudo-random number in [0, 1) for an identity."""
    return int(hashlib.sha1(identity.encode()).hexdigest()[:8], 16) / 2**32


def _identity_of(name: str, dataset: str | None) -> str:
    """The identity a published list's entry names: a path or file name loses its folders and extension; an HDTF
    clip name (``WDA_BarackObama_000``) its clip number; a MEAD path (``M003/video/...``) is its first folder."""
    name = name.strip().replace("\\", "/")
    parts = [p for p in name.split("/") if p]
    if dataset == "mead" and len(parts) > 1:
        return parts[0]
    stem = parts[-1] if parts else name
    stem = re.sub(r"\.(mp4|mov|mkv|avi|webm|wav|m4a)$", "", stem, flags=re.IGNORECASE)
    if dataset == "hdtf":
        match = re.fullmatch(r"(.+?)_(\d+)", stem)
        if match:
            return match.group(1)
    return stem


def _split_named_by(path: Path) -> str:
    """The split a one-column list file is for, from its name (``test.txt``, ``hdtf_test_list.txt``, ``val.json``);
    ``test`` when the name says none."""
    words = re.split(r"[^a-z]+", path.stem.lower())
    found = {_SPLIT_NAMES[w] for w in words if w in _SPLIT_NAMES}
    return found.pop() if len(found) == 1 else "test"


def load_split_file(path: str | os.PathLike[str], dataset: str | None = None) -> dict[str, str]:
    """``identity -> split`` from a split file, in any of the forms in use:

    - JSON ``{identity: split}``, or a ``splits.json`` of ``pctalk-data build`` (``dataset``'s entry);
    - text lines ``identity split`` (``#`` comments);
    - a published one-column list (text lines, or a JSON list) of identities or clip names
      (``WDA_BarackObama_000.mp4``, ``M003/video/front/...``): each names its identity, all in the split the file's
      name says (``test.txt``, ``train_list.txt``; ``test`` when it says none).

    Raises:
        ValueError: an unknown split name (the message names the file and the entries).
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        data = json.loads(text)
        if isinstance(data, list):
            mapping = {_identity_of(str(n), dataset): _split_named_by(path) for n in data}
        elif "datasets" in data or (data and all(isinstance(v, dict) for v in data.values())):
            per_dataset = read_splits(path)
            if dataset is None and len(per_dataset) > 1:
                raise ValueError(f"{path} holds the splits of {', '.join(per_dataset)}; say which dataset")
            mapping = per_dataset.get(dataset, {}) if dataset is not None else next(iter(per_dataset.values()), {})
        else:
            mapping = data
    else:
        lines = [line.split() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        if lines and all(len(words) == 1 for words in lines):
            split = _split_named_by(path)
            mapping = {_identity_of(words[0], dataset): split for words in lines}
        else:
            mapping = {words[0]: _SPLIT_NAMES.get(words[1].lower(), words[1]) for words in lines if len(words) >= 2}
    bad = {k: v for k, v in mapping.items() if v not in SPLITS}
    if bad:
        raise ValueError(f"{path}: splits must be one of {SPLITS}; got {bad}")
    return mapping


def assign_splits(
    identities: Iterable[str],
    dataset: str,
    fixed: dict[str, str] | None = None,
    val_fraction: float = 0.05,
    test_fraction: float = 0.1,
) -> dict[str, str]:
    """A split for every identity: ``fixed`` first (a split file), MEAD's test identities for ``mead``, then a
    stable hash of the identity (so every job of an array agrees without talking to the others). A split file that
    names test identities defines the whole test set: no other identity goes to test."""
    fixed = fixed or {}
    test_fixed = "test" in fixed.values()
    out = {}
    for identity in sorted(set(identities)):
        u = _fraction(identity)
        if identity in fixed:
            out[identity] = fixed[identity]
        elif dataset == "aug":
            out[identity] = "train"  # augmented identities only ever train
        elif dataset == "mead" or test_fixed:
            test = identity in MEAD_TEST_IDENTITIES and dataset == "mead" and not test_fixed
            out[identity] = "test" if test else ("val" if u < val_fraction else "train")
        else:
            out[identity] = "test" if u < test_fraction else "val" if u < test_fraction + val_fraction else "train"
    return out


def write_splits(out_dir: str | os.PathLike[str], dataset: str, splits: dict[str, str]) -> Path:
    """Merge ``splits`` into ``out_dir/splits.json`` (versioned, see :mod:`pctalk.data.splits`), atomically."""
    path = Path(out_dir) / SPLITS_FILE
    current = read_splits(path) if path.is_file() else {}
    merged = {**current.get(dataset, {}), **splits}
    conflicts = {
        k: (current[dataset][k], v)
        for k, v in splits.items()
        if k in current.get(dataset, {}) and current[dataset][k] != v
    }
    if conflicts:
        raise ValueError(f"{path} already assigns these identities differently: {conflicts}")
    current[dataset] = dict(sorted(merged.items()))
    document = splits_document(current)
    return atomic_write(path, lambda tmp: tmp.write_text(json.dumps(document, indent=1, ensure_ascii=False)))


def write_test_list(out_dir: str | os.PathLike[str]) -> Path:
    """Write ``out_dir/test_clips.json``: every test-split sample the build's manifests record (all jobs), with
    its raw video, audio and frame range, and the hash of the splits it was cut under."""
    from pctalk.data.writer import read_manifests

    out = Path(out_dir)
    clips = []
    for record in read_manifests(out):
        if record.get("status") != "written" or record.get("split") != "test" or "video" not in record:
            continue
        if not (out / record.get("shard", "")).is_file():
            continue
        dataset, identity, clip = record["key"].split("/", 2)
        clips.append(TestClip(
            key=record["key"], dataset=dataset, identity=record.get("identity", identity),
            clip=record.get("clip_name", clip), video=record["video"],
            audio=record.get("audio"), start_frame=int(record.get("start_frame", 0)), n_frames=int(record["n_frames"]),
            emotion=record.get("emotion", "neutral"), level=int(record.get("level", 0)),
        ))  # fmt: skip
    splits = read_splits(out / SPLITS_FILE) if (out / SPLITS_FILE).is_file() else {}
    document = test_list_document(clips, splits)
    return atomic_write(out / TEST_LIST_FILE,
                        lambda tmp: tmp.write_text(json.dumps(document, indent=1, ensure_ascii=False)))  # fmt: skip
