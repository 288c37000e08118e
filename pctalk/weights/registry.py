"""The table of every pretrained file pctalk can use, where it goes under the weights root, and where it comes from.

Nothing is downloaded: users fetch each file from its public origin and place it at ``<root>/<path>``, in the
original project's format, and pctalk loads it unchanged. ``pctalk weights check --root DIR`` prints this table.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "REGISTRY",
    "MissingWeightsError",
    "PretrainedFile",
    "WeightsStatus",
    "check",
    "default_root",
    "get",
    "resolve",
]

#: Environment variable naming the weights root when no ``--root`` is given.
WEIGHTS_ENV = "PCTALK_WEIGHTS"


class MissingWeightsError(FileNotFoundError):
    """A pretrained file is not where pctalk expects it; the message names the path and the file's origin."""


@dataclass(frozen=True)
class PretrainedFile:
    """One pretrained file.

    Attributes:
        name: short identifier used in code, e.g. ``"liveportrait.motion_extractor"``.
        path: location relative to the weights root, as the original project lays it out.
        origin: where a user obtains the file (the public project and file name).
        used_by: the pctalk commands that need it.
        description: what the file is.
        hub_cache: also look for the file's basename in the torch hub cache (``$TORCH_HOME/hub/checkpoints``),
            where the original project itself caches it.
    """

    name: str
    path: str
    origin: str
    used_by: tuple[str, ...]
    description: str
    hub_cache: bool = False

    def candidates(self, root: str | os.PathLike[str]) -> list[Path]:
        """Every location searched for this file, in order of preference."""
        paths = [Path(root) / self.path]
        if self.hub_cache:
            import torch.hub

            paths.append(Path(torch.hub.get_dir()) / "checkpoints" / Path(self.path).name)
        return paths


_LP = "KwaiVGI/LivePortrait weights (huggingface.co/KwaiVGI/LivePortrait, folder pretrained_weights/)"
_INSIGHTFACE = "InsightFace buffalo_l, inside the KwaiVGI/LivePortrait weights (pretrained_weights/insightface/)"

REGISTRY: tuple[PretrainedFile, ...] = (
    PretrainedFile(
        "liveportrait.appearance_feature_extractor",
        "liveportrait/base_models/appearance_feature_extractor.pth",
        _LP,
        ("pctalk generate", "pctalk fit (lip refiner)", "pctalk-data build", "pctalk-data augment"),
        "LivePortrait appearance encoder F (image -> 32x16x64x64 feature volume)",
    ),
    PretrainedFile(
        "liveportrait.motion_extractor",
        "liveportrait/base_models/motion_extractor.pth",
        _LP,
        ("pctalk generate", "pctalk-data build", "pctalk-data augment"),
        "LivePortrait motion extractor M (ConvNeXtV2-tiny: keypoints, pose, expression)",
    ),
    PretrainedFile(
        "liveportrait.warping_module",
        "liveportrait/base_models/warping_module.pth",
        _LP,
        ("pctalk generate", "pctalk fit (lip refiner)", "pctalk-data build", "pctalk-data augment"),
        "LivePortrait warping module W (dense motion + occlusion)",
    ),
    PretrainedFile(
        "liveportrait.spade_generator",
        "liveportrait/base_models/spade_generator.pth",
        _LP,
        ("pctalk generate", "pctalk fit (lip refiner)", "pctalk-data build", "pctalk-data augment"),
        "LivePortrait SPADE decoder G (warped feature -> 512x512 image)",
    ),
    PretrainedFile(
        "liveportrait.stitching",
        "liveportrait/retargeting_models/stitching_retargeting_module.pth",
        _LP,
        ("pctalk generate", "pctalk-data augment"),
        "LivePortrait stitching and retargeting MLPs",
    ),
    PretrainedFile(
        "liveportrait.landmark",
        "liveportrait/landmark.onnx",
        _LP,
        ("pctalk generate", "pctalk-data build", "pctalk-eval run"),
        "LivePortrait 203-point face landmark model used to refine the crop",
    ),
    PretrainedFile(
        "insightface.det_10g",
        "insightface/models/buffalo_l/det_10g.onnx",
        _INSIGHTFACE,
        ("pctalk generate", "pctalk-data build", "pctalk-eval run"),
        "InsightFace SCRFD face detector",
    ),
    PretrainedFile(
        "insightface.2d106det",
        "insightface/models/buffalo_l/2d106det.onnx",
        _INSIGHTFACE,
        ("pctalk generate", "pctalk-data build", "pctalk-eval run"),
        "InsightFace 106-point landmark model",
    ),
    PretrainedFile(
        "audio.audio_visual_encoder",
        "audio/audio_visual_encoder.pth",
        "SyncTalk (github.com/ZiqiaoPeng/SyncTalk), nerf_triplane/checkpoints/audio_visual_encoder.pth",
        ("pctalk generate", "pctalk fit", "pctalk-data build --audio-features"),
        "Wav2Lip-style audio-visual encoder conv stack (mel window -> 512-d feature)",
    ),
    PretrainedFile(
        "wav2lip.lipsync_expert",
        "wav2lip/lipsync_expert.pth",
        "Wav2Lip (github.com/Rudrabha/Wav2Lip), 'Expert Discriminator' lipsync_expert.pth",
        ("pctalk fit (lip refiner)", "pctalk-data augment"),
        "Wav2Lip colour SyncNet expert used for the sync loss and augmentation filtering",
    ),
    PretrainedFile(
        "syncnet.syncnet_v2",
        "syncnet/syncnet_v2.model",
        "syncnet_python (github.com/joonson/syncnet_python), download_model.sh: syncnet_v2.model",
        ("pctalk-eval run",),
        "SyncNet used for the LSE-C / LSE-D metrics",
    ),
    PretrainedFile(
        "fid.inception",
        "fid/pt_inception-2015-12-05-6726825d.pth",
        "pytorch-fid (github.com/mseitzer/pytorch-fid) release v0.1.0: pt_inception-2015-12-05-6726825d.pth",
        ("pctalk-eval run",),
        "FID Inception-v3 weights (pool3 features)",
        hub_cache=True,
    ),
    PretrainedFile(
        "fvd.i3d",
        "fvd/i3d_torchscript.pt",
        "StyleGAN-V (github.com/universome/stylegan-v), src/scripts/calc_metrics_for_dataset: i3d_torchscript.pt",
        ("pctalk-eval run",),
        "I3D TorchScript model for FVD",
    ),
    PretrainedFile(
        "emotion.emotion_fan",
        "emotion_fan/emotion_fan_mead.pth.tar",
        "Emotion-FAN (github.com/Open-Debin/Emotion-FAN) ResNet-18 fine-tuned on MEAD's 8 emotions, "
        "or one trained with experiments/eval/emotion_classifier.yaml",
        ("pctalk-eval run",),
        "Emotion classifier for Acc_emo",
    ),
    PretrainedFile(
        "efid.deep3dfacerecon",
        "deep3dfacerecon/epoch_20.pth",
        "Deep3DFaceRecon_pytorch (github.com/sicxu/Deep3DFaceRecon_pytorch): checkpoints/<name>/epoch_20.pth",
        ("pctalk-eval run",),
        "3DMM coefficient regressor (ResNet-50) for E-FID",
    ),
    PretrainedFile(
        "efid.lm3d",
        "deep3dfacerecon/BFM/similarity_Lm3D_all.mat",
        "Deep3DFaceRecon_pytorch (github.com/sicxu/Deep3DFaceRecon_pytorch): BFM/similarity_Lm3D_all.mat",
        ("pctalk-eval run",),
        "the 3DMM's mean landmarks that E-FID aligns faces to",
    ),
)

