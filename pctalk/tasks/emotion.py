"""``EmotionTask``: train EMC's combined predictor (and its learned emotion sources) on emotional clips.

Motion loss: L1 + velocity L1 on all 21 keypoints (``s * exp``), the predictor conditioned on the clip's emotion
label, and, for each learned source, on the source's embedding of the clip's cue. Each learned source's embedding
also goes through an 8-way classifier with a cross-entropy on the label.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F

from pctalk.audio.encoder import AudioEncoder, load_audio_encoder
from pctalk.checkpoints.info import StageInfo, state_sha256
from pctalk.data.examples import lip_deformation
from pctalk.data.schema import Clip
from pctalk.keypoints.regions import LIPS
from pctalk.models.config import EmotionConfig, config_from
from pctalk.models.emotion_predictor import EmotionPredictor
from pctalk.models.emotion_sources import AudioEmotionSource, TextEmotionSource, VideoEmotionSource
from pctalk.tasks.base import BaseTask
from pctalk.tasks.expression import audio_features
from pctalk.tasks.losses import masked_l1, velocity_l1

__all__ = ["EmotionTask"]

Source = Literal["label", "audio", "text", "video"]
#: learned source -> the batch entry it reads (ShardDataModule ``extras``)
SOURCE_INPUTS = {"audio": "raw_audio", "text": "text", "video": "reference_exp"}


class EmotionTask(BaseTask):
    """Audio + speaking style + emotion -> all 21 keypoints.

    Args:
        n_styles: speaking styles (training identities).
        sources: the emotion cues trained: ``label`` (always useful), and the learned ``audio`` (needs
            ``wav2vec2``), ``text`` and ``video`` sources; the data module must provide their ``extras``.
        predictor: the sizes of the main decoder and of the emotion conditioning (paper: as the expression predictor,
            and a 2-layer autoregressive emotion decoder).
        audio_encoder: a pretrained audio encoder file (frozen); ``None`` trains one with ``audio_encoder_width``.
        audio_encoder_width: width of an encoder trained from scratch.
        wav2vec2: local Hugging Face folder of the speech emotion model (the audio source).
        text_encoder: sentence-transformers folder (the text source; default the bundled all-MiniLM-L6-v2).
        classifier_weight: weight of the sources' classifier cross-entropy.
        velocity_weight: weight of the velocity L1.
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
    """

    target = "all"  # the combined predictor predicts every keypoint

    def __init__(
        self,
        n_styles: int,
        sources: list[Source] | None = None,
        predictor: EmotionConfig = EmotionConfig(),  # noqa: B008 - frozen: a shared default is safe
        audio_encoder: str | None = None,
        audio_encoder_width: float = 1.0,
        wav2vec2: str | None = None,
        text_encoder: str | None = None,
        classifier_weight: float = 0.1,
        velocity_weight: float = 1.0,
        lr: float = 1e-4,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(lr=lr, weight_decay=weight_decay)
        self.strict_loading = False  # frozen backbones of the sources are left out of checkpoints

    def configure_models(self) -> None:
        hp = self.hparams
        self.sources = list(hp.get("sources") or ["label"])
        unknown = set(self.sources) - {"label", *SOURCE_INPUTS}
        if unknown:
            raise ValueError(f"unknown emotion sources {sorted(unknown)}; choose from label, audio, text, video")
        self.frozen_audio = hp.get("audio_encoder") is not None
        if self.frozen_audio:
            self.audio_encoder = load_audio_encoder(hp["audio_encoder"]).requires_grad_(False)
        else:
            self.audio_encoder = AudioEncoder(hp.get("audio_encoder_width", 1.0))
        self.config = config_from(EmotionConfig, hp.get("predictor"))
        self.predictor = EmotionPredictor(hp["n_styles"], self.audio_encoder.out_dim, self.config)
        d = self.config.d_model
        self.source_modules = torch.nn.ModuleDict()
        if "audio" in self.sources:
            if not hp.get("wav2vec2"):
                raise ValueError("the audio emotion source needs wav2vec2= a local Hugging Face model folder")
            self.source_modules["audio"] = AudioEmotionSource(hp["wav2vec2"], d)
        if "text" in self.sources:
            self.source_modules["text"] = TextEmotionSource(hp.get("text_encoder"), d)
        if "video" in self.sources:
            self.source_modules["video"] = VideoEmotionSource(d, n_heads=self.config.n_heads, ff_dim=self.config.ff_dim)
        # the classifier trains on the learned sources' embeddings: without one it would be an unused parameter
        # (which DDP refuses)
        self.emotion_classifier = torch.nn.Linear(d, self.config.n_emotions) if self.source_modules else None

    def train(self, mode: bool = True) -> EmotionTask:
        super().train(mode)
        if self.frozen_audio:
            self.audio_encoder.eval()
        return self

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["state_dict"]
        for key in [
            k for k in state if k.startswith(("source_modules.audio.backbone.", "source_modules.text.backbone."))
        ]:
            del state[key]
        checkpoint["pctalk"] = self.checkpoint_block()

    def stage_info(self) -> StageInfo:
        """The checkpoint block (:mod:`pctalk.checkpoints`) of the stage being trained."""
        hp = self.hparams
        encoder = {"width": hp.get("audio_encoder_width", 1.0), "file": hp.get("audio_encoder")}
        encoder["sha256"] = state_sha256(self.audio_encoder.state_dict())
        folders = {"audio": hp.get("wav2vec2"), "text": hp.get("text_encoder")}
        return StageInfo(
            "emc", hp["n_styles"], self.config, self.audio_encoder.out_dim, window=self.config.period,
            styles=self.data_styles(), style_counts=self.data_style_counts(), audio_encoder=encoder,
            sources=[s for s in self.sources if s != "label"],
            source_folders={k: str(v) for k, v in folders.items() if v and k in self.sources},
        )  # fmt: skip

    def sample(self, clip: Clip) -> dict[str, torch.Tensor]:
        """A whole clip predicted with its emotion label (for :class:`~pctalk.tasks.samples.SampleLogger`)."""
        from pctalk.tasks.samples import clip_features, clip_keypoints

        n = clip.meta.n_frames
        feat = clip_features(clip, self.audio_encoder, self.device)
        emotion = self.predictor.embed(torch.tensor([clip.meta.emotion_id], device=self.device))
        style = torch.tensor([clip.meta.style_id], device=self.device)
        deformation = self.predictor.generate(feat, style, emotion)[0].cpu().view(n, 21, 3)
        scale = torch.from_numpy(clip.motion.scale)
        exp = deformation / scale[:, :, None]
        truth = torch.from_numpy(lip_deformation(clip.motion.exp, clip.motion.scale))
        return {
            "keypoints": clip_keypoints(clip, exp),
            "target_keypoints": clip_keypoints(clip),
            "lips": deformation[:, list(LIPS)].reshape(n, -1),
            "target_lips": truth,
        }

    def embeddings(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """``(B, d)`` emotion embedding of each trained source for the batch."""
        out = {"label": self.predictor.embed(batch["emotion"])}
        for name, module in self.source_modules.items():
            entry = SOURCE_INPUTS[name]
            if entry not in batch:
                raise KeyError(f"the {name} emotion source needs '{entry}' in the batch: add it to the data's extras")
            out[name] = module(batch[entry], batch["mask"]) if name == "video" else module(batch[entry])
        return out

    def _motion(self, pred: torch.Tensor, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        l1 = masked_l1(pred, batch["target"], batch["mask"])
        return l1 + self.hparams.get("velocity_weight", 1.0) * velocity_l1(pred, batch["target"], batch["mask"]), l1

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        feat = audio_features(batch, self.audio_encoder)
        logs, total = {}, 0.0
        for name, embedding in self.embeddings(batch).items():
            motion, l1 = self._motion(self.predictor(feat, batch["style"], embedding, batch["target"]), batch)
            total = total + motion
            logs[f"train/l1_{name}"] = l1
            if name != "label":
                logits = self.emotion_classifier(embedding)
                ce = F.cross_entropy(logits, batch["emotion"])
                total = total + self.hparams.get("classifier_weight", 0.1) * ce
                logs[f"train/ce_{name}"] = ce
                logs[f"train/acc_{name}"] = (logits.argmax(-1) == batch["emotion"]).float().mean()
        logs["train/loss"] = total
        self.log_dict(logs, prog_bar=False, batch_size=len(batch["target"]))
        return total

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        feat = audio_features(batch, self.audio_encoder)
        target, mask = batch["target"], batch["mask"]
        logs = {"val/l1_zero_motion": masked_l1(torch.zeros_like(target), target, mask)}
        for name, embedding in self.embeddings(batch).items():
            generated = self.predictor.generate(feat, batch["style"], embedding)
            logs[f"val/l1_{name}"] = masked_l1(generated, target, mask)
            if name != "label":
                logits = self.emotion_classifier(embedding)
                logs[f"val/acc_{name}"] = (logits.argmax(-1) == batch["emotion"]).float().mean()
        self.log_dict(logs, sync_dist=True, batch_size=len(target))
