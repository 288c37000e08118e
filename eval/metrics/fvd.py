"""FVD with StyleGAN-V's I3D TorchScript (``i3d_torchscript.pt``), its protocol by default.

StyleGAN-V's ``compute_fvd``: 16-frame uint8 clips ``(B, 3, T, H, W)`` go to the detector with
``rescale=True, resize=True, return_features=True`` (the model itself scales to [-1, 1] and resizes to 224), giving
400-d features; statistics are accumulated in float64 with the *biased* covariance (divide by N), and
``FVD = |μg − μr|² + tr(Σg + Σr − 2 (Σg Σr)^½)``. For a generated video StyleGAN-V takes its first 16 frames.

The protocol is a :class:`FVDProtocol`; its name is reported beside the score (``FVD[stylegan-v]``) since FVDs
of different protocols are not comparable.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from eval.metrics.frechet import FeatureStatistics
from pctalk.weights.registry import MissingWeightsError, get

__all__ = ["FVD", "PROTOCOLS", "FVDProtocol", "load_i3d", "video_clips"]


@dataclass(frozen=True)
class FVDProtocol:
    """How FVD samples clips and estimates covariances.

    Attributes:
        name: reported with the score.
        clip_length: frames per clip.
        clips: ``"first"`` (the first clip of each video, as StyleGAN-V for generated videos) or ``"all"`` (every
            non-overlapping clip; more samples for the 400×400 covariance on small test sets).
        biased_covariance: divide by N (StyleGAN-V) rather than N − 1 (``np.cov``, TF-GAN).
        rescale, resize: the detector's own preprocessing flags (uint8 -> [-1, 1]; resize to 224).
    """

    name: str
    clip_length: int = 16
    clips: str = "first"
    biased_covariance: bool = True
    rescale: bool = True
    resize: bool = True


#: Named protocols; ``FVD(protocol=...)`` takes a name or an :class:`FVDProtocol`.
PROTOCOLS = {
    "stylegan-v": FVDProtocol("stylegan-v"),
    "stylegan-v-all-clips": FVDProtocol("stylegan-v-all-clips", clips="all"),
    "unbiased": FVDProtocol("unbiased", biased_covariance=False),
}


def load_i3d(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> torch.jit.ScriptModule:
    """The I3D TorchScript module at ``path``, in eval mode.

    Raises:
        MissingWeightsError: ``path`` does not exist (the message says where the file comes from).
    """
    path = Path(path)
    if not path.is_file():
        raise MissingWeightsError(
            f"missing I3D TorchScript for FVD: {path}. It comes from {get('fvd.i3d').origin}; download it and pass "
            f"its path (or place it at <weights root>/{get('fvd.i3d').path})."
        )
    try:
        with warnings.catch_warnings():  # TorchScript is deprecated, but it is the format the file comes in
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(str(path), map_location=device).eval()
    except RuntimeError as err:
        raise RuntimeError(
            f"cannot load the I3D TorchScript {path}: {err}. Download i3d_torchscript.pt again."
        ) from err


def video_clips(video: np.ndarray | torch.Tensor, protocol: FVDProtocol) -> torch.Tensor:
    """``(T, H, W, 3)`` uint8 frames -> ``(N, 3, L, H, W)`` uint8 clips (``N = 0`` when ``T < L``)."""
    frames = torch.as_tensor(np.asarray(video) if not isinstance(video, torch.Tensor) else video)
    length = protocol.clip_length
    n = len(frames) // length if protocol.clips == "all" else min(1, len(frames) // length)
    clips = frames[: n * length].reshape(n, length, *frames.shape[1:])
    return clips.permute(0, 4, 1, 2, 3).contiguous()


class FVD(FeatureStatistics):
    """FVD between real and generated videos; states are feature sums, so DDP ranks reduce exactly.

    ``update(videos, real)`` takes ``(B, T, H, W, 3)`` uint8 or a sequence of ``(T, H, W, 3)`` videos; videos shorter
    than a clip are counted in ``skipped``.
    """

    def __init__(
        self, i3d_path: str | os.PathLike[str], protocol: str | FVDProtocol = "stylegan-v", **kwargs: object
    ) -> None:
        if isinstance(protocol, str):
            if protocol not in PROTOCOLS:
                raise ValueError(f"unknown FVD protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
            protocol = PROTOCOLS[protocol]
        super().__init__(num_features=400, biased_covariance=protocol.biased_covariance, **kwargs)
        self.protocol = protocol
        self.i3d_path = Path(i3d_path)
        self._detector: torch.jit.ScriptModule | None = None
        self.add_state("skipped", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    @property
    def detector(self) -> torch.jit.ScriptModule:
        if self._detector is None:
            self._detector = load_i3d(self.i3d_path, self.device)
        return self._detector

    @property
    def label(self) -> str:
        """``FVD[<protocol>]``, the name to report the score under."""
        return f"FVD[{self.protocol.name}]"

    @torch.inference_mode()
    def features(self, clips: torch.Tensor) -> torch.Tensor:
        """``(N, 3, L, H, W)`` uint8 clips -> ``(N, 400)`` I3D features."""
        p = self.protocol
        return self.detector(clips.to(self.device), rescale=p.rescale, resize=p.resize, return_features=True)

    def update(self, videos: torch.Tensor | np.ndarray | Sequence[np.ndarray | torch.Tensor], real: bool) -> None:
        for video in videos:
            clips = video_clips(video, self.protocol)
            if len(clips) == 0:
                self.skipped += 1
                continue
            self.add(self.features(clips), real)
