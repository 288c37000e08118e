"""Deep3DFaceRecon_pytorch's coefficient regressor (``ReconNetWrapper`` with a ResNet-50), for E-FID.

The checkpoint ``epoch_20.pth`` holds ``{'net_recon': state_dict, ...}``: a torchvision-layout ResNet-50 without its
``fc`` under ``backbone.``, and seven 1×1 convolutions ``final_layers.0 … 6`` giving 257 coefficients: identity 80,
expression 64, texture 80, angles 3, lighting 27, translation 3.

Input: 224×224 RGB in [0, 1], aligned from five landmarks (eye centres, nose tip, mouth corners) to the 3DMM's
mean landmarks (``BFM/similarity_Lm3D_all.mat``) as ``util/preprocess.py`` ``align_img`` does: a least-squares
scale and translation (``POS``), the whole image resized by ``102 / s`` with PIL bicubic and cropped to 224.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image
from scipy.io import loadmat
from torch import nn
from torchvision.models import resnet50

from pctalk.weights.io import load_checkpoint, load_state_dict_strict, strip_prefix

__all__ = ["COEFFICIENTS", "ReconNet", "align_face", "load_deep3dfacerecon", "load_lm3d", "pos", "split_coefficients"]

#: The coefficient groups in output order, with their sizes.
COEFFICIENTS = {"id": 80, "exp": 64, "tex": 80, "angle": 3, "gamma": 27, "trans": 3}


class ReconNet(nn.Module):
    """ResNet-50 backbone and the seven coefficient heads."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = resnet50(weights=None)
        del self.backbone.fc
        sizes = (80, 64, 80, 3, 27, 2, 1)
        self.final_layers = nn.ModuleList(nn.Conv2d(2048, n, 1, bias=True) for n in sizes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, 224, 224)`` RGB in [0, 1] -> ``(B, 257)`` coefficients."""
        b = self.backbone
        x = b.maxpool(b.relu(b.bn1(b.conv1(images))))
        x = b.avgpool(b.layer4(b.layer3(b.layer2(b.layer1(x)))))
        return torch.cat([layer(x) for layer in self.final_layers], dim=1).flatten(1)


def split_coefficients(coefficients: torch.Tensor) -> dict[str, torch.Tensor]:
    """``(B, 257)`` -> the groups of :data:`COEFFICIENTS`, e.g. ``"exp"``: ``(B, 64)``."""
    out, start = {}, 0
    for name, size in COEFFICIENTS.items():
        out[name] = coefficients[:, start : start + size]
        start += size
    return out


def load_deep3dfacerecon(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> ReconNet:
    """Load ``epoch_20.pth`` (key ``net_recon``) into :class:`ReconNet`, in eval mode."""
    ckpt = load_checkpoint(path)
    if not isinstance(ckpt, dict) or "net_recon" not in ckpt:
        raise TypeError(f"{path}: not a Deep3DFaceRecon checkpoint (no 'net_recon' entry)")
    net = ReconNet()
    load_state_dict_strict(net, strip_prefix(ckpt["net_recon"], "module."), path)
    return net.to(device).eval().requires_grad_(False)


def load_lm3d(path: str | os.PathLike[str]) -> np.ndarray:
    """The ``(5, 3)`` alignment targets from ``similarity_Lm3D_all.mat`` (68 3-D landmarks): eye centres (means of
    landmarks 37/40 and 43/46), nose tip (31), mouth corners (49, 55), in that order."""
    lm = np.asarray(loadmat(str(path))["lm"], dtype=np.float64)
    idx = np.array([31, 37, 40, 43, 46, 49, 55]) - 1
    five = np.stack([lm[idx[0]], lm[idx[[1, 2]]].mean(0), lm[idx[[3, 4]]].mean(0), lm[idx[5]], lm[idx[6]]])
    return five[[1, 2, 0, 3, 4]]


def pos(points_2d: np.ndarray, points_3d: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares weak-perspective fit ``p ≈ s R X + t``: translation ``(2,)`` and scale (``POS``).

    Args:
        points_2d: ``(N, 2)`` image points (y up).
        points_3d: ``(N, 3)`` model points.
    """
    n = len(points_2d)
    a = np.zeros((2 * n, 8))
    a[0::2, 0:3], a[0::2, 3] = points_3d, 1
    a[1::2, 4:7], a[1::2, 7] = points_3d, 1
    k = np.linalg.lstsq(a, points_2d.reshape(2 * n, 1), rcond=None)[0][:, 0]
    scale = (np.linalg.norm(k[0:3]) + np.linalg.norm(k[4:7])) / 2
    return np.array([k[3], k[7]]), float(scale)


def align_face(image: np.ndarray, landmarks: np.ndarray, lm3d: np.ndarray, size: int = 224) -> np.ndarray:
    """Deep3DFaceRecon's ``align_img``: the ``(size, size, 3)`` uint8 crop of ``image (H, W, 3)`` uint8 RGB.

    Args:
        landmarks: ``(5, 2)`` pixel coordinates (y down): left eye, right eye, nose tip, mouth left, mouth right.
        lm3d: :func:`load_lm3d`'s targets.
    """
    h0, w0 = image.shape[:2]
    lm = np.asarray(landmarks, np.float64).copy()
    lm[:, 1] = h0 - 1 - lm[:, 1]
    t, s = pos(lm, lm3d)
    s = 102.0 / s
    w, h = int(w0 * s), int(h0 * s)
    left = int(w / 2 - size / 2 + float((t[0] - w0 / 2) * s))
    up = int(h / 2 - size / 2 + float((h0 / 2 - t[1]) * s))
    resized = Image.fromarray(image).resize((w, h), resample=Image.Resampling.BICUBIC)
    return np.asarray(resized.crop((left, up, left + size, up + size)))
