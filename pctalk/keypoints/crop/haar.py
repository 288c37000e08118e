"""An offline face detector for machines without LivePortrait's ONNX files: the Haar cascade shipped inside OpenCV."""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["HaarFaceDetector"]


class HaarFaceDetector:
    """OpenCV's ``haarcascade_frontalface_default.xml`` (frontal faces only; no landmarks, no roll)."""

    def __init__(self, min_size: int = 40, scale_factor: float = 1.1, min_neighbors: int = 5) -> None:
        path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
        self.cascade = cv2.CascadeClassifier(path)
        if self.cascade.empty():
            raise RuntimeError(f"OpenCV could not load its Haar cascade {path}")
        self.min_size, self.scale_factor, self.min_neighbors = min_size, scale_factor, min_neighbors

    def detect(self, image_rgb: np.ndarray) -> list[np.ndarray]:
        """Face boxes ``(x1, y1, x2, y2)`` in ``image_rgb (H, W, 3)`` uint8, largest first."""
        gray = cv2.equalizeHist(cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY))
        found = self.cascade.detectMultiScale(
            gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors, minSize=(self.min_size,) * 2
        )
        boxes = [np.array([x, y, x + w, y + h], dtype=np.float32) for x, y, w, h in found]
        return sorted(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]), reverse=True)
