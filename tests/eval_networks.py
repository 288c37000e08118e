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


#: The emotion classes of the random Emotion-FAN files the tests write (stored in the file, as pctalk's are).
EMOTIONS8 = ("neutral", "happy", "sad", "angry", "fear", "disgusted", "surprised", "contempt")


def save_eval_weights(root, i3d=None, scrfd: bool = False):
    """Every eval network under the weights root ``root``, random weights in the published layouts: SyncNet v2,
    pytorch-fid's Inception, an I3D TorchScript (``i3d(path)`` writes it; default the tiny stand-in), Emotion-FAN
    (with its class names), Deep3DFaceRecon and its 3D landmarks. ``scrfd``: also insightface's ``det_10g.onnx`` as a
    fixed-output model of its signature that reports one face near the middle of a 16:9 frame (random SCRFD weights
    find no face, and LSE's face track, Acc_emo and E-FID need one in pasted-back random-weight renders)."""
    import warnings
    from pathlib import Path

    import numpy as np
    import scipy.io

    from eval.networks.deep3dfacerecon import ReconNet
    from eval.networks.emotion_fan import EmotionFAN
    from eval.networks.syncnet_v2 import SyncNetV2
    from random_weights import seeded_state_dict

    root = Path(root)
    (root / "syncnet").mkdir(parents=True, exist_ok=True)
    torch.save(seeded_state_dict(SyncNetV2().state_dict(), 3), root / "syncnet" / "syncnet_v2.model")
    (root / "fid").mkdir(exist_ok=True)
    torch.save(seeded_state_dict(fid_inception_template(), 5), root / "fid" / "pt_inception-2015-12-05-6726825d.pth")
    (root / "fvd").mkdir(exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if i3d is None:
            torch.manual_seed(0)
            torch.jit.script(TinyI3D().eval()).save(str(root / "fvd" / "i3d_torchscript.pt"))
        else:
            i3d(root / "fvd" / "i3d_torchscript.pt")
    (root / "emotion_fan").mkdir(exist_ok=True)
    fan = seeded_state_dict(EmotionFAN(8).state_dict(), 11)
    torch.save({"state_dict": fan, "classes": list(EMOTIONS8)}, root / "emotion_fan" / "emotion_fan_mead.pth.tar")
    (root / "deep3dfacerecon" / "BFM").mkdir(parents=True, exist_ok=True)
    torch.save({"net_recon": seeded_state_dict(ReconNet().state_dict(), seed=13), "epoch": 20},
               root / "deep3dfacerecon" / "epoch_20.pth")  # fmt: skip
    rng = np.random.default_rng(0)
    lm = np.concatenate([rng.uniform(-0.8, 0.8, (68, 2)), rng.uniform(0.0, 0.3, (68, 1))], axis=1)
    lm[36:48, 1] += 0.3  # eyes above the nose, mouth below
    lm[48:68, 1] -= 0.4
    scipy.io.savemat(root / "deep3dfacerecon" / "BFM" / "similarity_Lm3D_all.mat", {"lm": lm})
    if scrfd:
        from onnx_models import scrfd_model

        # letterboxed input pixels (a 384x216 frame is scaled by 4/3): the box (172, 67)-(247, 142) in the frame
        kps = np.array([[255, 125], [305, 125], [280, 150], [260, 170], [300, 170]], np.float32)
        scrfd_model(root / "insightface/models/buffalo_l/det_10g.onnx",
                    [(np.array([230.0, 90.0, 330.0, 190.0]), 0.9, kps)])  # fmt: skip
    return root
