"""The versioned block every pctalk LAC / EMC checkpoint carries under ``"pctalk"``: what the file is and how to run it.

Written by the training tasks into their Lightning checkpoints, by ``pctalk export`` into release files (and, as an
extra key the official code ignores, into official-layout files). Fields: the format version, the stage (``lac`` or
``emc``), the keypoints predicted (``target`` and their indices), the inference window, the sizes, the number of
speaking styles and each style's identity, and the audio encoder the stage was trained with (its width and the
SHA-256 of its weights, so a release folder's ``audio_encoder.pth`` can be checked against it).

Files older than the block (pctalk 0.1: ``{"predictor_config": ...}`` / ``{"emotion_config": ...}`` in Lightning
checkpoints, ``{"config": ...}`` in release files) are read by :func:`StageInfo.from_legacy`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from pctalk.keypoints.regions import TARGETS
from pctalk.models.config import EmotionConfig, PredictorConfig

__all__ = ["FORMAT_VERSION", "TARGETS", "CheckpointFormatError", "StageInfo", "state_sha256"]

#: The block's version; readers refuse newer ones. 2: the first block (pctalk 0.2).
FORMAT_VERSION = 2


class CheckpointFormatError(ValueError):
    """A file is not a checkpoint of the kind asked for, or of a format this pctalk cannot read."""


def state_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict's content: every key, dtype, shape and the raw bytes, in key order (independent of
    how the file was pickled, so the same weights always hash alike)."""
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def _counts(block: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    return {str(k): {n: int(c) for n, c in dict(v).items()} for k, v in dict(block).items()}


@dataclass
class StageInfo:
    """The ``"pctalk"`` block of a LAC or EMC checkpoint."""

    kind: Literal["lac", "emc"]
    n_styles: int
    """Speaking styles (training identities) of the one-hot style code."""
    predictor: PredictorConfig
    """The sizes (an :class:`EmotionConfig` for EMC)."""
    audio_dim: int = 512
    """Width of the audio features the stage reads."""
    target: Literal["lips", "all"] = "lips"
    """LAC: the six lip keypoints or all 21 (Table 3's "no lip keypoints"); EMC always predicts all 21."""
    window: int = 25
    """Frames per inference window (overlap: a fifth of it)."""
    styles: dict[str, str] = field(default_factory=dict)
    """Style id (as a string) -> the identity it was learned from (``dataset/identity``)."""
    style_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    """Style id (as a string) -> ``{"clips", "frames"}`` of training data it was learned from (empty: not recorded,
    files written before pctalk 0.3)."""
    audio_encoder: dict[str, Any] = field(default_factory=dict)
    """``sha256`` of the encoder's weights, its ``width`` (1 = the published encoder) and the ``file`` it was
    loaded from when it was frozen (``None`` when trained with the stage)."""
    sources: list[str] = field(default_factory=list)
    """EMC: the learned emotion sources stored with the predictor (``video``, ``audio``, ``text``)."""
    source_folders: dict[str, str] = field(default_factory=dict)
    """EMC: the folders of the audio and text sources' frozen backbones."""
    training: dict[str, Any] = field(default_factory=dict)
    """How it was trained (:meth:`pctalk.tasks.BaseTask.training_record`: task, steps, epochs, seed, settings,
    data, validation figures, pretrained files by SHA-256); empty for files that do not record it."""
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.kind not in ("lac", "emc"):
            raise CheckpointFormatError(f"unknown stage kind {self.kind!r} (expected 'lac' or 'emc')")
        if self.target not in TARGETS:
            raise CheckpointFormatError(f"unknown target {self.target!r} (expected one of {', '.join(TARGETS)})")
        if self.kind == "emc":
            self.target = "all"
            if not isinstance(self.predictor, EmotionConfig):
                self.predictor = EmotionConfig.from_dict(self.predictor.to_dict())

    @property
    def keypoints(self) -> tuple[int, ...]:
        """The keypoint indices predicted, in output order."""
        return TARGETS[self.target]

    @property
    def out_dim(self) -> int:
        return 3 * len(self.keypoints)

    def style_name(self, style_id: int) -> str:
        return self.styles.get(str(style_id), f"style {style_id}")

    def style_id(self, style: str | int) -> int:
        """The id of a style given by id (``3``, ``"3"``), by ``dataset/identity`` or by identity alone (when one
        dataset has it); ``-1`` / ``"mean"``: the mean of every style.

        Raises:
            ValueError: no such style, or an identity several datasets share; the message lists the styles.
        """
        text = str(style).strip()
        if text in ("-1", "mean"):
            return -1
        if text.lstrip("-").isdigit():
            k = int(text)
            if not 0 <= k < self.n_styles:
                raise ValueError(f"style {k} does not exist: this checkpoint has styles 0..{self.n_styles - 1}")
            return k
        names = {k: [n.strip() for n in name.split("|")] for k, name in self.styles.items()}
        exact = [k for k, ns in names.items() if text in ns]
        short = [k for k, ns in names.items() if any(n.split("/", 1)[-1] == text for n in ns)]
        found = exact or short
        if len(found) == 1:
            return int(found[0])
        known = ", ".join(f"{k} {name}" for k, name in self.styles.items()) or "none recorded"
        if found:
            raise ValueError(f"style {text!r} is ambiguous ({', '.join(self.styles[k] for k in found)}): give "
                             f"dataset/identity or the id")  # fmt: skip
        raise ValueError(f"no speaking style {text!r} in this checkpoint; its styles: {known} (pctalk styles FILE)")

    def to_dict(self) -> dict[str, Any]:
        """Plain containers only (loadable with ``torch.load(weights_only=True)`` and as JSON)."""
        return {
            "format_version": self.format_version,
            "kind": self.kind,
            "target": self.target,
            "keypoints": list(self.keypoints),
            "window": int(self.window),
            "n_styles": int(self.n_styles),
            "audio_dim": int(self.audio_dim),
            "predictor": self.predictor.to_dict(),
            "styles": dict(self.styles),
            "style_counts": {k: dict(v) for k, v in self.style_counts.items()},
            "audio_encoder": dict(self.audio_encoder),
            "sources": list(self.sources),
            "source_folders": dict(self.source_folders),
            "training": dict(self.training),
        }

    @classmethod
    def from_dict(cls, block: Mapping[str, Any], source: str | os.PathLike[str]) -> StageInfo:
        """Read a block; a newer format version or a malformed block is refused with what to do."""
        if not isinstance(block, Mapping) or "format_version" not in block:
            raise CheckpointFormatError(f"{source}: its 'pctalk' entry is not a pctalk checkpoint block")
        version = block["format_version"]
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise CheckpointFormatError(
                f"{source} was written by a newer pctalk (checkpoint format {version}; this pctalk reads formats up to "
                f"{FORMAT_VERSION}). Upgrade pctalk (pip install -U pctalk, or git pull and make install) to read it."
            )
        try:
            kind = block["kind"]
            config_cls = EmotionConfig if kind == "emc" else PredictorConfig
            info = cls(
                kind=kind,
                n_styles=int(block["n_styles"]),
                predictor=config_cls.from_dict(block["predictor"]),
                audio_dim=int(block.get("audio_dim", 512)),
                target=block.get("target", "lips"),
                window=int(block.get("window", 25)),
                styles={str(k): str(v) for k, v in dict(block.get("styles", {})).items()},
                style_counts=_counts(block.get("style_counts", {})),
                audio_encoder=dict(block.get("audio_encoder", {})),
                sources=list(block.get("sources", [])),
                source_folders=dict(block.get("source_folders", {})),
                training=dict(block.get("training", {})),
                format_version=version,
            )
        except (KeyError, TypeError) as err:
            raise CheckpointFormatError(
                f"{source}: its pctalk block is incomplete ({err!r} is missing or wrong)"
            ) from err
        if "keypoints" in block and tuple(block["keypoints"]) != info.keypoints:
            raise CheckpointFormatError(
                f"{source}: its block says target {info.target!r} but lists keypoints {list(block['keypoints'])}"
            )
        return info

    @classmethod
    def from_legacy(cls, kind: str, config: Mapping[str, Any], sources: list[str] | None = None) -> StageInfo:
        """The block of a pctalk 0.1 file from its size record (``predictor_config`` / ``emotion_config`` /
        ``config``): the target follows from the output width; EMC used the encoder conditioning."""
        if kind == "lac":
            out_dim = int(config.get("out_dim", 18))
            target = {18: "lips", 63: "all"}.get(out_dim)
            if target is None:
                raise CheckpointFormatError(
                    f"a LAC predicting {out_dim} values per frame is neither lips (18) nor all (63)"
                )
            return cls(
                kind="lac",
                n_styles=int(config["n_styles"]),
                predictor=PredictorConfig.from_dict(config),
                audio_dim=int(config.get("audio_dim", 512)),
                target=target,
            )
        emotion = EmotionConfig.from_dict({**config, "conditioning": "encoder", "style_bias": False})
        return cls(
            kind="emc",
            n_styles=int(config["n_styles"]),
            predictor=emotion,
            audio_dim=int(config.get("audio_dim", 512)),
            sources=[s for s in (sources or []) if s != "label"],
        )
