"""``LipRefinerTask``: train LAC's lip refiner with the SyncNet expert's loss on rendered frames.

For each window of frames: the frozen expression predictor gives the lip deformation ``D``; the undeformed lip
keypoints (the clip's own pose and expression with the lips' expression removed) plus ``D`` plus a little noise are
the refiner's input; the refined lips replace the lips in the frame's keypoints, which LivePortrait's frozen warping
module and decoder render from the clip's reference crop; the first five renders, cut to the face and its lower
half, go through Wav2Lip's SyncNet expert with the window's mel. Losses: the sync loss (image space), an L1 to the
ground-truth lip keypoints, and a penalty on the size of the correction.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F

from pctalk.audio.syncnet import SYNC_FRAMES, load_syncnet
from pctalk.checkpoints import load_lac_stage, state_sha256
from pctalk.checkpoints.info import StageInfo
from pctalk.data.schema import Clip
from pctalk.keypoints.crop import face_box
from pctalk.keypoints.regions import LIPS
from pctalk.keypoints.transform import rotation_matrix, transform_keypoints
from pctalk.models.lip_refiner import LipRefiner
from pctalk.tasks.base import BaseTask
from pctalk.tasks.expression import audio_features

__all__ = ["LipRefinerTask"]


def _keypoints(kp: torch.Tensor, exp, pitch, yaw, roll, scale, t) -> torch.Tensor:
    """Driven keypoints ``(N, 21, 3)`` from flattened per-frame motion."""
    return transform_keypoints(kp, rotation_matrix(pitch, yaw, roll), exp, scale, t)


class LipRefinerTask(BaseTask):
    """Refine the predicted lip keypoints for lip sync.

    Args:
        expression: the trained expression stage: an ``ExpressionTask`` checkpoint (``.ckpt``), or a release
            ``lac.pth`` (pctalk's or the official release's); it must predict the lips (``target: lips``).
        weights: the weights root holding LivePortrait (``liveportrait/``) and, by default, the SyncNet expert
            (``wav2lip/lipsync_expert.pth``).
        syncnet: Wav2Lip's ``lipsync_expert.pth`` if not under ``weights``.
        audio_encoder: the audio encoder of a release ``lac.pth`` when it is not beside it (a ``.ckpt`` holds its
            own).
        liveportrait_size: sizes of the LivePortrait files (``tiny`` is for tests).
        sync_weight, keypoint_weight, correction_weight: weights of the three losses.
        noise_std: Gaussian noise added to the refiner's input in training.
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
    """

    def __init__(
        self,
        expression: str,
        weights: str,
        syncnet: str | None = None,
        audio_encoder: str | None = None,
        liveportrait_size: Literal["official", "tiny"] = "official",
        sync_weight: float = 0.1,
        keypoint_weight: float = 1.0,
        correction_weight: float = 0.1,
        noise_std: float = 0.002,
        lr: float = 1e-4,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(lr=lr, weight_decay=weight_decay)
        self.strict_loading = False  # checkpoints leave out LivePortrait and SyncNet (see on_save_checkpoint)

    def configure_models(self) -> None:
        from pctalk.keypoints.config import LivePortraitConfig
        from pctalk.keypoints.liveportrait import load_liveportrait
        from pctalk.weights.registry import resolve

        hp = self.hparams
        stage = load_lac_stage(hp["expression"], hp.get("audio_encoder"))
        if stage.info.target != "lips":
            raise ValueError(
                f"{hp['expression']} predicts all 21 keypoints (target: all, Table 3's 'no lip keypoints' ablation); "
                f"the lip refiner refines the six lip keypoints, so it needs an expression stage trained with "
                f"target: lips (as in the paper and the official release)"
            )
        self.expression_info = stage.info
        self.predictor = stage.predictor.requires_grad_(False).eval()
        self.audio_encoder = stage.audio_encoder.requires_grad_(False).eval()
        config = LivePortraitConfig.tiny() if hp.get("liveportrait_size") == "tiny" else LivePortraitConfig()
        self.liveportrait = load_liveportrait(hp["weights"], config=config, require_stitching=False)
        syncnet = hp.get("syncnet") or resolve("wav2lip.lipsync_expert", Path(hp["weights"]))
        self.syncnet = load_syncnet(syncnet)
        self.refiner = LipRefiner(len(LIPS) * 3, self.audio_encoder.out_dim)

    #: frozen networks loaded from their own files: kept out of checkpoints
    FROZEN_FROM_FILES = ("liveportrait.", "syncnet.")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith(self.FROZEN_FROM_FILES)]:
            del state[key]
        checkpoint["pctalk"] = self.checkpoint_block()

    def stage_info(self) -> StageInfo:
        """The checkpoint block: the expression stage's, which this task completes with its refiner."""
        encoder = {**self.expression_info.audio_encoder, "sha256": state_sha256(self.audio_encoder.state_dict())}
        info = self.expression_info
        return replace(info, audio_encoder=encoder, styles=info.styles or self.data_styles(),
                       style_counts=info.style_counts or self.data_style_counts())  # fmt: skip

    def train(self, mode: bool = True) -> LipRefinerTask:
        super().train(mode)
        for frozen in (self.predictor, self.audio_encoder, self.syncnet):  # LivePortrait keeps itself in eval
            frozen.eval()
        return self

    def step(self, batch: dict[str, Any], train: bool) -> dict[str, torch.Tensor]:
        """All losses of one batch of windows (W >= 5 frames)."""
        hp = self.hparams
        b, w = batch["target"].shape[:2]
        if w < SYNC_FRAMES:
            raise ValueError(f"the lip refiner needs windows of at least {SYNC_FRAMES} frames, got {w}")
        with torch.no_grad():
            feat = audio_features(batch, self.audio_encoder)
            deformation = self.predictor.generate(feat, batch["style"]).view(b * w, len(LIPS), 3)
        flat = {k: batch[k].flatten(0, 1) for k in ("exp", "pitch", "yaw", "roll", "t", "scale")}
        kp = batch["kp"].repeat_interleave(w, dim=0)
        ground_truth = _keypoints(kp, **flat)  # (B*W, 21, 3)
        no_lips = flat["exp"].clone()
        no_lips[:, list(LIPS)] = 0
        lips_in = _keypoints(kp, **{**flat, "exp": no_lips})[:, list(LIPS)] + deformation
        if train and hp.get("noise_std", 0):
            lips_in = lips_in + hp["noise_std"] * torch.randn_like(lips_in)
        refined = self.refiner(lips_in.view(b, w, -1), feat).view(b * w, len(LIPS), 3)
        mask = batch["mask"].flatten()[:, None, None].float()
        keypoint = ((refined - ground_truth[:, list(LIPS)]).abs() * mask).sum() / (mask.sum() * refined[0].numel())
        correction = (refined - lips_in).abs().mean()
        sync = self.sync_loss(batch, ground_truth, refined, b, w)
        loss = hp.get("sync_weight", 0.1) * sync + hp.get("keypoint_weight", 1.0) * keypoint
        loss = loss + hp.get("correction_weight", 0.1) * correction
        return {"loss": loss, "sync": sync, "keypoint_l1": keypoint, "correction": correction}

    def sample(self, clip: Clip) -> dict[str, torch.Tensor]:
        """A whole clip refined (for :class:`~pctalk.tasks.samples.SampleLogger`, which renders it with this task's
        LivePortrait): keypoints with the refined lips, and the refined against the ground-truth lip keypoints."""
        from pctalk.tasks.samples import clip_features, clip_keypoints

        n, lips = clip.meta.n_frames, list(LIPS)
        feat = clip_features(clip, self.audio_encoder, self.device)
        style = torch.tensor([clip.meta.style_id], device=self.device)
        deformation = self.predictor.generate(feat, style)[0].view(n, len(LIPS), 3).cpu()
        no_lips = torch.from_numpy(clip.motion.exp).clone()
        no_lips[:, lips] = 0
        truth = clip_keypoints(clip)
        lips_in = clip_keypoints(clip, no_lips)[:, lips] + deformation
        refined = self.refiner(lips_in.view(1, n, -1).to(self.device), feat).view(n, len(LIPS), 3).cpu()
        keypoints = truth.clone()
        keypoints[:, lips] = refined
        return {
            "keypoints": keypoints,
            "target_keypoints": truth,
            "lips": refined.reshape(n, -1),
            "target_lips": truth[:, lips].reshape(n, -1),
        }

    def sync_loss(
        self, batch: dict[str, Any], ground_truth: torch.Tensor, refined: torch.Tensor, b: int, w: int
    ) -> torch.Tensor:
        """SyncNet loss of the first five frames rendered with the refined lips from the reference crop."""
        lp = self.liveportrait
        size = lp.config.input_size
        ref = (
            batch["ref"]
            if batch["ref"].shape[-1] == size
            else F.interpolate(batch["ref"], size=(size, size), mode="area")
        )
        feature = lp.appearance(ref)
        source = _keypoints(
            batch["kp"], **{k: batch[f"ref_{k}"] for k in ("exp", "pitch", "yaw", "roll", "t", "scale")}
        )
        driven = ground_truth.view(b, w, 21, 3)[:, :SYNC_FRAMES].clone()
        driven[:, :, list(LIPS)] = refined.view(b, w, len(LIPS), 3)[:, :SYNC_FRAMES]
        n = SYNC_FRAMES
        render = lp.warp_decode(
            feature.repeat_interleave(n, 0), source.repeat_interleave(n, 0), driven.flatten(0, 1)
        )  # (B * 5, 3, S, S)
        x1, y1, x2, y2 = face_box(render.shape[-1])
        faces = render[:, :, max(0, y1) : y2, max(0, x1) : x2]
        faces = F.interpolate(faces, size=(96, 96), mode="bilinear", align_corners=False, antialias=True)
        return self.syncnet.sync_loss(faces.view(b, n, 3, 96, 96), batch["mel"][:, 0])

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        losses = self.step(batch, train=True)
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, prog_bar=True, batch_size=len(batch["target"]))
        return losses["loss"]

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        losses = self.step(batch, train=False)
        self.log_dict({f"val/{k}": v for k, v in losses.items()}, sync_dist=True, batch_size=len(batch["target"]))
