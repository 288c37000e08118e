"""The ``pctalk-eval`` command (``python -m eval``)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from pctalk.commands import Verb, dispatch

__all__ = ["VERBS", "main"]


def _run():
    from eval.runner import run_command

    return run_command


#: The verbs of ``pctalk-eval``; each evaluation command registers here.
VERBS: dict[str, Verb] = {
    "run": Verb(
        "score methods on the test clips and write the paper's tables (--config experiments/eval/*.yaml)", _run
    ),
}


def main(args: Sequence[str] | None = None) -> int:
    """Run ``pctalk-eval`` with ``args`` (default: ``sys.argv[1:]``); returns the exit status."""
    return dispatch("pctalk-eval", VERBS, list(sys.argv[1:] if args is None else args))
