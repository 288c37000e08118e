"""``pctalk-data synth``: write the offline synthetic corpus (see :mod:`pctalk.data.synthetic`)."""

from __future__ import annotations

from pathlib import Path

from pctalk.data.synthetic import synth

__all__ = ["synth_command"]


def synth_command(
    out: Path, clips: int = 64, identities: int = 8, seed: int = 0, neutral_fraction: float = 0.5, progress: bool = True
) -> int:
    """Make the offline synthetic corpus (real eSpeak speech, invented motion) for smoke tests and the quickstart.

    Args:
        out: the shard folder.
        clips: number of clips.
        identities: number of identities (the last is test, the one before val, the rest train; one is a cat).
        seed: random seed; the corpus is deterministic given it.
        neutral_fraction: share of neutral clips; the others cycle through MEAD's emotions at levels 1-3.
        progress: show a progress bar.
    """
    return synth(out, clips, identities, seed, neutral_fraction, progress)
