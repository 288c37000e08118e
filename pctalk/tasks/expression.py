"""``ExpressionTask``: train LAC's expression predictor (L1 on the lip deformation plus a velocity L1)."""

from __future__ import annotations

from typing import Any, Literal

import torch

from pctalk.audio.encoder import AudioEncoder, load_audio_encoder
from pctalk.checkpoints.info import StageInfo, state_sha256
from pctalk.data.examples import lip_deformation
from pctalk.data.schema import Clip
from pctalk.keypoints.regions import LIPS, TARGETS
from pctalk.models.config import PredictorConfig, config_from
from pctalk.models.expression_predictor import ExpressionPredictor
from pctalk.tasks.base import BaseTask
from pctalk.tasks.losses import lip_vertex_error, masked_l1, velocity_l1

__all__ = ["ExpressionTask", "audio_features", "check_stored_features"]


def check_stored_features(batch: dict[str, Any], encoder: torch.nn.Module) -> None:
    """Refuse stored features that ``encoder`` did not make: an encoder trained from scratch (it would never see its
    own input, DDP refuses its unused parameters, and the checkpoint would pair the predictor with it), or a
    pretrained one whose weights differ from those the shards were built with (``audio_feat_sha256``)."""
    if any(p.requires_grad for p in encoder.parameters()):
        raise ValueError(
            "the shards hold stored audio features (built with --audio-features), but this model trains its own audio "
            "encoder from scratch (model.audio_encoder is unset): the predictor would learn from features its own "
            "encoder never makes. Give --model.init_args.audio_encoder FILE (the encoder the shards were built with), "
            "or read mel windows with --data.init_args.audio mel."
        )
    built_with = {sha for sha in batch.get("audio_feat_sha256", []) if sha}
    if built_with:
        from pctalk.checkpoints.info import state_sha256

        mine = getattr(encoder, "_pctalk_sha256", None) or state_sha256(encoder.state_dict())
        encoder._pctalk_sha256 = mine  # frozen: hashed once
        if built_with - {mine}:
            raise ValueError(
                f"the shards' audio features were made by an audio encoder with weights SHA-256 "
                f"{sorted(built_with)[0][:12]}..., not by model.audio_encoder ({mine[:12]}...): give the encoder file "
                f"the shards were built with, or read mel windows with --data.init_args.audio mel"
            )


def audio_features(batch: dict[str, Any], encoder: torch.nn.Module) -> torch.Tensor:
    """``(B, T, A)`` audio features: the batch's stored ones (checked against ``encoder``: see
    :func:`check_stored_features`), or ``encoder`` over its mel windows ``(B, T, 1, 80, 16)``."""
    if "audio_feat" in batch:
        check_stored_features(batch, encoder)
        return batch["audio_feat"]
    mel = batch["mel"]
    b, t = mel.shape[:2]
    return encoder(mel.flatten(0, 1)).view(b, t, -1)


