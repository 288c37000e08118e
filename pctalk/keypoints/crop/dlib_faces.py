"""An offline face detector with landmarks whose models install from PyPI: dlib's HOG face detector (compiled into
the ``dlib-bin`` wheel) and its 68-point shape predictor (shipped in the ``face_recognition_models`` package).

For machines without LivePortrait's ONNX crop models: unlike OpenCV's Haar cascade it finds faces, not face-like
texture, and its landmarks let the crop follow the eyes and lips (roll removed, as LivePortrait's crop).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["DetectedFace", "DlibFaceDetector"]


@dataclass
class DetectedFace:
    """A face: its box ``(x1, y1, x2, y2)``, the detector's score and 68 landmarks ``(68, 2)`` (iBUG order)."""

    box: np.ndarray
    score: float
    landmarks: np.ndarray

    @property
    def area(self) -> float:
        return float((self.box[2] - self.box[0]) * (self.box[3] - self.box[1]))


class DlibFaceDetector:
    """dlib's frontal face detector and 68-point shape predictor.

    Args:
        upsample: times the image is upsampled before detection (1 finds faces down to about 40 pixels).
        relative_score: detections scoring below this fraction of the best one are dropped (HOG's weak responses
            on face-like texture).
    """

    def __init__(self, upsample: int = 1, relative_score: float = 0.25) -> None:
        import dlib
        import face_recognition_models

        self._dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())
        self.upsample, self.relative_score = upsample, relative_score

    def landmarks(self, image_rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
        """``(68, 2)`` landmarks of the face in ``box``."""
        rect = self._dlib.rectangle(*(int(np.rint(v)) for v in box))
        shape = self.predictor(image_rgb, rect)
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)

    def detect(self, image_rgb: np.ndarray) -> list[DetectedFace]:
        """The faces in ``image_rgb (H, W, 3)`` uint8, largest first (then by score)."""
        rects, scores, _ = self.detector.run(np.ascontiguousarray(image_rgb), self.upsample, 0.0)
        if not rects:
            return []
        best = max(scores)
        faces = [
            DetectedFace(np.array([r.left(), r.top(), r.right(), r.bottom()], np.float32), float(s), np.empty(0))
            for r, s in zip(rects, scores)
            if s >= self.relative_score * best
        ]
        for face in faces:
            face.landmarks = self.landmarks(image_rgb, face.box)
        return sorted(faces, key=lambda f: (f.area, f.score), reverse=True)
