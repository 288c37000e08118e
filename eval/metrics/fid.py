"""FID with pytorch-fid's Inception-v3 (pool3, 2048-d), giving what ``python -m pytorch_fid DIR_A DIR_B`` prints.

The network is pytorch-fid's own ``InceptionV3`` (a dependency, so its layers and its input handling — bilinear
resize to 299, scaling to [-1, 1] — are the reference's by construction). Its weights file
``pt_inception-2015-12-05-6726825d.pth`` is read from a given path, from ``<weights root>/fid/``, or from the torch
hub cache where pytorch-fid itself stores it; nothing is downloaded.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterator
from unittest import mock

import numpy as np
import torch
from PIL import Image
from torchvision.transforms.functional import to_tensor

from eval.metrics.frechet import FeatureStatistics, frechet_distance
from pctalk.weights.io import load_checkpoint
from pctalk.weights.registry import resolve

__all__ = ["FID", "IMAGE_EXTENSIONS", "fid_from_dirs", "inception_features", "load_inception"]

#: The file extensions pytorch-fid reads from a folder.
IMAGE_EXTENSIONS = ("bmp", "jpg", "jpeg", "pgm", "png", "ppm", "tif", "tiff", "webp")


def load_inception(weights_path: str | os.PathLike[str] | None = None, device: str | torch.device = "cpu"):
    """pytorch-fid's ``InceptionV3([pool3])`` with the FID weights from ``weights_path`` (default: the registry's
    ``fid.inception``: ``$PCTALK_WEIGHTS/fid/…`` or the torch hub cache).

    Raises:
        MissingWeightsError: no path given and the file is in neither place.
    """
    from pytorch_fid import inception

    path = resolve("fid.inception") if weights_path is None else pathlib.Path(weights_path)
    with mock.patch.object(inception, "load_state_dict_from_url", lambda *a, **k: load_checkpoint(path)):
        model = inception.InceptionV3([inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]])
    return model.to(device).eval().requires_grad_(False)


@torch.inference_mode()
def inception_features(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """``(N, 3, H, W)`` RGB in [0, 1] (or uint8) -> ``(N, 2048)`` pool3 features."""
    if images.dtype == torch.uint8:
        images = images.float() / 255.0
    device = next(model.parameters()).device
    pred = model(images.to(device, torch.float32))[0]
    if pred.shape[2:] != (1, 1):
        pred = torch.nn.functional.adaptive_avg_pool2d(pred, (1, 1))
    return pred.flatten(1)


def _files(directory: str | os.PathLike[str]) -> list[pathlib.Path]:
    path = pathlib.Path(directory)
    if not path.is_dir():
        raise FileNotFoundError(f"FID: not a folder of images: {path}")
    files = sorted(f for ext in IMAGE_EXTENSIONS for f in path.glob(f"*.{ext}"))
    if len(files) < 2:
        raise ValueError(f"FID: {path} holds {len(files)} images; FID needs at least 2 (it uses their covariance)")
    return files


def _batches(files: list[pathlib.Path], batch_size: int) -> Iterator[torch.Tensor]:
    for start in range(0, len(files), batch_size):
        yield torch.stack([to_tensor(Image.open(f).convert("RGB")) for f in files[start : start + batch_size]])


def _statistics(files: list[pathlib.Path], model: torch.nn.Module, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    from tqdm import tqdm

    batch_size = min(batch_size, len(files))
    act = np.concatenate(
        [
            inception_features(model, b).cpu().numpy()
            for b in tqdm(_batches(files, batch_size), desc="FID", unit="batch", total=-(-len(files) // batch_size))
        ]
    ).astype(np.float64)
    return np.mean(act, axis=0), np.cov(act, rowvar=False)


def fid_from_dirs(
    dir_a: str | os.PathLike[str],
    dir_b: str | os.PathLike[str],
    weights_path: str | os.PathLike[str] | None = None,
    batch_size: int = 50,
    device: str | torch.device = "cpu",
) -> float:
    """FID between the images of two folders, as ``python -m pytorch_fid DIR_A DIR_B`` computes it (same files,
    same decoding, same statistics)."""
    model = load_inception(weights_path, device)
    return frechet_distance(
        *_statistics(_files(dir_a), model, batch_size), *_statistics(_files(dir_b), model, batch_size)
    )


class FID(FeatureStatistics):
    """FID over frames streamed in batches; states are feature sums, so DDP ranks reduce exactly.

    ``update(frames, real)`` takes ``(N, 3, H, W)`` RGB frames, uint8 or float in [0, 1].
    """

    def __init__(self, weights_path: str | os.PathLike[str] | None = None, **kwargs: object) -> None:
        super().__init__(num_features=2048, **kwargs)
        self.inception = load_inception(weights_path)

    def update(self, frames: torch.Tensor, real: bool) -> None:
        self.add(inception_features(self.inception, frames), real)
