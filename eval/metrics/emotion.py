"""Acc_emo: video-level top-1 accuracy of an Emotion-FAN classifier on generated videos.

The checkpoint's output classes are mapped to pctalk's emotion order (:data:`pctalk.data.schema.EMOTIONS`) by name:
files written by ``pctalk fit -c experiments/eval/emotion_classifier.yaml`` store their class names; for a published
file give them with ``classes=[...]`` in the order of its outputs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from torchmetrics import Metric

from eval.networks.emotion_fan import load_emotion_fan, preprocess_faces
from pctalk.data.schema import EMOTIONS

__all__ = ["EmotionAccuracy"]

#: Other spellings of pctalk's emotion names that checkpoints use.
_ALIASES = {"disgust": "disgusted", "surprise": "surprised", "fearful": "fear", "anger": "angry", "happiness": "happy",
            "sadness": "sad"}  # fmt: skip


def _canonical(name: str) -> str:
    name = name.strip().lower()
    name = _ALIASES.get(name, name)
    if name not in EMOTIONS:
        raise ValueError(f"unknown emotion class {name!r}; pctalk's emotions are {', '.join(EMOTIONS)}")
    return name


class EmotionAccuracy(Metric):
    """Top-1 accuracy of the classifier's video-level prediction against the intended emotion.

    Args:
        checkpoint: an Emotion-FAN checkpoint.
        classes: the checkpoint's output classes in order (needed when the file does not store them).
        attention: ``"relation"`` (Emotion-FAN's best) or ``"self"``.
        weights_root: where the face detector for videos that are not face crops is looked for (SCRFD's
            ``det_10g.onnx``; OpenCV's Haar cascade without it).

    ``update(videos, emotions)``: a sequence of ``(T, H, W, 3)`` uint8 videos (face crops, or frames of any shape,
    whose face is cut out first) and their target emotions (names, or indices into ``EMOTIONS``).
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(
        self,
        checkpoint: str | os.PathLike[str],
        classes: Sequence[str] | None = None,
        attention: str = "relation",
        max_frames: int | None = None,
        weights_root: str | os.PathLike[str] | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)
        self.net, stored = load_emotion_fan(checkpoint)
        names = classes or stored
        n_out = self.net.pred_fc1.out_features
        if names is None:
            raise ValueError(f"{checkpoint} does not store its class names; pass classes=[...] ({n_out} names in "
                             f"the order of its outputs)")  # fmt: skip
        if len(names) != n_out:
            raise ValueError(f"{checkpoint} has {n_out} outputs but {len(names)} class names were given")
        self.classes = tuple(_canonical(n) for n in names)
        self.attention, self.max_frames, self.weights_root = attention, max_frames, weights_root
        self.add_state("correct", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def predict(self, video: np.ndarray) -> str:
        """The emotion predicted for one ``(T, H, W, 3)`` uint8 video: a face-crop video as it is, any other
        (landscape, portrait, a face pasted back into its frame) cut to the face first (:func:`face_video`)."""
        stream = self.stream()
        stream.push(face_video(np.asarray(video)[: self.max_frames], self.weights_root))
        return stream.finish()

    def stream(self) -> EmotionStream:
        """A prediction for one video whose face crops arrive in chunks (equal to :meth:`predict` of the whole)."""
        return EmotionStream(self)

    def update(self, videos: Sequence[np.ndarray], emotions: Sequence[str | int]) -> None:
        if len(videos) != len(emotions):
            raise ValueError(f"{len(videos)} videos but {len(emotions)} target emotions")
        for video, emotion in zip(videos, emotions, strict=True):
            self.add(self.predict(video), emotion)

    def add(self, predicted: str, emotion: str | int) -> None:
        """Count one video's prediction against its target emotion."""
        target = EMOTIONS[emotion] if isinstance(emotion, int) else _canonical(emotion)
        self.correct += float(predicted == target)
        self.total += 1

    def compute(self) -> torch.Tensor:
        return self.correct / self.total


class EmotionStream:
    """One video's Emotion-FAN prediction from square face crops pushed in chunks: frames are embedded in the same
    batches of 64 as the whole video's, and only their ``(T, 512)`` features are kept (no frames), so the prediction
    equals :meth:`EmotionAccuracy.predict` and memory does not grow with the frames' size."""

    BATCH = 64

    def __init__(self, metric: EmotionAccuracy) -> None:
        self.metric = metric
        self.pending: list[torch.Tensor] = []
        self.features: list[torch.Tensor] = []
        self.alphas: list[torch.Tensor] = []
        self.seen = 0

    def push(self, faces: np.ndarray) -> None:
        """Add ``(t, S, S, 3)`` uint8 RGB face crops (past ``max_frames`` they are ignored)."""
        limit = self.metric.max_frames
        faces = faces if limit is None else faces[: max(0, limit - self.seen)]
        self.seen += len(faces)
        if len(faces):
            self.pending.extend(preprocess_faces(faces).unbind(0))
        while len(self.pending) >= self.BATCH:
            self._embed(self.BATCH)

    @torch.inference_mode()
    def _embed(self, n: int) -> None:
        batch, self.pending = torch.stack(self.pending[:n]), self.pending[n:]
        features, alphas = self.metric.net.frame_features(batch.to(self.metric.device))
        self.features.append(features)
        self.alphas.append(alphas)

    @torch.inference_mode()
    def finish(self) -> str:
        """The predicted emotion's name."""
        if self.pending:
            self._embed(len(self.pending))
        if not self.features:
            raise ValueError("Acc_emo: the video has no frames")
        net = self.metric.net
        logits = net.video_logits(torch.cat(self.features), torch.cat(self.alphas), self.metric.attention)
        return self.metric.classes[int(logits.argmax())]


def face_video(frames: np.ndarray, weights_root: str | os.PathLike[str] | None = None) -> np.ndarray:
    """``(T, H, W, 3)`` -> square face crops: the frames themselves when they are square (face crops), else the face
    detected and cropped in every frame as syncnet_python's pipeline crops it (``(T, 224, 224, 3)``).

    Raises:
        eval.metrics.lse.LSEInputError: no face in any frame.
    """
    if frames.shape[1] == frames.shape[2]:
        return frames
    from eval.metrics.lse import _face_boxes, track_crop

    return track_crop(frames, _face_boxes(frames, weights_root))
