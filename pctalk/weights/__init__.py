"""Pretrained files: the registry of what pctalk can use, and the one safe loader for all of them."""

from pctalk.weights.io import (
    CheckpointKeyError,
    UnsafeCheckpointError,
    atomic_write,
    load_checkpoint,
    load_state_dict_strict,
    save_checkpoint,
    strip_prefix,
)
from pctalk.weights.registry import (
    REGISTRY,
    MissingWeightsError,
    PretrainedFile,
    check,
    default_root,
    resolve,
)

__all__ = [
    "REGISTRY",
    "CheckpointKeyError",
    "MissingWeightsError",
    "PretrainedFile",
    "UnsafeCheckpointError",
    "atomic_write",
    "check",
    "default_root",
    "load_checkpoint",
    "load_state_dict_strict",
    "resolve",
    "save_checkpoint",
    "strip_prefix",
]