_BY_NAME = {entry.name: entry for entry in REGISTRY}


def default_root() -> Path:
    """The weights root: ``$PCTALK_WEIGHTS`` if set, else ``./pretrained_weights``."""
    return Path(os.environ.get(WEIGHTS_ENV, "pretrained_weights"))


def get(name: str) -> PretrainedFile:
    """The registry entry called ``name``."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown pretrained file {name!r}; known: {', '.join(sorted(_BY_NAME))}") from None


def resolve(name: str, root: str | os.PathLike[str] | None = None) -> Path:
    """The path of the pretrained file ``name`` under ``root``.

    Raises:
        MissingWeightsError: the file is absent; the message names the path expected and the file's origin.
    """
    entry = get(name)
    root = default_root() if root is None else Path(root)
    for candidate in entry.candidates(root):
        if candidate.is_file():
            return candidate
    raise MissingWeightsError(missing_message(entry, root))


def missing_message(entry: PretrainedFile, root: str | os.PathLike[str]) -> str:
    """The error text for a missing file: where it was expected and where it comes from."""
    where = " or ".join(str(p) for p in entry.candidates(root))
    return (
        f"missing pretrained file {entry.name!r}: expected at {where}. "
        f"It comes from {entry.origin}. Download it there and place it at that path "
        f"(run `pctalk weights check --root {root}` to see every file)."
    )


@dataclass(frozen=True)
class WeightsStatus:
    """Whether one registry entry is present under a root, and its size in bytes."""

    entry: PretrainedFile
    path: Path
    present: bool
    size: int
    empty: bool = False
    """The file exists but holds 0 bytes (an interrupted download): it counts as missing."""


def check(root: str | os.PathLike[str]) -> list[WeightsStatus]:
    """The status of every registry entry under ``root``."""
    out = []
    for entry in REGISTRY:
        candidates = entry.candidates(root)
        found = next((p for p in candidates if p.is_file()), None)
        path = found or candidates[0]
        size = path.stat().st_size if found else 0
        out.append(WeightsStatus(entry, path, found is not None and size > 0, size, found is not None and size == 0))
    return out
