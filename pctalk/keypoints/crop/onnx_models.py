"""The three ONNX models of LivePortrait's cropper, run with onnxruntime: InsightFace's SCRFD face detector
(``det_10g.onnx``), its 106-point landmark model (``2d106det.onnx``) and LivePortrait's 203-point landmark model
(``landmark.onnx``). Pre- and post-processing follow InsightFace's ``model_zoo`` and LivePortrait's
``human_landmark_runner``; images here are RGB uint8 (InsightFace's BGR input with ``swapRB`` is the same thing).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pctalk.keypoints.crop.geometry import landmark_crop_transform, transform_points, warp

__all__ = ["DetectedFace", "FaceDetector", "Landmark106", "Landmark203"]


def _session(path: str | os.PathLike[str]):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    providers = [
        p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in onnxruntime.get_available_providers()
    ]
    return onnxruntime.InferenceSession(str(path), sess_options=options, providers=providers)


def _blob(image_rgb: np.ndarray, mean: float, std: float) -> np.ndarray:
    """``(1, 3, H, W)`` float32 ``(image - mean) / std``, RGB."""
    return ((image_rgb.astype(np.float32) - mean) / std).transpose(2, 0, 1)[None]


@dataclass
class DetectedFace:
    """A detection: ``bbox`` (x1, y1, x2, y2), ``score``, and five keypoints ``(5, 2)`` when the model has them."""

    bbox: np.ndarray
    score: float
    kps: np.ndarray | None = None

    @property
    def area(self) -> float:
        return float((self.bbox[2] - self.bbox[0]) * (self.bbox[3] - self.bbox[1]))


class FaceDetector:
    """SCRFD (``det_10g.onnx``): letterboxed to ``input_size``, anchors at strides 8/16/32 (2 per cell), NMS."""

    def __init__(
        self, path: str | os.PathLike[str], input_size: int = 512, threshold: float = 0.1, nms_threshold: float = 0.4
    ) -> None:
        self.path = Path(path)
        self.session = _session(path)
        self.input_name = self.session.get_inputs()[0].name
        outputs = self.session.get_outputs()
        self.output_names = [o.name for o in outputs]
        counts = {6: (3, 2, False), 9: (3, 2, True), 10: (5, 1, False), 15: (5, 1, True)}
        if len(outputs) not in counts:
            raise ValueError(f"{path}: {len(outputs)} outputs; an SCRFD detector has 6, 9, 10 or 15")
        levels, self.num_anchors, self.use_kps = counts[len(outputs)]
        self.strides = (8, 16, 32, 64, 128)[:levels]
        self.batched = len(outputs[0].shape) == 3
        self.input_size, self.threshold, self.nms_threshold = input_size, threshold, nms_threshold

    def _anchors(self, height: int, width: int, stride: int) -> np.ndarray:
        ys, xs = np.mgrid[:height, :width]
        centres = (np.stack([xs, ys], axis=-1).astype(np.float32) * stride).reshape(-1, 2)
        return np.repeat(centres, self.num_anchors, axis=0) if self.num_anchors > 1 else centres

    def detect(self, image_rgb: np.ndarray) -> list[DetectedFace]:
        """Faces in ``image_rgb (H, W, 3)`` uint8, largest first."""
        h, w = image_rgb.shape[:2]
        size = self.input_size
        if h / w > 1.0:
            new_h, new_w = size, int(size / (h / w))
        else:
            new_w, new_h = size, int(size * (h / w))
        det_scale = new_h / h
        canvas = np.zeros((size, size, 3), np.uint8)
        canvas[:new_h, :new_w] = cv2.resize(image_rgb, (new_w, new_h))
        outs = self.session.run(self.output_names, {self.input_name: _blob(canvas, 127.5, 128.0)})
        if self.batched:
            outs = [o[0] for o in outs]
        levels = len(self.strides)
        scores, boxes, kpss = [], [], []
        for i, stride in enumerate(self.strides):
            centres = self._anchors(size // stride, size // stride, stride)
            score = outs[i].reshape(-1)
            keep = score >= self.threshold
            dist = outs[i + levels] * stride
            box = np.concatenate([centres - dist[:, :2], centres + dist[:, 2:4]], axis=1)
            scores.append(score[keep])
            boxes.append(box[keep])
            if self.use_kps:
                kp = (outs[i + 2 * levels] * stride).reshape(len(centres), -1, 2) + centres[:, None]
                kpss.append(kp[keep])
        score = np.concatenate(scores)
        order = score.argsort()[::-1]
        dets = np.hstack([np.concatenate(boxes) / det_scale, score[:, None]]).astype(np.float32)[order]
        kept = self._nms(dets)
        kps = np.concatenate(kpss)[order][kept] / det_scale if self.use_kps else None
        faces = [
            DetectedFace(dets[j, :4], float(dets[j, 4]), None if kps is None else kps[n]) for n, j in enumerate(kept)
        ]
        return sorted(faces, key=lambda f: f.area, reverse=True)

    def _nms(self, dets: np.ndarray) -> list[int]:
        x1, y1, x2, y2, scores = dets.T
        areas = (x2 - x1 + 1) * (y2 - y1 + 1)
        order = scores.argsort()[::-1]
        keep = []
        while order.size > 0:
            i = order[0]
            keep.append(int(i))
            w = np.maximum(0.0, np.minimum(x2[i], x2[order[1:]]) - np.maximum(x1[i], x1[order[1:]]) + 1)
            h = np.maximum(0.0, np.minimum(y2[i], y2[order[1:]]) - np.maximum(y1[i], y1[order[1:]]) + 1)
            inter = w * h
            overlap = inter / (areas[i] + areas[order[1:]] - inter)
            order = order[np.where(overlap <= self.nms_threshold)[0] + 1]
        return keep


class Landmark106:
    """InsightFace's 106-point model (``2d106det.onnx``) on a square crop 1.5x the detection box."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        import onnx

        self.path = Path(path)
        # InsightFace's rule: models that normalise inside the graph (Sub and Mul among the first nodes, as MXNet
        # exports do) take raw pixels; the others take (x - 127.5) / 128.
        names = [node.name for node in onnx.load(str(path)).graph.node[:8]]
        has_sub = any(n.startswith(("Sub", "_minus")) for n in names)
        has_mul = any(n.startswith(("Mul", "_mul")) for n in names)
        has_sub |= any(i < 3 and n == "bn_data" for i, n in enumerate(names))
        has_mul |= any(i < 3 and n == "bn_data" for i, n in enumerate(names))
        self.mean, self.std = (0.0, 1.0) if has_sub and has_mul else (127.5, 128.0)
        self.session = _session(path)
        inp = self.session.get_inputs()[0]
        self.input_name, self.input_size = inp.name, int(inp.shape[3])
        output = self.session.get_outputs()[0]
        self.output_name, self.num_points = output.name, int(output.shape[1]) // 2

    def run(self, image_rgb: np.ndarray, bbox: np.ndarray) -> np.ndarray:
        """``(106, 2)`` landmarks in image pixels for the face in ``bbox`` (x1, y1, x2, y2)."""
        w, h = bbox[2] - bbox[0], bbox[3] - bbox[1]
        cx, cy = (bbox[2] + bbox[0]) / 2, (bbox[3] + bbox[1]) / 2
        s = self.input_size / (max(w, h) * 1.5)
        half = self.input_size / 2
        m = np.array([[s, 0, half - cx * s], [0, s, half - cy * s]], dtype=np.float64)
        crop = cv2.warpAffine(image_rgb, m, (self.input_size, self.input_size), borderValue=0.0)
        pred = self.session.run([self.output_name], {self.input_name: _blob(crop, self.mean, self.std)})[0][0]
        pred = pred.reshape(-1, 2)[-self.num_points :].astype(np.float32)
        pred = (pred + 1) * (self.input_size // 2)
        return transform_points(pred, cv2.invertAffineTransform(m)).astype(np.float32)


class Landmark203:
    """LivePortrait's 203-point model (``landmark.onnx``) on a 224 crop (scale 1.5, vy -0.1) around landmarks."""

    dsize = 224

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.session = _session(path)
        self.input_name = self.session.get_inputs()[0].name

    def run(self, image_rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """``(203, 2)`` landmarks in image pixels, refining ``landmarks`` (106 or 203 points) of one face."""
        m_o2c = landmark_crop_transform(landmarks, self.dsize, scale=1.5, vy_ratio=-0.1)
        crop = warp(image_rgb, m_o2c, self.dsize)
        inp = (crop.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
        points = self.session.run(None, {self.input_name: inp})[2][0].reshape(-1, 2) * self.dsize
        return transform_points(points, np.linalg.inv(m_o2c)).astype(np.float32)
