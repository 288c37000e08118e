"""``pctalk-data inspect``: what a shard folder holds, and a check that every sample decodes."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import webdataset as wds

from pctalk.data.schema import SchemaError, decode_sample

__all__ = ["inspect_command", "inspect_shards"]


def inspect_shards(shards: str | os.PathLike[str]) -> dict:
    """Counts per split, dataset and emotion, total hours, and the samples that failed to decode (with why)."""
    folder = Path(shards)
    urls = sorted(str(p) for p in folder.glob("*.tar"))
    if not urls:
        raise FileNotFoundError(f"no .tar shards in {folder}")
    counts: dict[str, Counter] = {"split": Counter(), "dataset": Counter(), "emotion": Counter()}
    frames: Counter = Counter()
    identities: dict[str, set] = {}
    failures: list[tuple[str, str]] = []
    for sample in wds.WebDataset(urls, shardshuffle=False, empty_check=False, handler=wds.warn_and_continue):
        try:
            clip = decode_sample(sample)
        except (SchemaError, ValueError, KeyError, OSError) as err:
            failures.append((sample.get("__key__", "?"), str(err)))
            continue
        meta = clip.meta
        counts["split"][meta.split] += 1
        counts["dataset"][meta.dataset] += 1
        counts["emotion"][meta.emotion] += 1
        frames[meta.split] += meta.n_frames
        identities.setdefault(meta.split, set()).add((meta.dataset, meta.identity))
    return {
        "shards": len(urls),
        "counts": counts,
        "hours": {split: n / 25 / 3600 for split, n in frames.items()},
        "identities": {split: len(ids) for split, ids in identities.items()},
        "failures": failures,
    }


def inspect_command(shards: Path) -> int:
    """Count clips per split, dataset and emotion, total hours and identities, and check every sample decodes.

    Args:
        shards: the shard folder.
    """
    from rich.console import Console
    from rich.table import Table

    report = inspect_shards(shards)
    console = Console()
    table = Table(title=f"{shards}: {report['shards']} shards")
    table.add_column("split")
    table.add_column("clips", justify="right")
    table.add_column("identities", justify="right")
    table.add_column("hours", justify="right")
    for split, n in sorted(report["counts"]["split"].items()):
        table.add_row(split, str(n), str(report["identities"][split]), f"{report['hours'][split]:.3f}")
    console.print(table)
    for name in ("dataset", "emotion"):
        console.print(f"{name}: " + ", ".join(f"{k} {v}" for k, v in sorted(report["counts"][name].items())))
    if report["failures"]:
        for key, why in report["failures"][:20]:
            console.print(f"[red]does not decode[/red] {key}: {why}", markup=True)
        console.print(f"{len(report['failures'])} samples do not decode")
        return 1
    console.print("every sample decodes")
    return 0


inspect_command.positional = True  # pctalk-data inspect SHARDS
