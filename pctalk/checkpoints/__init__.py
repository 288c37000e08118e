"""Every checkpoint format of the trained stages, in one place (the only code that decides what a file is).

- :mod:`pctalk.checkpoints.info`: the versioned ``"pctalk"`` block each LAC / EMC checkpoint carries.
- :mod:`pctalk.checkpoints.official`: the official PC-Talk release's layout, as pure state-dict conversions.
- :mod:`pctalk.checkpoints.stages`: reading any format into a :class:`LACStage` / :class:`EMCStage`, and writing
  release folders in pctalk's or the official layout (``pctalk export``).
"""

from pctalk.checkpoints.info import FORMAT_VERSION, TARGETS, CheckpointFormatError, StageInfo, state_sha256
from pctalk.checkpoints.stages import (
    AUDIO_ENCODER_FILE,
    EMCStage,
    LACStage,
    export,
    load_emc_stage,
    load_lac_stage,
    load_stage,
    read,
    save_release,
    to_device,
)

__all__ = [
    "AUDIO_ENCODER_FILE",
    "FORMAT_VERSION",
    "TARGETS",
    "CheckpointFormatError",
    "EMCStage",
    "LACStage",
    "StageInfo",
    "export",
    "load_emc_stage",
    "load_lac_stage",
    "load_stage",
    "read",
    "save_release",
    "state_sha256",
    "to_device",
]
