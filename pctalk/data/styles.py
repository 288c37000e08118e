"""The speaking-style map written with the shards: style id -> the identity it was learned from.

A clip's ``style_id`` (:class:`~pctalk.data.schema.ClipMeta`) is its identity's index among its dataset's training
identities, after the styles of the shard folders given to ``pctalk-data build --styles-from`` (so that datasets
trained together never share an id); an augmented clip (``pctalk-data augment``) carries its driver's style, under
the driver's name. ``pctalk-data build`` and ``synth`` write the map as ``styles.json`` beside ``splits.json``; training
tasks store it in their checkpoints (:mod:`pctalk.checkpoints`), so a style can be named rather than guessed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from pctalk.data.splits import read_splits
from pctalk.weights.io import atomic_write

__all__ = ["number_styles", "read_styles", "write_styles"]

STYLES_FILE = "styles.json"


def write_styles(out_dir: str | os.PathLike[str], dataset: str, style_ids: Mapping[str, int]) -> Path:
    """Set ``dataset``'s entry of ``out_dir/styles.json`` (``{dataset: {"<style id>": identity}}``) to the identities
    that have a style (``style_ids`` maps identity -> id, -1 for none)."""
    path = Path(out_dir) / STYLES_FILE
    current = json.loads(path.read_text()) if path.is_file() else {}
    current[dataset] = {str(i): identity for identity, i in sorted(style_ids.items(), key=lambda kv: kv[1]) if i >= 0}
    return atomic_write(path, lambda tmp: tmp.write_text(json.dumps(current, indent=1, ensure_ascii=False)))


def read_styles(root: str | os.PathLike[str]) -> dict[str, str]:
    """Style id -> ``dataset/identity`` for a shard folder: from ``styles.json``, else derived from ``splits.json``
    (each dataset's training identities in sorted order, as the build numbers them), else empty. An id several
    datasets use lists them all, separated by `` | ``."""
    root = Path(root)
    if (root / STYLES_FILE).is_file():
        per_dataset = json.loads((root / STYLES_FILE).read_text())
    elif (root / "splits.json").is_file():
        per_dataset = {
            dataset: {str(k): i for k, i in enumerate(sorted(i for i, s in splits.items() if s == "train"))}
            for dataset, splits in read_splits(root / "splits.json").items()
        }
    else:
        return {}
    styles: dict[str, str] = {}
    for dataset, ids in per_dataset.items():
        for k, identity in ids.items():
            name = f"{dataset}/{identity}"
            styles[k] = f"{styles[k]} | {name}" if k in styles else name
    return dict(sorted(styles.items(), key=lambda kv: int(kv[0])))


def number_styles(
    dataset: str, train_identities: list[str], identities: list[str], after: Mapping[str, str] | None = None
) -> dict[str, int]:
    """Identity -> style id: training identities numbered in order after the largest id of ``after`` (style id ->
    ``dataset/identity``, e.g. another shard folder's :func:`read_styles`), keeping the id ``after`` already gives an
    identity; -1 for the others."""
    after = dict(after or {})
    known = {name: int(k) for k, name in after.items()}
    next_id = max((int(k) for k in after), default=-1) + 1
    out = {}
    for identity in identities:
        if identity not in train_identities:
            out[identity] = -1
        elif f"{dataset}/{identity}" in known:
            out[identity] = known[f"{dataset}/{identity}"]
        else:
            out[identity], next_id = next_id, next_id + 1
    return out
