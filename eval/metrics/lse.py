"""LSE-C and LSE-D, computed as joonson/syncnet_python's ``SyncNetInstance.evaluate`` computes them.

For one video: the visual stream embeds every 5-frame window (frames ``v … v+4``, 224×224, BGR, 0–255), the audio
stream embeds MFCC columns ``4v … 4v+19`` (``python_speech_features.mfcc`` of the 16 kHz int16 track: 13
coefficients, 100 Hz, the first is log energy). Audio embeddings are zero-padded by ``vshift`` rows and each visual
embedding is compared with the ``2·vshift + 1`` audio embeddings around it (``F.pairwise_distance``). The mean over
windows per offset gives ``mdist``; LSE-D = ``min(mdist)``, LSE-C = ``median(mdist) − min(mdist)``, and the AV offset
is ``vshift − argmin``. Scores are per video, then averaged over videos.

The offset search runs one batched distance per offset (over blocks of windows) instead of syncnet_python's loop over
windows; the numbers are bit-identical.

Crop convention:

- ``crop="frame"`` (default) — the frame is the face crop, resized to 224×224 when it is not already: what
  ``SyncNetInstance.evaluate`` takes after syncnet_python's own pipeline has cropped a face track. pctalk's generated
  videos are LivePortrait face crops, so they go in whole.
- ``crop="track"`` — full-frame videos: the face is detected in every frame and cropped as syncnet_python's
  ``run_pipeline.py`` ``crop_video`` does (box size and centre median-filtered over 13 frames, ``crop_scale`` 0.4,
  padding with grey 110, resized to 224).

Frames are decoded at 25 fps straight from the video rather than through syncnet_python's JPEG round trip
(``ffmpeg -f image2`` then ``cv2.imread``), so JPEG compression noise is absent; the audio is decoded and resampled to
16 kHz in-process and converted to int16 as FFmpeg's ``pcm_s16le`` does (``round(x · 32768)``, clipped).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from scipy.signal import medfilt
from torchmetrics import Metric

from eval.networks.syncnet_v2 import SyncNetV2, load_syncnet_v2

__all__ = [
    "LSE",
    "LSEInputError",
    "LSEResult",
    "embed",
    "lse_frames",
    "lse_video",
    "mfcc",
    "offset_distances",
    "sync_scores",
    "track_crop",
]

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
FPS = 25
WINDOW = 5  # frames per visual window
MFCC_PER_FRAME = 4  # 100 Hz MFCC / 25 fps
MFCC_WINDOW = 20  # 0.2 s of MFCC columns
SIZE = 224


class LSEInputError(ValueError):
    """A video cannot be scored (too short, or no audio); the message names the file."""


@dataclass(frozen=True)
class LSEResult:
    """Sync scores of one video: ``lse_c`` (confidence, higher is better), ``lse_d`` (distance, lower is better),
    ``offset`` (audio-visual offset in frames) and ``mdist`` (``(2·vshift + 1,)`` mean distance per offset)."""

    lse_c: float
    lse_d: float
    offset: int
    mdist: np.ndarray


def to_int16(wav: np.ndarray | torch.Tensor) -> np.ndarray:
    """Float audio in [-1, 1] -> int16 samples as FFmpeg's ``pcm_s16le`` encoder writes them."""
    x = wav.detach().cpu().numpy() if isinstance(wav, torch.Tensor) else np.asarray(wav)
    if x.dtype == np.int16:
        return x
    return np.clip(np.rint(x.astype(np.float64) * 32768.0), -32768, 32767).astype(np.int16)


def mfcc(wav: np.ndarray | torch.Tensor) -> np.ndarray:
    """``(13, M)`` MFCC of 16 kHz audio (float in [-1, 1] or int16) as syncnet_python computes it."""
    import python_speech_features

    return np.ascontiguousarray(python_speech_features.mfcc(to_int16(wav), SAMPLE_RATE).T)


def _as_224_bgr(frames: np.ndarray) -> np.ndarray:
    """``(T, H, W, 3)`` uint8 RGB -> ``(T, 224, 224, 3)`` uint8 BGR (bilinear resize when needed)."""
    if frames.shape[1:3] != (SIZE, SIZE):
        frames = np.stack([cv2.resize(f, (SIZE, SIZE)) for f in frames])
    return np.ascontiguousarray(frames[..., ::-1])


