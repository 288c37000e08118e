"""Scores one clip in one streamed pass over its frames, for every metric at once.

Frames are decoded in chunks of :data:`CHUNK` and go through every metric as they come: the face track
(:class:`eval.metrics.lse.FaceTrack`) cuts the face for LSE and, on frames that are not face crops, for Acc_emo; LSE
(:class:`eval.metrics.lse.SyncStream`) and Acc_emo (:class:`eval.metrics.emotion.EmotionStream`) keep per-window
distances and per-frame features; FID, E-FID and FVD turn each chunk into features and NIQE into per-frame scores.
Host memory is a few chunks of frames plus small per-frame vectors, whatever the clip's length or resolution; device
memory one chunk.

A clip counts for every metric or for none: the metrics' states change only in :meth:`ClipScore.commit`, after the
whole pass (and the reference clip's) succeeded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torchmetrics import Metric

__all__ = ["CHUNK", "ClipScore", "score_clip"]

#: Frames decoded and sent to a metric's network at once.
CHUNK = 32


@dataclass
class ClipScore:
    """What one clip adds to the metrics, not yet added: :meth:`commit` adds it."""

    frames: int = 0
    resolution: str = ""
    frames_per_metric: int = 0  # strided frames seen by FID, NIQE and E-FID
    fvd_clips: int = 0
    updates: list[tuple[Metric, Callable[[], None]]] = field(default_factory=list)

    def commit(self) -> None:
        """Add this clip to every metric's state."""
        for metric, update in self.updates:
            update()
            # what torchmetrics' ``update`` wrapper records: the state changed (no stale cached ``compute``, no
            # "compute before update" warning)
            metric._update_count += 1
            metric._computed = None
        self.updates.clear()


def _strided(chunk: np.ndarray, first: int, stride: int) -> np.ndarray:
    """The frames of ``chunk`` (global frame ``first`` on) whose index is a multiple of ``stride``."""
    return chunk[(-first) % stride :: stride]


def _distributions(
    metrics: nn.ModuleDict, chunks: Iterator[np.ndarray], real: bool, stride: int, score: ClipScore, count: bool
) -> Iterator[np.ndarray]:
    """Pass ``chunks`` through, adding their FID / E-FID / NIQE / FVD contributions (for the ``real`` or the
    generated set) to ``score``; ``count``: the frames are the scored clip's (not the reference's)."""
    from eval.metrics.fid import inception_features
    from eval.metrics.fvd import video_clips

    fvd = metrics["fvd"] if "fvd" in metrics else None
    held: list[np.ndarray] = []  # frames towards the next FVD clip
    fvd_clips, first = [], 0
    niqe_scores: list[float] = []
    for chunk in chunks:
        strided = _strided(chunk, first, stride)
        if "fid" in metrics and len(strided):
            feats = inception_features(metrics["fid"].inception, torch.from_numpy(strided).permute(0, 3, 1, 2))
            score.updates.append((metrics["fid"], lambda m=metrics["fid"], f=feats: m.add(f, real)))
        if "efid" in metrics and len(strided):
            coefficients, missed = metrics["efid"].coefficients(strided)
            score.updates.append(
                (metrics["efid"], lambda m=metrics["efid"], c=coefficients, k=missed: m.add_counted(c, k, real))
            )
        if "niqe" in metrics and count:
            from eval.metrics.niqe import niqe

            niqe_scores.extend(niqe(frame) for frame in strided)
        if fvd is not None:
            length = fvd.protocol.clip_length
            wanted = None if fvd.protocol.clips == "all" else 1
            if wanted is None or len(fvd_clips) < wanted:
                held.append(chunk)
                frames = np.concatenate(held)
                n = len(frames) // length
                if wanted is not None:
                    n = min(n, wanted - len(fvd_clips))
                if n:
                    fvd_clips.append(fvd.features(video_clips(frames[: n * length], fvd.protocol)))
                held = [frames[n * length :]] if wanted is None or len(fvd_clips) < wanted else []
        if count:
            score.frames += len(chunk)
            score.frames_per_metric += len(strided)
        first += len(chunk)
        yield chunk
    if niqe_scores:
        score.updates.append((metrics["niqe"], lambda m=metrics["niqe"], s=niqe_scores: m.add(s)))
    if fvd is not None:
        if fvd_clips:
            feats = torch.cat(fvd_clips)
            score.updates.append((fvd, lambda f=feats: fvd.add(f, real)))
        else:
            score.updates.append((fvd, lambda: fvd.skipped.add_(1)))
        if count:
            score.fvd_clips += sum(len(f) for f in fvd_clips)


