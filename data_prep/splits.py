"""Identity-disjoint train / val / test splits, written next to the shards (``splits.json``) and re-used by eval."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

from pctalk.data.schema import SPLITS
from pctalk.weights.io import atomic_write

__all__ = ["MEAD_TEST_IDENTITIES", "assign_splits", "load_split_file", "write_splits"]

#: MEAD identities held out for testing by default.
MEAD_TEST_IDENTITIES = ("M003", "M030", "W009", "W015")


def _fraction(identity: str) -> float:
    """A stable pseudo-random number in [0, 1) for an identity."""
    return int(hashlib.sha1(identity.encode()).hexdigest()[:8], 16) / 2**32


def load_split_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """``identity -> split`` from a JSON object, or a text file of ``identity split`` lines."""
    path = Path(path)
    text = path.read_text()
    if path.suffix == ".json":
        mapping = json.loads(text)
    else:
        mapping = dict(line.split()[:2] for line in text.splitlines() if line.strip() and not line.startswith("#"))
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
    stable hash of the identity (so every job of an array agrees without talking to the others)."""
    fixed = fixed or {}
    out = {}
    for identity in sorted(set(identities)):
        if identity in fixed:
            out[identity] = fixed[identity]
        elif dataset == "mead":
            out[identity] = (
                "test"
                if identity in MEAD_TEST_IDENTITIES
                else ("val" if _fraction(identity) < val_fraction else "train")
            )
        elif dataset == "aug":
            out[identity] = "train"  # augmented identities only ever train
        else:
            u = _fraction(identity)
            out[identity] = "test" if u < test_fraction else "val" if u < test_fraction + val_fraction else "train"
    return out


def write_splits(out_dir: str | os.PathLike[str], dataset: str, splits: dict[str, str]) -> Path:
    """Merge ``splits`` into ``out_dir/splits.json`` (``{dataset: {identity: split}}``), atomically."""
    path = Path(out_dir) / "splits.json"
    current = json.loads(path.read_text()) if path.is_file() else {}
    merged = {**current.get(dataset, {}), **splits}
    conflicts = {
        k: (current[dataset][k], v)
        for k, v in splits.items()
        if k in current.get(dataset, {}) and current[dataset][k] != v
    }
    if conflicts:
        raise ValueError(f"{path} already assigns these identities differently: {conflicts}")
    current[dataset] = dict(sorted(merged.items()))
    return atomic_write(path, lambda tmp: tmp.write_text(json.dumps(current, indent=1)))
