"""The ``pctalk-data`` command (``python -m data_prep``)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from pctalk.commands import Verb, dispatch

__all__ = ["VERBS", "main"]


def _build():
    from data_prep.build import build_command

    return build_command


def _synth():
    from data_prep.synth import synth_command

    return synth_command


def _inspect():
    from data_prep.inspect_shards import inspect_command

    return inspect_command


def _augment():
    from data_prep.augment import augment_command

    return augment_command


def _pose_templates():
    from data_prep.pose_templates import pose_templates_command

    return pose_templates_command


#: The verbs of ``pctalk-data``; each data preparation stage registers here.
VERBS: dict[str, Verb] = {
    "build": Verb("raw HDTF / MEAD / augmented / folder clips -> WebDataset shards", _build),
    "augment": Verb("new identities by LivePortrait reenactment with HDTF train drivers, SyncNet-filtered", _augment),
    "inspect": Verb("counts per split / dataset / emotion, hours, and a decode check of every sample", _inspect),
    "pose-templates": Verb("head-pose templates from real clips, for image-driven generation", _pose_templates),
    "synth": Verb("the offline synthetic corpus (real speech, invented motion) for tests and the quickstart", _synth),
}


def main(args: Sequence[str] | None = None) -> int:
    """Run ``pctalk-data`` with ``args`` (default: ``sys.argv[1:]``); returns the exit status."""
    return dispatch("pctalk-data", VERBS, list(sys.argv[1:] if args is None else args))
