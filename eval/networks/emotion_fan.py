"""Emotion-FAN (Meng et al., ICIP 2019): ResNet-18 with frame attention, in the layout of Open-Debin/Emotion-FAN's
``ResNet_AT`` so its checkpoints (``{'epoch', 'state_dict' (keys prefixed 'module.'), 'accuracy'}``) load unchanged.

Frames are face crops resized to 224 (``transforms.Resize(224)``) and scaled to [0, 1] (``ToTensor``), with no
mean/std normalisation, as Emotion-FAN feeds them. A video is scored with relation attention: per-frame features
``f`` and self-attention weights ``α = σ(W_α f)``; the video feature ``v = Σ α f / Σ α``; relation weights
``β = σ(W_β [f, v])``; the pooled ``Σ α [f, v] / Σ α β`` goes to ``pred_fc2`` (Emotion-FAN's own evaluation weighs
the numerator by ``α`` alone, and so do we). Self attention scores ``pred_fc1(v)``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from pctalk.weights.io import load_checkpoint, load_state_dict_strict, strip_prefix

__all__ = ["EmotionFAN", "load_emotion_fan", "preprocess_faces"]


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class EmotionFAN(nn.Module):
    """ResNet-18 frame encoder with self- and relation-attention heads.

    Args:
        num_classes: emotions the heads predict (7 for AFEW, 8 for MEAD).
    """

    def __init__(self, num_classes: int = 8) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths, cin = (64, 128, 256, 512), 64
        for i, width in enumerate(widths, start=1):
            stride = 1 if i == 1 else 2
            self.add_module(f"layer{i}", nn.Sequential(BasicBlock(cin, width, stride), BasicBlock(width, width)))
            cin = width
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.5)
        self.dropout2 = nn.Dropout(0.6)
        self.alpha = nn.Sequential(nn.Linear(512, 1), nn.Sigmoid())
        self.beta = nn.Sequential(nn.Linear(1024, 1), nn.Sigmoid())
        self.pred_fc1 = nn.Linear(512, num_classes)
        self.pred_fc2 = nn.Linear(1024, num_classes)

    def frame_features(self, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(T, 3, 224, 224)`` faces in [0, 1] -> ``(T, 512)`` features and ``(T, 1)`` self-attention weights."""
        f = self.maxpool(self.relu(self.bn1(self.conv1(faces))))
        f = self.layer4(self.layer3(self.layer2(self.layer1(f))))
        f = self.avgpool(f).flatten(1)
        return f, self.alpha(self.dropout(f))

    def video_logits(self, features: torch.Tensor, alphas: torch.Tensor, attention: str = "relation") -> torch.Tensor:
        """Logits ``(..., C)`` of videos from their frame features ``(..., T, 512)`` and weights ``(..., T, 1)``."""
        vm = (features * alphas).sum(-2, keepdim=True) / alphas.sum(-2, keepdim=True)  # (..., 1, 512)
        if attention == "self":
            return self.pred_fc1(self.dropout(vm)).squeeze(-2)
        if attention != "relation":
            raise ValueError(f"attention must be 'relation' or 'self', got {attention!r}")
        cate = torch.cat([features, vm.expand_as(features)], dim=-1)  # (..., T, 1024)
        betas = self.beta(self.dropout(cate))
        pooled = (cate * alphas).sum(-2, keepdim=True) / (alphas * betas).sum(-2, keepdim=True)
        return self.pred_fc2(self.dropout2(pooled)).squeeze(-2)

    def forward(self, faces: torch.Tensor, attention: str = "relation") -> torch.Tensor:
        """``(T, 3, 224, 224)`` faces of one video -> ``(C,)`` logits."""
        return self.video_logits(*self.frame_features(faces), attention=attention)


def preprocess_faces(frames: np.ndarray | Sequence[np.ndarray]) -> torch.Tensor:
    """``(T, H, W, 3)`` uint8 RGB face crops -> ``(T, 3, 224, 224)`` in [0, 1], as Emotion-FAN's
    ``Resize(224)`` + ``ToTensor`` (PIL bilinear) make them."""
    from PIL import Image
    from torchvision import transforms

    transform = transforms.Compose([transforms.Resize(224), transforms.ToTensor()])
    faces = torch.stack([transform(Image.fromarray(np.ascontiguousarray(f))) for f in frames])
    if faces.shape[-2:] != (224, 224):
        raise ValueError(f"face crops must be square for Resize(224); got {tuple(faces.shape[-2:])} after resizing")
    return faces


def load_emotion_fan(
    path: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> tuple[EmotionFAN, tuple[str, ...] | None]:
    """Load an Emotion-FAN checkpoint (``{'state_dict': ...}`` with or without DDP's ``module.`` prefix, or a bare
    state dict); returns the network in eval mode and the class names the file stores (``'classes'``, written by
    pctalk's classifier training), or ``None`` when it stores none (the published files).
    """
    ckpt = load_checkpoint(path)
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else ckpt
    if not isinstance(state, dict) or "pred_fc1.weight" not in strip_prefix(state, "module."):
        raise TypeError(f"{path}: not an Emotion-FAN checkpoint (no state_dict with pred_fc1.weight)")
    state = strip_prefix(state, "module.")
    net = EmotionFAN(num_classes=int(state["pred_fc1.weight"].shape[0]))
    load_state_dict_strict(net, state, path)
    classes = ckpt.get("classes") if isinstance(ckpt, dict) else None
    return net.to(device).eval().requires_grad_(False), (tuple(classes) if classes else None)
