"""``SpeakingStyleTask``: train the speaking-style encoder as an identity classifier on the shards' lip deformations
(the paper's future work; the official release's style encoder for a frozen LAC)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from pctalk.models.config import StyleEncoderConfig, config_from
from pctalk.models.style_encoder import SpeakingStyleEncoder
from pctalk.tasks.base import BaseTask

__all__ = ["STYLE_BLOCK", "SpeakingStyleTask"]

#: The checkpoint entry that says what a style-encoder file is (read by :mod:`pctalk.checkpoints.style_encoder`).
STYLE_BLOCK = "pctalk_style_encoder"


class SpeakingStyleTask(BaseTask):
    """A clip's lip deformations ``(B, T, 6, 3)`` -> which training identity speaks (cross-entropy over the LAC's
    ``n_styles``); clips of identities without a style (validation and test speakers) are left out of the loss.

    Args:
        n_styles: the speaking styles of the LAC the codes will feed (its training identities, same numbering).
        encoder: the encoder's sizes (official: d 512, 2 layers, 4 heads, FF 1024, period 100).
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
    """

    def __init__(
        self,
        n_styles: int,
        encoder: StyleEncoderConfig = StyleEncoderConfig(),  # noqa: B008 - frozen: a shared default is safe
        lr: float = 1e-4,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(lr=lr, weight_decay=weight_decay)

    def configure_models(self) -> None:
        self.config = config_from(StyleEncoderConfig, self.hparams.get("encoder"))
        self.encoder = SpeakingStyleEncoder(self.hparams["n_styles"], 18, self.config)

    def _step(self, batch: dict[str, Any], stage: str) -> torch.Tensor | None:
        style, mask = batch["style"].long(), batch["mask"].bool()
        known = style >= 0
        if stage == "train" and not known.any():
            return None
        logits = self.encoder(batch["target"], mask)
        if (style >= self.encoder.n_styles).any():
            raise ValueError(f"style id {int(style.max())} is beyond n_styles={self.encoder.n_styles}: give the "
                             f"number of styles of the shards (--model.init_args.n_styles)")  # fmt: skip
        if not known.any():
            return None
        loss = F.cross_entropy(logits[known], style[known])
        accuracy = (logits[known].argmax(-1) == style[known]).float().mean()
        n = int(known.sum())
        self.log_dict({f"{stage}/loss": loss, f"{stage}/accuracy": accuracy}, batch_size=n, prog_bar=stage == "train",
                      sync_dist=stage == "val")  # fmt: skip
        return loss

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._step(batch, "val")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[STYLE_BLOCK] = {
            "format_version": 1,
            "n_styles": int(self.encoder.n_styles),
            "in_dim": int(self.encoder.in_dim),
            "encoder": self.config.to_dict(),
            "styles": self.data_styles(),
            "training": self.training_record(),
        }