def track_crop(frames: np.ndarray, boxes: np.ndarray, crop_scale: float = 0.4) -> np.ndarray:
    """Crop a face track as syncnet_python's ``crop_video``.

    Args:
        frames: ``(T, H, W, 3)`` uint8 frames.
        boxes: ``(T, 4)`` face boxes ``(x1, y1, x2, y2)``, one per frame.

    Returns:
        ``(T, 224, 224, 3)`` uint8 crops, in the frames' channel order.
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    if len(boxes) < 13:  # the median filter would zero-pad the whole track into an empty box
        raise LSEInputError(
            f"{len(boxes)} frames are too few for syncnet_python's face track (a 13-frame median filter over the boxes)"
        )
    half = medfilt(np.maximum(boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]) / 2, kernel_size=13)
    cy = medfilt((boxes[:, 1] + boxes[:, 3]) / 2, kernel_size=13)
    cx = medfilt((boxes[:, 0] + boxes[:, 2]) / 2, kernel_size=13)
    out = np.empty((len(frames), SIZE, SIZE, 3), np.uint8)
    for i, frame in enumerate(frames):
        bs = half[i]
        pad = int(bs * (1 + 2 * crop_scale))
        padded = np.pad(frame, ((pad, pad), (pad, pad), (0, 0)), constant_values=110)
        my, mx = cy[i] + pad, cx[i] + pad
        face = padded[int(my - bs) : int(my + bs * (1 + 2 * crop_scale)),
                      int(mx - bs * (1 + crop_scale)) : int(mx + bs * (1 + crop_scale))]  # fmt: skip
        out[i] = cv2.resize(face, (SIZE, SIZE))
    return out


def _face_boxes(frames: np.ndarray, weights_root: str | os.PathLike[str] | None) -> np.ndarray:
    """One face box per frame: SCRFD (``insightface`` det_10g) when its file is present, else OpenCV's Haar
    cascade; a frame without a detection keeps the previous box."""
    from pctalk.weights.registry import MissingWeightsError, resolve

    try:
        from pctalk.keypoints.crop.onnx_models import FaceDetector

        detector = FaceDetector(resolve("insightface.det_10g", weights_root))

        def detect(frame: np.ndarray) -> list[np.ndarray]:
            return [np.asarray(f.bbox[:4], np.float64) for f in detector.detect(frame)]
    except MissingWeightsError:
        from pctalk.keypoints.crop.haar import HaarFaceDetector

        haar = HaarFaceDetector()

        def detect(frame: np.ndarray) -> list[np.ndarray]:
            return [np.asarray(b, np.float64) for b in haar.detect(frame)]

    boxes: list[np.ndarray] = []
    for frame in frames:
        found = detect(frame)
        if found:
            boxes.append(found[0])
        elif boxes:
            boxes.append(boxes[-1])
        else:
            boxes.append(None)  # type: ignore[arg-type]
    first = next((b for b in boxes if b is not None), None)
    if first is None:
        raise LSEInputError("no face found in any frame")
    return np.stack([first if b is None else b for b in boxes])


@torch.inference_mode()
def embed(
    net: SyncNetV2, frames_bgr: np.ndarray, coefficients: np.ndarray, n_samples: int, batch_size: int = 20
) -> tuple[torch.Tensor, torch.Tensor]:
    """Visual and audio embeddings of every window.

    Args:
        frames_bgr: ``(T, 224, 224, 3)`` uint8 BGR frames.
        coefficients: ``(13, M)`` MFCC of the audio.
        n_samples: the audio's length in 16 kHz samples.

    Returns:
        ``(N, D)`` visual and ``(N, D)`` audio embeddings, ``N = min(T, n_samples // 640) − 5`` as in syncnet_python.
    """
    device = next(net.parameters()).device
    n = min(len(frames_bgr), n_samples // (SAMPLE_RATE // FPS)) - WINDOW
    if n < 1:
        raise LSEInputError(f"too short: {len(frames_bgr)} frames and {n_samples / SAMPLE_RATE:.2f} s of audio; "
                            f"LSE needs at least {WINDOW + 1} frames (0.24 s) of both")  # fmt: skip
    video = torch.from_numpy(frames_bgr).permute(3, 0, 1, 2)  # (3, T, H, W) uint8
    cc = torch.from_numpy(coefficients).float()
    feats_v, feats_a = [], []
    for start in range(0, n, batch_size):
        idx = range(start, min(n, start + batch_size))
        clips = torch.stack([video[:, v : v + WINDOW] for v in idx]).to(device, torch.float32)
        feats_v.append(net.forward_lip(clips).float().cpu())
        mf = torch.stack([cc[:, MFCC_PER_FRAME * v : MFCC_PER_FRAME * v + MFCC_WINDOW] for v in idx])
        feats_a.append(net.forward_aud(mf[:, None].to(device)).float().cpu())
    return torch.cat(feats_v), torch.cat(feats_a)


@torch.inference_mode()
def offset_distances(feat_v: torch.Tensor, feat_a: torch.Tensor, vshift: int = 15, block: int = 256) -> torch.Tensor:
    """``(N, 2·vshift + 1)`` distances between each visual embedding and the audio embeddings ``−vshift … +vshift``
    windows away (zero rows beyond the ends).

    syncnet_python's ``calc_pdist`` calls ``F.pairwise_distance`` (``‖v − a + ε‖``, ``ε = 1e-6``) once per window.
    Here each offset is one subtraction, one ``+ ε`` and one norm over a block of ``block`` windows at once, in a
    reused buffer (blocks keep the operands in cache on long videos): the same element operations and reduction, so
    the result is bit-identical, with 31 operations per block instead of one call per window.

    Args:
        feat_v: ``(N, D)`` visual embeddings.
        feat_a: ``(N, D)`` audio embeddings.
    """
    n, width = len(feat_v), 2 * vshift + 1
    padded = F.pad(feat_a, (0, 0, vshift, vshift))  # (N + 2 vshift, D)
    out = torch.empty(width, n, dtype=feat_v.dtype, device=feat_v.device)
    buffer = torch.empty(min(block, n), feat_v.shape[1], dtype=feat_v.dtype, device=feat_v.device)
    for start in range(0, n, block):
        stop = min(n, start + block)
        diff = buffer[: stop - start]
        for k in range(width):
            torch.sub(feat_v[start:stop], padded[start + k : stop + k], out=diff)
            diff.add_(1e-6)
            torch.linalg.vector_norm(diff, dim=1, out=out[k, start:stop])
    return out.T.contiguous()


def sync_scores(distances: torch.Tensor, vshift: int = 15) -> LSEResult:
    """LSE-C, LSE-D and the offset from ``(N, 2·vshift + 1)`` distances."""
    mdist = distances.mean(0)
    minval, minidx = torch.min(mdist, 0)
    return LSEResult(
        lse_c=float(torch.median(mdist) - minval),
        lse_d=float(minval),
        offset=int(vshift - minidx),
        mdist=mdist.numpy(),
    )


def lse_frames(
    net: SyncNetV2,
    frames: np.ndarray,
    audio: np.ndarray | torch.Tensor,
    vshift: int = 15,
    crop: str = "frame",
    batch_size: int = 20,
    weights_root: str | os.PathLike[str] | None = None,
) -> LSEResult:
    """Sync scores of ``frames (T, H, W, 3)`` uint8 RGB at 25 fps with ``audio`` (16 kHz, float or int16).

    Args:
        crop: ``"frame"`` (the frames are face crops) or ``"track"`` (detect and crop the face); see the module doc.
        weights_root: where ``crop="track"`` looks for SCRFD's ``det_10g.onnx`` (Haar cascade when absent).
    """
    frames = np.asarray(frames)
    if crop == "track":
        frames = track_crop(frames, _face_boxes(frames, weights_root))
    elif crop != "frame":
        raise ValueError(f"crop must be 'frame' or 'track', got {crop!r}")
    elif frames.shape[1] != frames.shape[2]:
        raise LSEInputError(
            f"crop='frame' takes face crops, but the frames are {frames.shape[2]}x{frames.shape[1]} (a full or "
            f"pasted-back frame would be squeezed to 224x224): use crop='track' (lse_crop: track), which detects and "
            f"crops the face as syncnet_python's pipeline does"
        )
    samples = to_int16(audio)
    feat_v, feat_a = embed(net, _as_224_bgr(frames), mfcc(samples), len(samples), batch_size)
    return sync_scores(offset_distances(feat_v, feat_a, vshift), vshift)


def _read(video: str | os.PathLike[str]) -> tuple[np.ndarray, torch.Tensor]:
    from pctalk.audio.io import AudioLoadError, load_audio
    from pctalk.media import VideoReader

    reader = VideoReader(video, fps=FPS)
    frames = np.concatenate(list(reader.chunks()))
    try:
        audio = load_audio(video, SAMPLE_RATE)
    except AudioLoadError as err:
        raise LSEInputError(f"{video}: {err}") from err
    return frames, audio


def lse_video(
    video_path: str | os.PathLike[str],
    syncnet_path: str | os.PathLike[str] | SyncNetV2,
    vshift: int = 15,
    crop: str = "frame",
    batch_size: int = 20,
    device: str | torch.device = "cpu",
) -> LSEResult:
    """Sync scores of one video with its audio track (the input of syncnet_python's ``SyncNetInstance.evaluate``).

    Args:
        syncnet_path: ``syncnet_v2.model``, or an already loaded :class:`SyncNetV2`.

    Raises:
        VideoError: the video is missing or cannot be decoded.
        LSEInputError: it has no audio, or is shorter than 6 frames.
    """
    net = syncnet_path if isinstance(syncnet_path, SyncNetV2) else load_syncnet_v2(syncnet_path, device)
    frames, audio = _read(video_path)
    try:
        return lse_frames(net, frames, audio, vshift, crop, batch_size)
    except LSEInputError as err:
        raise LSEInputError(f"{video_path}: {err}") from None


class LSE(Metric):
    """LSE-C and LSE-D averaged over videos; ``compute()`` returns ``{"lse_c": …, "lse_d": …}``.

    ``update`` takes video paths, or ``frames`` + ``audio`` of one video. A video that cannot be scored (corrupt,
    too short, no audio) is logged with its path and counted in ``skipped``, not fatal.
    """

    full_state_update = False
    is_differentiable = False

    def __init__(
        self,
        syncnet_path: str | os.PathLike[str],
        vshift: int = 15,
        crop: str = "track",
        batch_size: int = 20,
        weights_root: str | os.PathLike[str] | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)
        self.syncnet_path, self.vshift, self.crop, self.batch_size = Path(syncnet_path), vshift, crop, batch_size
        self.weights_root = weights_root
        self._net: SyncNetV2 | None = None
        for name in ("lse_c_sum", "lse_d_sum", "videos", "skipped"):
            self.add_state(name, torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    @property
    def net(self) -> SyncNetV2:
        if self._net is None:
            self._net = load_syncnet_v2(self.syncnet_path, self.device)
        return self._net

    def update(
        self,
        videos: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | None = None,
        frames: np.ndarray | None = None,
        audio: np.ndarray | torch.Tensor | None = None,
    ) -> None:
        from pctalk.media import VideoError

        items: Sequence[object]
        if videos is None:
            if frames is None or audio is None:
                raise ValueError("LSE.update needs video paths, or frames and audio")
            items = [(frames, audio)]
        else:
            items = [videos] if isinstance(videos, (str, os.PathLike)) else list(videos)
        for item in items:
            try:
                if isinstance(item, tuple):
                    result = self.score(item[0], item[1])
                else:
                    result = lse_video(item, self.net, self.vshift, self.crop, self.batch_size)
            except (VideoError, LSEInputError) as err:
                log.warning("LSE: skipping %s", err)
                self.skipped += 1
                continue
            self.add(result)

    def score(self, frames: np.ndarray, audio: np.ndarray | torch.Tensor) -> LSEResult:
        """One video's scores, not yet counted (raises :class:`LSEInputError` for a video that cannot be scored)."""
        return lse_frames(self.net, frames, audio, self.vshift, self.crop, self.batch_size, self.weights_root)

    def add(self, result: LSEResult) -> None:
        """Count one video's scores."""
        self.lse_c_sum += result.lse_c
        self.lse_d_sum += result.lse_d
        self.videos += 1

    def compute(self) -> dict[str, torch.Tensor]:
        n = self.videos.clamp(min=1)
        nan = torch.tensor(float("nan"), dtype=torch.float64)
        return {
            "lse_c": self.lse_c_sum / n if self.videos > 0 else nan,
            "lse_d": self.lse_d_sum / n if self.videos > 0 else nan,
        }
