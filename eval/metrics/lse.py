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
from collections.abc import Callable, Iterable, Sequence
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
    "FaceTrack",
    "LSEInputError",
    "LSEResult",
    "SyncStream",
    "face_detector",
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
MEDIAN = 13  # frames of syncnet_python's median filter over the face boxes


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


def _track_values(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Half box size, centre y and centre x per frame of ``(N, 4)`` boxes, before the median filter."""
    boxes = np.asarray(boxes, dtype=np.float64)
    half = np.maximum(boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]) / 2
    return half, (boxes[:, 1] + boxes[:, 3]) / 2, (boxes[:, 0] + boxes[:, 2]) / 2


def _crop_face(frame: np.ndarray, half: float, cy: float, cx: float, crop_scale: float) -> np.ndarray:
    """One frame's face crop, as syncnet_python's ``crop_video`` cuts it from the filtered box."""
    pad = int(half * (1 + 2 * crop_scale))
    padded = np.pad(frame, ((pad, pad), (pad, pad), (0, 0)), constant_values=110)
    my, mx = cy + pad, cx + pad
    face = padded[int(my - half) : int(my + half * (1 + 2 * crop_scale)),
                  int(mx - half * (1 + crop_scale)) : int(mx + half * (1 + crop_scale))]  # fmt: skip
    return cv2.resize(face, (SIZE, SIZE))


def _too_few(n: int) -> LSEInputError:
    return LSEInputError(
        f"{n} frames are too few for syncnet_python's face track (a {MEDIAN}-frame median filter over the boxes)"
    )


def track_crop(frames: np.ndarray, boxes: np.ndarray, crop_scale: float = 0.4) -> np.ndarray:
    """Crop a face track as syncnet_python's ``crop_video``.

    Args:
        frames: ``(T, H, W, 3)`` uint8 frames.
        boxes: ``(T, 4)`` face boxes ``(x1, y1, x2, y2)``, one per frame.

    Returns:
        ``(T, 224, 224, 3)`` uint8 crops, in the frames' channel order.
    """
    if len(boxes) < MEDIAN:  # the median filter would zero-pad the whole track into an empty box
        raise _too_few(len(boxes))
    half, cy, cx = (medfilt(v, kernel_size=MEDIAN) for v in _track_values(boxes))
    out = np.empty((len(frames), SIZE, SIZE, 3), np.uint8)
    for i, frame in enumerate(frames):
        out[i] = _crop_face(frame, half[i], cy[i], cx[i], crop_scale)
    return out


def face_detector(weights_root: str | os.PathLike[str] | None = None) -> Callable[[np.ndarray], list[np.ndarray]]:
    """``frame (H, W, 3) -> [box (4,), ...]``: SCRFD (``insightface`` det_10g) when its file is under
    ``weights_root``, else OpenCV's Haar cascade."""
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

    return detect


class FaceTrack:
    """syncnet_python's face track (detect, hold the last box, median-filter, crop) over frames pushed in chunks.

    The crop of frame ``i`` needs the boxes of frames ``i − 6 … i + 6`` (the 13-frame median filter, zero-padded at
    the ends as ``scipy.signal.medfilt``), so a frame comes out once the six after it are in, and the last six at
    :meth:`finish`. Memory: a few frames and one box per frame, whatever the video's length (frames before the first
    detection wait for it). The crops equal :func:`track_crop` of the whole video with its boxes.

    Args:
        detect: ``frame -> boxes`` (:func:`face_detector`).
    """

    def __init__(self, detect: Callable[[np.ndarray], list[np.ndarray]], crop_scale: float = 0.4) -> None:
        self.detect, self.crop_scale = detect, crop_scale
        self.boxes: list[np.ndarray | None] = []
        self.pending: list[np.ndarray] = []  # frames not yet cropped, from index ``self.done``
        self.done = 0
        self._first: np.ndarray | None = None

    def push(self, frames: np.ndarray) -> np.ndarray:
        """Add ``(t, H, W, 3)`` frames; returns the ``(k, 224, 224, 3)`` crops now final (``k`` may be 0)."""
        for frame in frames:
            found = self.detect(frame)
            box = found[0] if found else (self.boxes[-1] if self.boxes else None)
            if box is not None and self._first is None:
                self._first = box
                self.boxes = [box if b is None else b for b in self.boxes]
            self.boxes.append(box)
            self.pending.append(frame)
        if self._first is None:
            return np.empty((0, SIZE, SIZE, 3), np.uint8)
        return self._emit(len(self.boxes) - MEDIAN // 2, total=None)

    def finish(self) -> np.ndarray:
        """The remaining crops.

        Raises:
            LSEInputError: no face in any frame, or fewer frames than the median filter spans.
        """
        if self._first is None:
            raise LSEInputError("no face found in any frame")
        if len(self.boxes) < MEDIAN:
            raise _too_few(len(self.boxes))
        return self._emit(len(self.boxes), total=len(self.boxes))

    def _emit(self, stop: int, total: int | None) -> np.ndarray:
        r = MEDIAN // 2
        out = []
        for i in range(self.done, max(self.done, stop)):
            lo = max(0, i - r)
            window = np.stack(self.boxes[lo : i + r + 1])  # type: ignore[arg-type]
            zeros = r - i + lo + (0 if total is None else max(0, i + r + 1 - total))
            values = [np.median(np.concatenate([v, np.zeros(zeros)])) for v in _track_values(window)]
            out.append(_crop_face(self.pending[i - self.done], *values, self.crop_scale))
        self.pending = self.pending[max(0, stop - self.done) :]
        self.done = max(self.done, stop)
        return np.stack(out) if out else np.empty((0, SIZE, SIZE, 3), np.uint8)


def _face_boxes(frames: np.ndarray, weights_root: str | os.PathLike[str] | None) -> np.ndarray:
    """One face box per frame (:func:`face_detector`); a frame without a detection keeps the previous box."""
    detect = face_detector(weights_root)
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
    return _padded_distances(feat_v, F.pad(feat_a, (0, 0, vshift, vshift)), vshift, block)


def _padded_distances(feat_v: torch.Tensor, padded: torch.Tensor, vshift: int, block: int = 256) -> torch.Tensor:
    """``(n, 2·vshift + 1)`` distances of ``(n, D)`` visual embeddings to the rows ``i … i + 2·vshift`` of
    ``padded`` (``(n + 2·vshift, D)`` audio embeddings ``−vshift … n + vshift`` around them, zeros past the ends)."""
    n, width = len(feat_v), 2 * vshift + 1
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


class SyncStream:
    """LSE of one video whose 224×224 face frames arrive in chunks: the result equals :func:`lse_frames` on the
    whole video, bit for bit.

    Windows are embedded in syncnet_python's batches of ``batch_size`` (the same batches as the whole video's), and a
    batch's ``2·vshift + 1`` distances are computed as soon as the audio embeddings ``vshift`` windows either side of
    it exist; only ``(N, 2·vshift + 1)`` distances are kept, so memory does not grow with the frames (a few batches
    of crops and embeddings, the MFCC of the audio).

    Args:
        net: SyncNet.
        audio: the whole 16 kHz track (float in [-1, 1] or int16).
    """

    def __init__(self, net: SyncNetV2, audio: np.ndarray | torch.Tensor, vshift: int = 15, batch_size: int = 20):
        samples = to_int16(audio)
        self.net, self.vshift, self.batch_size = net, vshift, batch_size
        self.device = next(net.parameters()).device
        self.coefficients = torch.from_numpy(mfcc(samples)).float()
        self.n_samples = len(samples)
        self.audio_windows = len(samples) // (SAMPLE_RATE // FPS)
        self.frames = np.empty((0, SIZE, SIZE, 3), np.uint8)  # BGR crops from frame ``self.first`` on
        self.first = self.seen = self.embedded = 0  # ``embedded``: batches embedded so far
        self.visual: dict[int, torch.Tensor] = {}
        self.sound: dict[int, torch.Tensor] = {}
        self.distances: list[torch.Tensor] = []
        self.reach = -(-vshift // batch_size)  # audio batches either side that a batch's distances need

    def push(self, frames_bgr: np.ndarray) -> None:
        """Add ``(t, 224, 224, 3)`` uint8 BGR frames."""
        self.frames = np.concatenate([self.frames, np.asarray(frames_bgr, np.uint8)])
        self.seen += len(frames_bgr)
        self._advance(min(self.seen, self.audio_windows) - WINDOW, final=False)

    def finish(self) -> LSEResult:
        """The video's scores.

        Raises:
            LSEInputError: fewer than 6 frames or 0.24 s of audio.
        """
        n = min(self.seen, self.audio_windows) - WINDOW
        if n < 1:
            raise LSEInputError(f"too short: {self.seen} frames and {self.n_samples / SAMPLE_RATE:.2f} s of audio; "
                                f"LSE needs at least {WINDOW + 1} frames (0.24 s) of both")  # fmt: skip
        self._advance(n, final=True)
        return sync_scores(torch.cat(self.distances), self.vshift)

    @torch.inference_mode()
    def _advance(self, windows: int, final: bool) -> None:
        """Embed every batch whose windows are all known (``windows``: how many windows surely exist; ``final``:
        exactly that many) and compute the distances their audio neighbours allow."""
        bs = self.batch_size
        batches = -(-windows // bs) if final else max(0, windows // bs)
        while self.embedded < batches:
            b = self.embedded
            idx = range(b * bs, min(windows, (b + 1) * bs))
            video = torch.from_numpy(self.frames[b * bs - self.first : idx[-1] + WINDOW - self.first])
            video = video.permute(3, 0, 1, 2)  # (3, t, 224, 224)
            clips = torch.stack([video[:, v - b * bs : v - b * bs + WINDOW] for v in idx])
            clips = clips.to(self.device, torch.float32)
            self.visual[b] = self.net.forward_lip(clips).float().cpu()
            cc = self.coefficients
            mf = torch.stack([cc[:, MFCC_PER_FRAME * v : MFCC_PER_FRAME * v + MFCC_WINDOW] for v in idx])
            self.sound[b] = self.net.forward_aud(mf[:, None].to(self.device)).float().cpu()
            self.embedded += 1
            drop = (b + 1) * bs - self.first
            self.frames, self.first = self.frames[drop:], self.first + drop
        ready = batches if final else self.embedded - self.reach
        done = len(self.distances)
        for d in range(done, max(done, ready)):
            n_d, dim = len(self.visual[d]), self.visual[d].shape[1]
            lo, hi = d * bs - self.vshift, d * bs + n_d + self.vshift  # the audio windows these need
            rows = [torch.zeros(max(0, -lo), dim)]  # zero rows before the first window
            for a in range(max(0, lo) // bs, (hi - 1) // bs + 1):
                if a in self.sound:  # (batches past the last are zero rows)
                    rows.append(self.sound[a][max(lo, a * bs) - a * bs : hi - a * bs])
            padded = torch.cat(rows)
            padded = torch.cat([padded, torch.zeros(hi - lo - len(padded), dim)])
            self.distances.append(_padded_distances(self.visual.pop(d), padded, self.vshift))
            self.sound.pop(d - self.reach, None)


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
    stream = SyncStream(net, audio, vshift, batch_size)
    stream.push(_as_224_bgr(frames))
    return stream.finish()


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
