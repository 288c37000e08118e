"""Speaking-style encoder files: the Lightning checkpoints of :class:`pctalk.tasks.style.SpeakingStyleTask` (their
``"pctalk_style_encoder"`` entry says what they are), read into a :class:`SpeakingStyleEncoder` in eval mode."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pctalk.checkpoints.info import CheckpointFormatError
from pctalk.models.config import StyleEncoderConfig
from pctalk.models.style_encoder import SpeakingStyleEncoder
from pctalk.weights.io import load_checkpoint, load_state_dict_strict, strip_prefix

__all__ = ["load_style_encoder"]


def load_style_encoder(path: str | os.PathLike[str]) -> tuple[SpeakingStyleEncoder, dict[str, Any]]:
    """The encoder in eval mode and its block (``n_styles``, sizes, ``styles``: id -> identity, training record).

    Raises:
        CheckpointFormatError: the file is not a style-encoder checkpoint, or of a newer format.
    """
    from pctalk.tasks.style import STYLE_BLOCK

    path = Path(path)
    obj = load_checkpoint(path)
    block = obj.get(STYLE_BLOCK) if isinstance(obj, dict) else None
    if not isinstance(block, dict) or "state_dict" not in obj:
        raise CheckpointFormatError(
            f"{path} is not a speaking-style encoder checkpoint (train one with pctalk fit -c "
            f"experiments/lac/style_encoder.yaml); a LAC or EMC file goes to --lac / --emc"
        )
    if int(block.get("format_version", 0)) > 1:
        raise CheckpointFormatError(f"{path} was written by a newer pctalk (style encoder format "
                                    f"{block['format_version']}); upgrade pctalk to read it")  # fmt: skip
    encoder = SpeakingStyleEncoder(int(block["n_styles"]), int(block.get("in_dim", 18)),
                                   StyleEncoderConfig.from_dict(block.get("encoder", {})))  # fmt: skip
    load_state_dict_strict(encoder, strip_prefix(obj["state_dict"], "encoder."), source=path)
    return encoder.eval(), block
