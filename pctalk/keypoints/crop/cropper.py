"""``FaceCropper``: find the face, cut LivePortrait's 256x256 crop, and paste rendered faces back.

Backends:

- ``"liveportrait"`` runs LivePortrait's cropper with its three ONNX models (SCRFD detection, 106 then 203
  landmarks) and reproduces its crop: square, roll removed, scale 2.3, vy -0.125, 512x512 then area-resized to 256.
  Videos are tracked as LivePortrait does: detection on the first frame, then the 203-point model refines the
  previous frame's landmarks.
- ``"dlib"`` uses dlib's HOG face detector and 68-point landmarks (both install from PyPI, no files to fetch), for
  machines without the ONNX files: LivePortrait's crop geometry from those landmarks (roll removed). Videos are
  detected per frame, following the face that overlaps the tracked one most.
- ``"opencv"`` uses the Haar cascade inside OpenCV, for machines without the ONNX files (tests, the quickstart):
  an axis-aligned square 2x the detected box, shifted up by 0.1 of its side, which frames faces like
  LivePortrait's crop; no landmarks and no roll removal. Videos are detected per frame, following the
  detection that overlaps the tracked face most, with the box smoothed.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pctalk.keypoints.crop.geometry import box_crop_transform, landmark_crop_transform, transform_points, warp
from pctalk.keypoints.crop.haar import HaarFaceDetector
from pctalk.weights import MissingWeightsError
from pctalk.weights.registry import default_root, get, missing_message

__all__ = ["CROP_SIZE", "Crop", "FaceCropper", "FaceNotFoundError", "face_box", "paste_back", "soft_mask"]

#: Side of the crop LivePortrait's networks take.
CROP_SIZE = 256
#: Side of the intermediate crop that ``Crop.M_c2o`` refers to (and of the rendered image).
DSIZE = 512
SCALE, VX_RATIO, VY_RATIO = 2.3, 0.0, -0.125
HAAR_SCALE, HAAR_VY_RATIO = 2.0, -0.1


class FaceNotFoundError(ValueError):
    """No face was found where one was needed."""


@dataclass
class Crop:
    """One face crop.

    Attributes:
        image: ``(256, 256, 3)`` uint8 RGB crop, the networks' input.
        M_c2o: ``(3, 3)`` affine from the 512x512 crop space (where renders live) to the original image.
        M_o2c: ``(3, 3)``, its inverse.
        landmarks: ``(203, 2)`` landmarks in the original image (``None`` for the OpenCV backend).
        source_size: ``(height, width)`` of the original image.
    """

    image: np.ndarray
    M_c2o: np.ndarray
    M_o2c: np.ndarray
    landmarks: np.ndarray | None
    source_size: tuple[int, int]

    @property
    def landmarks_crop(self) -> np.ndarray | None:
        """Landmarks in the 256 crop's pixels."""
        if self.landmarks is None:
            return None
        return transform_points(self.landmarks, self.M_o2c) * (CROP_SIZE / DSIZE)


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = f"{image.shape} {image.dtype}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"expected an RGB image (H, W, 3) uint8, got {got}")


