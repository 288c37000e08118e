"""SyncNet as joonson/syncnet_python defines it (``SyncNetModel.S``), for LSE-C / LSE-D.

The layer layout and parameter names are those of ``syncnet_v2.model`` (a plain state dict), so the published file
loads unchanged. Inputs follow syncnet_python: the lip stream takes ``(N, 3, 5, 224, 224)`` BGR frames with values
0–255 (no normalisation); the audio stream takes ``(N, 1, 13, 20)`` MFCC windows (0.2 s).
"""

from __future__ import annotations

import os

import torch
from torch import nn

from pctalk.weights.io import load_checkpoint, load_state_dict_strict

__all__ = ["SyncNetV2", "load_syncnet_v2"]


def _conv2d(cin: int, cout: int, kernel=(3, 3), padding=(1, 1)) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, padding=padding), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def _conv3d(cin: int, cout: int, kernel: tuple[int, int, int], stride=(1, 1, 1), padding=(0, 0, 0)) -> list[nn.Module]:
    return [nn.Conv3d(cin, cout, kernel, stride=stride, padding=padding), nn.BatchNorm3d(cout), nn.ReLU(inplace=True)]


def _head(dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, dim))


class SyncNetV2(nn.Module):
    """The two-stream SyncNet of syncnet_python.

    Args:
        embedding_dim: size of both embeddings (1024 in ``syncnet_v2.model``).
    """

    def __init__(self, embedding_dim: int = 1024) -> None:
        super().__init__()
        self.netcnnaud = nn.Sequential(
            *_conv2d(1, 64),
            nn.MaxPool2d((1, 1), (1, 1)),
            *_conv2d(64, 192),
            nn.MaxPool2d((3, 3), (1, 2)),
            *_conv2d(192, 384),
            *_conv2d(384, 256),
            *_conv2d(256, 256),
            nn.MaxPool2d((3, 3), (2, 2)),
            nn.Conv2d(256, 512, (5, 4)),
            nn.BatchNorm2d(512),
            nn.ReLU(),
        )
        self.netfcaud = _head(embedding_dim)
        self.netfclip = _head(embedding_dim)
        self.netcnnlip = nn.Sequential(
            *_conv3d(3, 96, (5, 7, 7), stride=(1, 2, 2)),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            *_conv3d(96, 256, (1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
            *_conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)),
            *_conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)),
            *_conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            *_conv3d(256, 512, (1, 6, 6)),
        )

    def forward_aud(self, mfcc: torch.Tensor) -> torch.Tensor:
        """``(N, 1, 13, 20)`` MFCC windows -> ``(N, D)`` audio embeddings."""
        return self.netfcaud(self.netcnnaud(mfcc).flatten(1))

    def forward_lip(self, clips: torch.Tensor) -> torch.Tensor:
        """``(N, 3, 5, 224, 224)`` BGR 0–255 clips -> ``(N, D)`` visual embeddings."""
        return self.netfclip(self.netcnnlip(clips).flatten(1))


def load_syncnet_v2(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> SyncNetV2:
    """Load ``syncnet_v2.model`` (syncnet_python's plain state dict) into :class:`SyncNetV2`, in eval mode.

    Files saved before PyTorch 0.4.1 lack the BatchNorm ``num_batches_tracked`` counters; those (unused in eval
    mode) are filled in. Every other parameter must match.

    Raises:
        FileNotFoundError: ``path`` is missing.
        CheckpointKeyError: the file is not a SyncNet state dict of this layout.
    """
    state = load_checkpoint(path)
    if not isinstance(state, dict):
        raise TypeError(f"{path}: expected syncnet_python's plain state dict, got {type(state).__name__}")
    net = SyncNetV2(embedding_dim=int(state["netfcaud.3.weight"].shape[0]) if "netfcaud.3.weight" in state else 1024)
    own = net.state_dict()
    state = dict(state)
    for key, value in own.items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = value
    load_state_dict_strict(net, state, path)
    return net.to(device).eval().requires_grad_(False)
