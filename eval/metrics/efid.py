"""E-FID: the Fréchet distance between the 64-d Deep3DFaceRecon expression coefficients of generated and
reference frames.

Each frame is aligned from five landmarks as Deep3DFaceRecon aligns its inputs (:func:`align_face`). Landmarks come
with the frames, or from SCRFD (``insightface/models/buffalo_l/det_10g.onnx``, whose five keypoints are the ones
Deep3DFaceRecon's MTCNN gives) under the weights root.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from eval.metrics.frechet import FeatureStatistics
from eval.networks.deep3dfacerecon import align_face, load_deep3dfacerecon, load_lm3d, split_coefficients
from pctalk.weights.registry import resolve

__all__ = ["ExpressionFID"]


class ExpressionFID(FeatureStatistics):
    """E-FID over frames; states are coefficient sums, so DDP ranks reduce exactly.

    Args:
        checkpoint: Deep3DFaceRecon's ``epoch_20.pth``.
        lm3d: ``BFM/similarity_Lm3D_all.mat`` (default: the registry's ``efid.lm3d`` under the weights root).
        weights_root: where SCRFD's ``det_10g.onnx`` is found when landmarks are not given.

    ``update(frames, real, landmarks=None)``: ``(N, H, W, 3)`` uint8 RGB frames and optional ``(N, 5, 2)`` landmarks.
    Frames where no face is found are counted in ``skipped``.
    """

    def __init__(
        self,
        checkpoint: str | os.PathLike[str],
        lm3d: str | os.PathLike[str] | None = None,
        weights_root: str | os.PathLike[str] | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(num_features=64, **kwargs)
        self.net = load_deep3dfacerecon(checkpoint)
        self.lm3d = load_lm3d(resolve("efid.lm3d", weights_root) if lm3d is None else Path(lm3d))
        self.weights_root = weights_root
        self._detector = None
        self.add_state("skipped", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def _landmarks(self, frame: np.ndarray) -> np.ndarray | None:
        if self._detector is None:
            from pctalk.keypoints.crop.onnx_models import FaceDetector

            self._detector = FaceDetector(resolve("insightface.det_10g", self.weights_root))
        faces = [f for f in self._detector.detect(frame) if f.kps is not None]
        return faces[0].kps if faces else None

    def expression(self, frames: np.ndarray, landmarks: np.ndarray | None = None) -> torch.Tensor:
        """``(M, 64)`` expression coefficients of the frames with a face (``M ≤ N``); the others are counted in
        ``skipped``."""
        coefficients, missed = self.coefficients(frames, landmarks)
        self.skipped += missed
        return coefficients

    @torch.inference_mode()
    def coefficients(self, frames: np.ndarray, landmarks: np.ndarray | None = None) -> tuple[torch.Tensor, int]:
        """``(M, 64)`` expression coefficients of the frames with a face, and how many had none (``N − M``); the
        metric's state is left as it is (:meth:`add_counted` adds them)."""
        crops = []
        for i, frame in enumerate(np.asarray(frames)):
            lm = landmarks[i] if landmarks is not None else self._landmarks(frame)
            if lm is not None:
                crops.append(align_face(frame, lm, self.lm3d))
        missed = len(frames) - len(crops)
        if not crops:
            return torch.zeros(0, 64), missed
        images = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().div(255.0).to(self.device)
        return split_coefficients(self.net(images))["exp"], missed

    def add_counted(self, coefficients: torch.Tensor, missed: int, real: bool) -> None:
        """Add coefficients from :meth:`coefficients` and count the frames without a face."""
        self.skipped += missed
        if len(coefficients):
            self.add(coefficients, real)

    def update(self, frames: np.ndarray | torch.Tensor, real: bool, landmarks: np.ndarray | None = None) -> None:
        frames = frames.cpu().numpy() if isinstance(frames, torch.Tensor) else frames
        self.add_counted(*self.coefficients(frames, landmarks), real)