def _make_crop(image: np.ndarray, m_o2c: np.ndarray, landmarks: np.ndarray | None) -> Crop:
    big = warp(image, m_o2c, DSIZE)
    small = cv2.resize(big, (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_AREA)
    return Crop(small, np.linalg.inv(m_o2c.astype(np.float64)), m_o2c.astype(np.float64), landmarks, image.shape[:2])


class FaceCropper:
    """Face detection, LivePortrait's crop, and paste-back.

    Args:
        backend: ``"liveportrait"`` (the ONNX models under ``weights_root``), ``"dlib"`` (HOG detector and 68
            landmarks from PyPI packages) or ``"opencv"`` (Haar cascade, no landmarks).
        weights_root: the weights root holding ``liveportrait/landmark.onnx`` and
            ``insightface/models/buffalo_l/{det_10g,2d106det}.onnx`` (default: ``$PCTALK_WEIGHTS``).
    """

    def __init__(self, backend: str = "liveportrait", weights_root: str | os.PathLike[str] | None = None) -> None:
        if backend not in ("liveportrait", "dlib", "opencv"):
            raise ValueError(f"backend must be 'liveportrait', 'dlib' or 'opencv', got {backend!r}")
        self.backend = backend
        if backend == "opencv":
            self.haar = HaarFaceDetector()
            return
        if backend == "dlib":
            from pctalk.keypoints.crop.dlib_faces import DlibFaceDetector

            self.dlib = DlibFaceDetector()
            return
        from pctalk.keypoints.crop.onnx_models import FaceDetector, Landmark106, Landmark203

        root = Path(weights_root) if weights_root is not None else default_root()
        paths = {}
        for name in ("insightface.det_10g", "insightface.2d106det", "liveportrait.landmark"):
            path = root / get(name).path
            if not path.is_file():
                raise MissingWeightsError(
                    missing_message(get(name), root)
                    + " Or use the dlib cropper (--cropper dlib), which needs no files."
                )
            paths[name] = path
        self.detector = FaceDetector(paths["insightface.det_10g"])
        self.landmark106 = Landmark106(paths["insightface.2d106det"])
        self.landmark203 = Landmark203(paths["liveportrait.landmark"])

    # -- single images ------------------------------------------------------------------------------------------
    def crop(self, image: np.ndarray) -> Crop:
        """The crop of the largest face in ``image (H, W, 3)`` uint8 RGB.

        Raises:
            FaceNotFoundError: no face in the image.
        """
        _check_image(image)
        if self.backend == "opencv":
            box = self._haar_box(image)
            return _make_crop(image, self._box_transform(box), None)
        if self.backend == "dlib":
            faces = self.dlib.detect(image)
            if not faces:
                raise FaceNotFoundError("no face found (dlib's frontal face detector)")
            _warn_several([f.box for f in faces])
            return self._landmark_crop(image, faces[0].landmarks)
        landmarks = self._detect_landmarks(image)
        return self._landmark_crop(image, landmarks)

    def _haar_box(self, image: np.ndarray) -> np.ndarray:
        boxes = self.haar.detect(image)
        if not boxes:
            raise FaceNotFoundError("no face found (OpenCV Haar cascade; frontal faces only)")
        _warn_several(boxes)
        return boxes[0]

    @staticmethod
    def _box_transform(box: np.ndarray) -> np.ndarray:
        side = HAAR_SCALE * float(box[2] - box[0])
        centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2 + HAAR_VY_RATIO * side])
        return box_crop_transform(centre, side, DSIZE)

    def _detect_landmarks(self, image: np.ndarray) -> np.ndarray:
        faces = self.detector.detect(image)
        if not faces:
            raise FaceNotFoundError("no face found (SCRFD detector)")
        return self.landmark203.run(image, self.landmark106.run(image, faces[0].bbox))

    def _landmark_crop(self, image: np.ndarray, landmarks: np.ndarray) -> Crop:
        m = landmark_crop_transform(landmarks, DSIZE, SCALE, VX_RATIO, VY_RATIO, rotate=True)
        return _make_crop(image, m, landmarks)

    # -- videos ---------------------------------------------------------------------------------------------------
    def crop_video(self, frames: Iterable[np.ndarray], smoothing: float = 0.6) -> list[Crop]:
        """Crops of one tracked face through ``frames``; see :meth:`track`."""
        return list(self.track(frames, smoothing))

    def track(self, frames: Iterable[np.ndarray], smoothing: float = 0.6) -> Iterator[Crop]:
        """Crops of one tracked face through ``frames`` (each ``(H, W, 3)`` uint8 RGB), one per frame, as they come
        (so chunks of a long video can be fed in turn).

        Args:
            smoothing: OpenCV backend only: weight of the previous box in the running average (0 = none).

        Raises:
            FaceNotFoundError: no face in the first frame (the message gives the frame).
        """
        previous: np.ndarray | None = None
        for i, frame in enumerate(frames):
            _check_image(frame)
            try:
                if self.backend == "dlib":
                    faces = self.dlib.detect(frame)
                    if previous is None:
                        if not faces:
                            raise FaceNotFoundError("no face found (dlib's frontal face detector)")
                        _warn_several([f.box for f in faces])
                        face = faces[0]
                    else:  # the face that overlaps the tracked one most; none: its landmarks in the last box
                        face = max(faces, key=lambda f: _iou(f.box, previous), default=None)
                        if face is None or _iou(face.box, previous) <= 0.3:
                            face = None
                    landmarks = face.landmarks if face is not None else self.dlib.landmarks(frame, previous)
                    previous = face.box if face is not None else previous
                    crop = self._landmark_crop(frame, landmarks)
                elif self.backend == "opencv":
                    boxes = self.haar.detect(frame)
                    if previous is None:
                        if not boxes:
                            raise FaceNotFoundError("no face found (OpenCV Haar cascade; frontal faces only)")
                        box = boxes[0]
                    else:  # the detection that overlaps the tracked face most; none: keep the last box
                        best = max(boxes, key=lambda b: _iou(b, previous), default=None)
                        box = previous
                        if best is not None and _iou(best, previous) > 0.3:
                            box = smoothing * previous + (1 - smoothing) * best
                    previous = box
                    crop = _make_crop(frame, self._box_transform(box), None)
                else:
                    landmarks = (
                        self._detect_landmarks(frame) if previous is None else self.landmark203.run(frame, previous)
                    )
                    previous = landmarks  # track from the last frame
                    crop = self._landmark_crop(frame, landmarks)
            except FaceNotFoundError as err:
                raise FaceNotFoundError(f"frame {i}: {err}") from None
            yield crop


