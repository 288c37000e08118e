"""The speaking styles a LAC / EMC checkpoint was trained with: ``pctalk styles CHECKPOINT`` prints them (id,
identity, dataset, training clips and hours), and ``pctalk generate --style NAME`` picks one by name
(:meth:`pctalk.checkpoints.info.StageInfo.style_id`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pctalk.checkpoints.info import StageInfo

__all__ = ["style_rows", "styles_command", "styles_table"]


def style_rows(info: StageInfo) -> list[dict[str, Any]]:
    """One row per style id ``0 … n_styles − 1``: ``id``, ``identity``, ``dataset``, ``clips`` and ``hours`` of
    training data (``None`` where the checkpoint does not record them)."""
    rows = []
    for k in range(info.n_styles):
        name = info.styles.get(str(k))
        counts = info.style_counts.get(str(k), {})
        datasets, identities = [], []
        for part in name.split("|") if name else []:
            dataset, _, identity = part.strip().partition("/")
            datasets.append(dataset)
            identities.append(identity or dataset)
        frames = counts.get("frames")
        rows.append({
            "id": k,
            "identity": " | ".join(identities) or None,
            "dataset": " | ".join(dict.fromkeys(datasets)) or None,
            "clips": counts.get("clips"),
            "hours": None if frames is None else frames / 25 / 3600,
        })  # fmt: skip
    return rows


def styles_table(info: StageInfo) -> str:
    """The styles as a fixed-width text table."""
    header = ("id", "identity", "dataset", "clips", "hours")
    body = [
        (str(r["id"]), r["identity"] or "?", r["dataset"] or "?", "?" if r["clips"] is None else str(r["clips"]),
         "?" if r["hours"] is None else f"{r['hours']:.2f}")
        for r in style_rows(info)
    ]  # fmt: skip
    widths = [max(len(h), *(len(row[i]) for row in body)) if body else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in body]
    return "\n".join(line.rstrip() for line in lines)


def styles_command(checkpoint: Path) -> int:
    """The speaking styles of a LAC or EMC checkpoint: id, identity, dataset, training clips and hours.

    Args:
        checkpoint: a checkpoint of `pctalk fit` (.ckpt), or a lac.pth / emc.pth of pctalk or the official release.
    """
    from pctalk.checkpoints.stages import load_stage, read

    found = read(checkpoint)
    info = found.info if found.info is not None else load_stage(checkpoint).info
    print(f"{checkpoint}: {info.kind.upper()}, {info.n_styles} speaking styles")
    print(styles_table(info))
    if not info.styles:
        print("(this file records no identity names: it was trained before pctalk 0.2, or is an official release "
              "file; use --style-id N)")  # fmt: skip
    return 0


styles_command.positional = True  # type: ignore[attr-defined]  # pctalk styles CHECKPOINT