def score_clip(
    metrics: nn.ModuleDict,
    frames: Iterator[np.ndarray],
    audio: torch.Tensor | None,
    real: bool,
    reference: Iterator[np.ndarray] | None = None,
    stride: int = 1,
    target_emotion: str | None = None,
    name: str = "the video",
) -> ClipScore:
    """One pass over a clip's frame chunks (and its reference's), computing what it adds to every metric.

    Args:
        metrics: the run's metrics by name (``lse``, ``acc_emo``, ``fid``, ``niqe``, ``fvd``, ``efid``).
        frames: ``(t, H, W, 3)`` uint8 RGB chunks of the scored clip at 25 fps.
        audio: its 16 kHz track (needed by LSE).
        real: the scored frames go to the real set of FID / FVD / E-FID (the real-videos row's half) rather than the
            generated one.
        reference: chunks of the real clip the generated one is compared with (the real set), if any.
        stride: every ``stride``-th frame goes to FID, NIQE and E-FID.
        target_emotion: what Acc_emo checks the prediction against.
        name: the video, for error messages.

    Raises:
        eval.metrics.lse.LSEInputError: no audio, too short, or no face (the clip is skipped).
        pctalk.media.VideoError: a frame cannot be decoded (the clip is skipped).
        ValueError: frames that are not square with ``lse_crop: frame`` (a configuration error).
    """
    from eval.metrics.lse import FaceTrack, LSEInputError, SyncStream, _as_224_bgr, face_detector

    score = ClipScore()
    lse = metrics["lse"] if "lse" in metrics else None
    acc = metrics["acc_emo"] if "acc_emo" in metrics else None
    if lse is not None and audio is None:
        raise LSEInputError(f"{name} has no audio track")
    sync = SyncStream(lse.net, audio, lse.vshift, lse.batch_size) if lse is not None else None
    emotion = acc.stream() if acc is not None else None
    track = square = None

    def feed(chunk: np.ndarray | None, faces: np.ndarray | None) -> None:
        if sync is not None:
            if lse.crop == "track":
                if faces is not None and len(faces):
                    sync.push(faces[..., ::-1])
            elif chunk is not None:
                sync.push(_as_224_bgr(chunk))
        if emotion is not None:
            crops = chunk if square else faces
            if crops is not None and len(crops):
                emotion.push(crops)

    for chunk in _distributions(metrics, frames, real, stride, score, count=True):
        if square is None:
            h, w = chunk.shape[1:3]
            square, score.resolution = h == w, f"{w}x{h}"
            if lse is not None and lse.crop == "frame" and not square:
                raise ValueError(  # a setting that does not fit the videos: an error, not a skipped clip
                    f"{name}: lse_crop: frame takes face crops, but the frames are {w}x{h} (a full or pasted-back "
                    "frame would be squeezed to 224x224): use lse_crop: track, which detects and crops the face as "
                    "syncnet_python's pipeline does"
                )
            if (lse is not None and lse.crop == "track") or (emotion is not None and not square):
                track = FaceTrack(face_detector(lse.weights_root if lse is not None else acc.weights_root))
        feed(chunk, track.push(chunk) if track is not None else None)
    if square is None:
        raise LSEInputError(f"{name} has no frames")
    if track is not None:
        feed(None, track.finish())
    if reference is not None:
        for _ in _distributions(metrics, reference, True, stride, score, count=False):
            pass
    if sync is not None:
        result = sync.finish()
        score.updates.append((lse, lambda: lse.add(result)))
    if emotion is not None:
        predicted = emotion.finish()
        score.updates.append((acc, lambda: acc.add(predicted, target_emotion)))
    return score