def _warn_several(boxes: list[np.ndarray]) -> None:
    if len(boxes) > 1:
        chosen = ", ".join(f"{v:.0f}" for v in boxes[0])
        warnings.warn(
            f"{len(boxes)} faces found; cropping the largest, box (x1, y1, x2, y2) = ({chosen}). Crop the image to the "
            f"face you want if that is not it.",
            stacklevel=3,
        )


def face_box(size: int) -> tuple[int, int, int, int]:
    """``(x1, y1, x2, y2)`` of the face inside a LivePortrait crop (or render) of ``size`` pixels: a square of side
    ``size / 2.3`` (the crop's scale) centred ``0.125 * size`` below the crop's centre (its vy ratio)."""
    side = size / SCALE
    cx, cy = size / 2, size / 2 - VY_RATIO * size
    return int(cx - side / 2), int(cy - side / 2), int(cx + side / 2), int(cy + side / 2)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def soft_mask(size: int = DSIZE, margin: float = 0.08, feather: float = 0.12) -> np.ndarray:
    """``(size, size)`` float32 paste-back mask in crop space: 1 inside, 0 within ``margin`` of the border, and a
    smooth ramp ``feather`` wide between (both as fractions of ``size``)."""
    t = (np.arange(size, dtype=np.float32) + 0.5) / size
    edge = np.minimum(t, 1 - t)
    ramp = np.clip((edge - margin) / feather, 0, 1)
    ramp = ramp * ramp * (3 - 2 * ramp)  # smoothstep
    return np.outer(ramp, ramp).astype(np.float32)


def paste_back(generated: np.ndarray, crop: Crop, original: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Blend a rendered face back into the frame it was cropped from.

    Args:
        generated: ``(S, S, 3)`` uint8 RGB render of the crop (any S: 512 from the decoder, or 256).
        crop: the :class:`Crop` of ``original``.
        original: ``(H, W, 3)`` uint8 RGB frame.
        mask: ``(S', S')`` soft mask in crop space (default :func:`soft_mask`).

    Returns:
        ``(H, W, 3)`` uint8: ``original`` outside the mask's footprint, bit for bit, and the render blended in
        inside it.
    """
    _check_image(generated)
    _check_image(original)
    if original.shape[:2] != crop.source_size:
        raise ValueError(f"original is {original.shape[:2]}, but the crop was cut from an image of {crop.source_size}")
    side = generated.shape[0]
    if generated.shape[1] != side:
        raise ValueError(f"generated must be square, got {generated.shape[:2]}")
    mask = soft_mask(side) if mask is None else mask
    to_original = crop.M_c2o @ np.diag([DSIZE / side, DSIZE / side, 1.0])  # render pixels -> crop space -> original
    h, w = original.shape[:2]
    alpha = warp(mask.astype(np.float32), to_original, (w, h), border=cv2.BORDER_CONSTANT)
    face = warp(generated, to_original, (w, h), border=cv2.BORDER_CONSTANT).astype(np.float32)
    inside = alpha > 0
    out = original.copy()
    a = alpha[inside][:, None]
    out[inside] = np.clip(a * face[inside] + (1 - a) * original[inside], 0, 255).round().astype(np.uint8)
    return out
