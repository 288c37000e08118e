"""Training an Emotion-FAN classifier on MEAD shards, for users without the published file (Acc_emo).

``pctalk fit -c experiments/eval/emotion_classifier.yaml`` trains :class:`EmotionClassifierTask` on the face crops
``pctalk-data build --face-frames K`` stores per clip, with Emotion-FAN's relation attention over a few random frames
per video, and writes the best validation checkpoint in Emotion-FAN's layout (plus the class names) to
``<default_root_dir>/emotion_fan.pth.tar``, which :class:`eval.metrics.emotion.EmotionAccuracy` loads as it is.
"""

from __future__ import annotations

import functools
import random
from pathlib import Path

import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy

from eval.networks.emotion_fan import EmotionFAN, preprocess_faces
from pctalk.data.datamodule import ShardDataModule
from pctalk.data.schema import EMOTIONS, Clip, SchemaError, decode_sample
from pctalk.data.synthetic import SyntheticCorpus
from pctalk.tasks.base import BaseTask
from pctalk.weights.io import save_checkpoint

__all__ = ["EmotionClassifierTask", "EmotionFaceDataModule"]


def _face_example(clip: Clip, rng: random.Random | None, frames: int) -> dict:
    """``faces (F, 3, 224, 224)`` in [0, 1] and ``emotion`` (index into ``EMOTIONS``) of one clip; training takes
    ``frames`` random crops and flips them at random, validation takes them all."""
    if clip.faces is None:
        raise SchemaError(f"{clip.key} has no face crops: build the shards with `pctalk-data build --face-frames 16`")
    faces = clip.faces
    if rng is not None:
        faces = faces[sorted(rng.sample(range(len(faces)), min(frames, len(faces))))]
        if rng.random() < 0.5:
            faces = faces[:, :, ::-1]
    return {"faces": preprocess_faces(faces), "emotion": torch.tensor(EMOTIONS.index(clip.meta.emotion))}


class EmotionFaceDataModule(ShardDataModule):
    """Face crops and emotion labels from shards built with ``--face-frames``.

    Args:
        root: the shard folder(s), comma-separated.
        frames: face crops per training video (Emotion-FAN trains on 3).
        batch_size: videos per batch on each rank.
        num_workers: loader workers per rank.
        emotions: only these emotions (all eight by default).
        samples_per_epoch: videos per epoch over all ranks (default: the number of training clips).
        shuffle_buffer: training samples held for shuffling in each worker.
        synthetic: the offline synthetic corpus (with ``face_frames`` crops per clip) to write when ``root`` is its
            folder and has no shards yet; never written anywhere else.
        seed: seed of the shard resampling and frame choice.
    """

    def __init__(
        self,
        root: str,
        frames: int = 3,
        batch_size: int = 16,
        num_workers: int = 0,
        emotions: list[str] | None = None,
        samples_per_epoch: int | None = None,
        shuffle_buffer: int = 64,
        synthetic: SyntheticCorpus | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(root=root, batch_size=batch_size, num_workers=num_workers, emotions=emotions,
                         samples_per_epoch=samples_per_epoch, shuffle_buffer=shuffle_buffer, synthetic=synthetic,
                         seed=seed)  # fmt: skip
        self.frames = frames

    def _example(self, train: bool):
        return functools.partial(_face_example, frames=self.frames)

    def _decode(self):
        return decode_sample  # with the face crops

    def epoch_samples(self) -> int:
        """Videos per epoch: ``samples_per_epoch``, else the number of training clips (an example is a clip)."""
        urls, samples = self.shards("train")
        return self.samples_per_epoch or samples or len(urls)

    def shards(self, split: str) -> tuple[list[str], int]:
        """The parent's shard list, after checking the first shard holds face crops (the loader would otherwise
        skip every sample with a warning and yield nothing)."""
        import tarfile

        urls, samples = super().shards(split)
        if urls:
            with tarfile.open(urls[0]) as tar:
                names = [m.name for _, m in zip(range(64), tar, strict=False)]
            if names and not any(n.endswith(".faces.npz") for n in names):
                raise SchemaError(f"{urls[0]} has no face crops: build the shards with "
                                  f"`pctalk-data build --face-frames 16` to train the emotion classifier")  # fmt: skip
        return urls, samples


class EmotionClassifierTask(BaseTask):
    """Emotion-FAN (ResNet-18 + frame attention) trained with cross-entropy on video-level predictions.

    Args:
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        attention: ``relation`` (Emotion-FAN's best) or ``self``.
        export_name: the file written under ``default_root_dir`` at each new best validation accuracy.
    """

    def __init__(
        self,
        lr: float = 1e-4,
        weight_decay: float = 1e-4,
        attention: str = "relation",
        export_name: str = "emotion_fan.pth.tar",
    ) -> None:
        super().__init__(lr=lr, weight_decay=weight_decay)
        self.attention, self.export_name = attention, export_name
        self.best = -1.0

    def configure_models(self) -> None:
        self.net = EmotionFAN(num_classes=len(EMOTIONS))
        # Emotion-FAN's file holds both heads; the one this attention does not use is frozen (DDP refuses a trainable
        # parameter that never reaches the loss)
        relation = self.hparams.get("attention", "relation") == "relation"
        self.net.pred_fc1.requires_grad_(not relation)
        self.net.pred_fc2.requires_grad_(relation)
        self.net.beta.requires_grad_(relation)

    def configure_metrics(self) -> None:
        self.val_acc = MulticlassAccuracy(num_classes=len(EMOTIONS), average="micro")

    def logits(self, faces: torch.Tensor) -> torch.Tensor:
        """``(B, F, 3, 224, 224)`` -> ``(B, 8)`` video logits."""
        b, f = faces.shape[:2]
        features, alphas = self.net.frame_features(faces.flatten(0, 1))
        return self.net.video_logits(features.view(b, f, -1), alphas.view(b, f, 1), self.attention)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        logits = self.logits(batch["faces"])
        loss = F.cross_entropy(logits, batch["emotion"])
        accuracy = (logits.argmax(-1) == batch["emotion"]).float().mean()
        self.log_dict({"train/loss": loss, "train/acc": accuracy}, prog_bar=True, batch_size=len(logits))
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        logits = self.logits(batch["faces"])
        self.val_acc.update(logits.argmax(-1), batch["emotion"])
        self.log("val/loss", F.cross_entropy(logits, batch["emotion"]), batch_size=len(logits), sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        accuracy = float(self.val_acc.compute())  # reduced across ranks
        self.val_acc.reset()
        self.log("val/acc", accuracy, prog_bar=True)
        if self.trainer.sanity_checking or accuracy <= self.best:
            return
        self.best = accuracy
        if self.trainer.is_global_zero:
            self.export(Path(self.trainer.default_root_dir) / self.export_name, accuracy)

    def export(self, path: Path, accuracy: float) -> Path:
        """Write the classifier in Emotion-FAN's checkpoint layout, with pctalk's class names."""
        state = {f"module.{k}": v.detach().cpu() for k, v in self.net.state_dict().items()}
        return save_checkpoint({"epoch": int(self.current_epoch), "state_dict": state,
                                "accuracy": 100.0 * accuracy, "classes": list(EMOTIONS)}, path)  # fmt: skip
