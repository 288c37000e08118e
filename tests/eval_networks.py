"""Networks for the eval tests: a tiny stand-in for StyleGAN-V's ``i3d_torchscript.pt`` (same call signature), and
pytorch-fid's FID Inception layout (its own constructor, stopped before the download)."""

from __future__ import annotations

from unittest import mock

import torch
import torch.nn.functional as F
from torch import nn


class TinyI3D(nn.Module):
    """Same call as ``i3d_torchscript.pt``: uint8 ``(B, 3, T, H, W)``; 400-d features."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 16, (3, 7, 7), stride=(2, 4, 4))
        self.fc = nn.Linear(16 * 8, 400)

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False):
        x = x.float()
        if rescale:
            x = x / 127.5 - 1
        if resize:
            x = F.interpolate(x, size=(x.shape[2], 224, 224), mode="trilinear", align_corners=False)
        h = F.adaptive_avg_pool3d(torch.relu(self.conv(x)), (2, 2, 2)).flatten(1)
        features = self.fc(h)
        return features if return_features else features.softmax(-1)


class _Built(Exception):
    pass


def fid_inception_template() -> dict[str, torch.Tensor]:
    """The state dict layout of pytorch-fid's FID Inception (its own constructor, stopped before the download)."""
    from pytorch_fid import inception

    built = []
    original = inception._inception_v3

    def capture(*args, **kwargs):
        built.append(original(*args, **kwargs))
        return built[-1]

    def stop(*args, **kwargs):
        raise _Built

    with (
        mock.patch.object(inception, "_inception_v3", capture),
        mock.patch.object(inception, "load_state_dict_from_url", stop),
    ):
        try:
            inception.fid_inception_v3()
        except _Built:
            pass
    return built[0].state_dict()
