"""``pctalk weights``: inspect the pretrained files under a weights root."""

from __future__ import annotations

import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from pctalk.weights.registry import check as check_root
from pctalk.weights.registry import default_root, missing_message

__all__ = ["check"]


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def check(root: Path | None = None, strict: bool = False) -> int:
    """Print every pretrained file pctalk can use: expected path, origin, presence, size, and which commands need it.

    Args:
        root: the weights root (default: $PCTALK_WEIGHTS, else ./pretrained_weights).
        strict: exit with status 1 when any file is missing.
    """
    root = default_root() if root is None else Path(root)
    if not root.is_dir():
        print(
            f"pctalk weights check: error: the weights root {root} does not exist (give --root, or set "
            f"$PCTALK_WEIGHTS); download the files there as the README's 'Pretrained weights' table shows",
            file=sys.stderr,
        )
        return 2
    statuses = check_root(root)
    table = Table(title=f"pretrained files under {root}", show_lines=False)
    for column in ("file", "expected path", "present", "size", "needed by", "origin"):
        table.add_column(column, overflow="fold")
    for s in statuses:
        table.add_row(
            s.entry.name,
            str(s.path),
            "[green]yes[/green]" if s.present else "[red]empty (0 bytes)[/red]" if s.empty else "[red]missing[/red]",
            _size(s.size) if s.present else "-",
            ", ".join(s.entry.used_by),
            s.entry.origin,
        )
    console = Console(width=200)
    console.print(table)
    missing = [s for s in statuses if not s.present]
    console.print(f"{len(statuses) - len(missing)} of {len(statuses)} files present under {root}.")
    if missing and strict:
        for s in missing:
            console.print(missing_message(s.entry, root), markup=False)
        return 1
    return 0