class ExpressionTask(BaseTask):
    """Audio + speaking style -> lip deformation ``D = s * exp[LIPS]`` (or all 21 keypoints).

    Args:
        n_styles: speaking styles (training identities) of the one-hot style code.
        target: ``lips`` (18 values per frame, the paper's) or ``all`` keypoints (63, Table 3's "no lip keypoints");
            ``pctalk fit`` gives it to the data module.
        predictor: the decoder's sizes (paper: d 512, 1 layer, 4 heads, FF 1024, period 25, dropout 0.1).
        audio_encoder: path of a pretrained audio encoder (SyncTalk's ``audio_visual_encoder.pth`` or any layout
            ``load_audio_encoder`` reads), kept frozen; ``None`` trains one from scratch with the predictor.
        audio_encoder_width: width of the encoder trained from scratch (1 = the published size).
        velocity_weight: weight of the velocity L1.
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
    """

    def __init__(
        self,
        n_styles: int,
        target: Literal["lips", "all"] = "lips",
        predictor: PredictorConfig = PredictorConfig(),  # noqa: B008 - frozen: a shared default is safe
        audio_encoder: str | None = None,
        audio_encoder_width: float = 1.0,
        velocity_weight: float = 1.0,
        lr: float = 1e-4,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(lr=lr, weight_decay=weight_decay)

    def configure_models(self) -> None:
        hp = self.hparams
        self.target = hp.get("target", "lips")
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {', '.join(TARGETS)}, got {self.target!r}")
        self.frozen_audio = hp["audio_encoder"] is not None
        if self.frozen_audio:
            self.audio_encoder = load_audio_encoder(hp["audio_encoder"]).requires_grad_(False)
        else:
            self.audio_encoder = AudioEncoder(hp.get("audio_encoder_width", 1.0))
        self.config = config_from(PredictorConfig, hp.get("predictor"))
        out_dim = 3 * len(TARGETS[self.target])
        self.predictor = ExpressionPredictor(hp["n_styles"], out_dim, self.audio_encoder.out_dim, self.config)

    def stage_info(self) -> StageInfo:
        """The checkpoint block (:mod:`pctalk.checkpoints`) of the stage being trained."""
        encoder = {"width": self.hparams.get("audio_encoder_width", 1.0), "file": self.hparams.get("audio_encoder")}
        encoder["sha256"] = state_sha256(self.audio_encoder.state_dict())
        return StageInfo(
            "lac", self.hparams["n_styles"], self.config, self.audio_encoder.out_dim, self.target,
            window=self.config.period, styles=self.data_styles(), style_counts=self.data_style_counts(),
            audio_encoder=encoder,
        )  # fmt: skip

    def sample(self, clip: Clip) -> dict[str, torch.Tensor]:
        """A whole clip predicted autoregressively (for :class:`~pctalk.tasks.samples.SampleLogger`): keypoints with
        the predicted lips written back into the clip's own expression, and the lip trajectories."""
        from pctalk.tasks.samples import clip_features, clip_keypoints

        n = clip.meta.n_frames
        feat = clip_features(clip, self.audio_encoder, self.device)
        lips = self.predictor.generate(feat, torch.tensor([clip.meta.style_id], device=self.device))[0].cpu()
        scale = torch.from_numpy(clip.motion.scale)
        exp = torch.from_numpy(clip.motion.exp).clone()
        idx = list(TARGETS[self.target])
        exp[:, idx] = lips.view(n, len(idx), 3) / scale[:, :, None]
        truth = torch.from_numpy(lip_deformation(clip.motion.exp, clip.motion.scale))
        predicted = scale[:, :, None].mul(exp[:, list(LIPS)]).reshape(n, -1)
        return {
            "keypoints": clip_keypoints(clip, exp),
            "target_keypoints": clip_keypoints(clip),
            "lips": predicted,
            "target_lips": truth,
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["pctalk"] = self.checkpoint_block()

    def train(self, mode: bool = True) -> ExpressionTask:
        super().train(mode)
        if self.frozen_audio:
            self.audio_encoder.eval()  # a pretrained encoder keeps its BatchNorm statistics
        return self

    def _losses(self, pred: torch.Tensor, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        target, mask = batch["target"], batch["mask"]
        l1 = masked_l1(pred, target, mask)
        vel = velocity_l1(pred, target, mask)
        return {"loss": l1 + self.hparams.get("velocity_weight", 1.0) * vel, "l1": l1, "velocity": vel}

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        feat = audio_features(batch, self.audio_encoder)
        losses = self._losses(self.predictor(feat, batch["style"], batch["target"]), batch)
        bs = batch["target"].shape[0]
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, prog_bar=True, batch_size=bs)
        return losses["loss"]

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        feat = audio_features(batch, self.audio_encoder)
        target, mask = batch["target"], batch["mask"]
        generated = self.predictor.generate(feat, batch["style"])  # autoregressive, as at inference
        metrics = {
            "val/loss": self._losses(self.predictor(feat, batch["style"], target), batch)["loss"],
            "val/lip_l1": masked_l1(generated, target, mask),
            "val/lip_vertex_error": lip_vertex_error(generated, target, mask),
            "val/velocity_error": velocity_l1(generated, target, mask),
            "val/lip_l1_zero_motion": masked_l1(torch.zeros_like(target), target, mask),
        }
        self.log_dict(metrics, sync_dist=True, batch_size=target.shape[0], prog_bar=False)
