"""The one loader for every ``.pth`` pctalk reads, atomic saving, and strict state-dict loading with clear errors."""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = [
    "CheckpointKeyError",
    "UnsafeCheckpointError",
    "atomic_write",
    "file_sha256",
    "load_checkpoint",
    "load_state_dict_strict",
    "save_checkpoint",
    "strip_prefix",
]


class UnsafeCheckpointError(RuntimeError):
    """The file holds pickled Python objects (code), which pctalk refuses to execute."""


class CheckpointKeyError(RuntimeError):
    """A state dict does not match the network it is loaded into."""


def load_checkpoint(
    path: str | os.PathLike[str],
    map_location: str | torch.device = "cpu",
    safe_globals: Sequence[type] = (),
    mmap: bool = False,
) -> Any:
    """Load a checkpoint with ``torch.load(..., weights_only=True)``.

    Only tensors and plain containers are accepted: a file that needs arbitrary unpickling (code, custom classes)
    is refused, since loading it could run anything. ``safe_globals`` allows a few plain data classes more (e.g.
    ``argparse.Namespace``, which some published checkpoints hold). ``mmap`` maps the tensors instead of reading them
    (a cheap check of a large file).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        UnsafeCheckpointError: the file holds pickled objects other than tensors and plain containers.
        RuntimeError: the file is not a readable torch checkpoint (truncated or another format).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        with torch.serialization.safe_globals(list(safe_globals)):
            return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        raise UnsafeCheckpointError(
            f"refusing to load {path}: it contains pickled Python objects, not only tensors and plain containers, "
            f"and unpickling them could execute arbitrary code. pctalk loads every checkpoint with "
            f"torch.load(weights_only=True). If you trust the file, re-save only its state_dict "
            f"(torch.save(model.state_dict(), ...)) with the code that made it. Details: {err}"
        ) from err
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise RuntimeError(
            f"cannot read checkpoint {path}: {err}. The file may be truncated or not a PyTorch checkpoint; "
            f"download it again."
        ) from err


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike[str], write: Any) -> Path:
    """Call ``write(tmp_path)`` then rename the temporary file onto ``path``, so ``path`` is never half-written. The
    file gets the permissions the user's umask gives a new file (as ``open`` would), not the temporary file's 0600,
    so others on a shared cluster can read what the umask lets them."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_checkpoint(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def strip_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Remove ``prefix`` from every key that starts with it (e.g. DDP's ``module.``)."""
    n = len(prefix)
    return {(k[n:] if k.startswith(prefix) else k): v for k, v in state_dict.items()}


def load_state_dict_strict(
    module: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str | os.PathLike[str]
) -> nn.Module:
    """Load ``state_dict`` into ``module`` strictly; on mismatch list the first offending keys and shapes.

    Raises:
        CheckpointKeyError: keys are missing or unexpected, or a tensor's shape differs; the message names
            ``source`` and the first offending keys.
    """
    expected = module.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f"{k}: file {tuple(state_dict[k].shape)} vs network {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (first: {', '.join(missing[:5])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (first: {', '.join(unexpected[:5])})")
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatches (first: {'; '.join(mismatched[:5])})")
        raise CheckpointKeyError(
            f"{source} does not fit {type(module).__name__}: {'; '.join(parts)}. "
            f"Check that the file is the right one for this network and that the network's size config matches it."
        )
    module.load_state_dict(state_dict, strict=True)
    return module
