"""LivePortrait, frozen: its five networks, the keypoint math that joins them, and loading the public checkpoints.

``load_liveportrait(root)`` reads the files users download from KwaiVGI/LivePortrait unchanged::

    <root>/liveportrait/base_models/{appearance_feature_extractor,motion_extractor,warping_module,spade_generator}.pth
    <root>/liveportrait/retargeting_models/stitching_retargeting_module.pth

``root`` may also be the ``liveportrait/`` folder itself.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from torch import nn

from pctalk.keypoints.config import LivePortraitConfig
from pctalk.keypoints.networks import (
    AppearanceEncoder,
    MotionExtractor,
    SPADEDecoder,
    StitchingRetargeting,
    WarpingNetwork,
)
from pctalk.keypoints.transform import headpose_degrees, rotation_matrix, transform_keypoints
from pctalk.weights import (
    MissingWeightsError,
    load_checkpoint,
    load_state_dict_strict,
    save_checkpoint,
    strip_prefix,
)
from pctalk.weights.registry import get as registry_entry
from pctalk.weights.registry import missing_message

__all__ = ["LivePortrait", "Motion", "build_liveportrait", "load_liveportrait", "save_liveportrait"]

#: submodule -> (registry name, path relative to the ``liveportrait/`` folder)
BASE_MODELS = {
    "appearance_encoder": ("liveportrait.appearance_feature_extractor", "base_models/appearance_feature_extractor.pth"),
    "motion_extractor": ("liveportrait.motion_extractor", "base_models/motion_extractor.pth"),
    "warping": ("liveportrait.warping_module", "base_models/warping_module.pth"),
    "decoder": ("liveportrait.spade_generator", "base_models/spade_generator.pth"),
}
STITCHING = ("liveportrait.stitching", "retargeting_models/stitching_retargeting_module.pth")
_PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class Motion:
    """What the motion extractor finds in a batch of crops.

    Attributes:
        kp: ``(B, 21, 3)`` canonical keypoints.
        exp: ``(B, 21, 3)`` expression deformation.
        pitch, yaw, roll: ``(B,)`` head pose in degrees.
        t: ``(B, 3)`` translation.
        scale: ``(B, 1)`` scale.
        R: ``(B, 3, 3)`` rotation (LivePortrait's transposed convention).
        raw: the raw head outputs (pose bin logits etc.) when asked for, else ``None``.
    """

    kp: torch.Tensor
    exp: torch.Tensor
    pitch: torch.Tensor
    yaw: torch.Tensor
    roll: torch.Tensor
    t: torch.Tensor
    scale: torch.Tensor
    R: torch.Tensor
    raw: dict[str, torch.Tensor] | None = None

    def keypoints(self, exp: torch.Tensor | None = None) -> torch.Tensor:
        """Driven keypoints ``(B, 21, 3)`` = ``scale * (kp @ R + exp) + t`` (t_z dropped), with this motion's
        expression or the one given."""
        return transform_keypoints(self.kp, self.R, self.exp if exp is None else exp, self.scale, self.t)

    def __getitem__(self, index: int | slice | torch.Tensor) -> Motion:
        """The motion of some frames of the batch."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "raw"}
        out = {k: v[index] for k, v in values.items()}
        raw = None if self.raw is None else {k: v[index] for k, v in self.raw.items()}
        return Motion(**out, raw=raw)


def _check_images(images: torch.Tensor, size: int, what: str) -> None:
    if not isinstance(images, torch.Tensor) or not images.is_floating_point():
        dtype = images.dtype if isinstance(images, torch.Tensor) else type(images).__name__
        raise TypeError(f"{what} expects float images (B, 3, {size}, {size}) in [0, 1], got dtype {dtype}")
    if images.ndim != 4 or tuple(images.shape[1:]) != (3, size, size):
        raise ValueError(f"{what} expects images (B, 3, {size}, {size}) in [0, 1], got shape {tuple(images.shape)}")


def _check_keypoints(x: torch.Tensor, num_kp: int, name: str) -> None:
    if x.ndim != 3 or tuple(x.shape[1:]) != (num_kp, 3):
        raise ValueError(f"{name} must be keypoints (B, {num_kp}, 3), got shape {tuple(x.shape)}")


class LivePortrait(nn.Module):
    """LivePortrait's motion extractor, appearance encoder, warping module, SPADE decoder and stitching MLPs.

    The module is frozen: parameters never require gradients and ``train()`` keeps every network in eval mode
    (BatchNorm running statistics and spectral-norm vectors stay as loaded), while gradients still flow to the
    inputs (the lip refiner's sync loss backpropagates through ``warp_decode`` to the keypoints).
    """

    def __init__(self, config: LivePortraitConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or LivePortraitConfig()
        me, ae, wc, dc, sc = (
            config.motion_extractor,
            config.appearance_encoder,
            config.warping,
            config.decoder,
            config.stitching,
        )
        self.motion_extractor = MotionExtractor(me.depths, me.dims, me.num_kp, me.num_bins)
        self.appearance_encoder = AppearanceEncoder(
            3,
            ae.block_expansion,
            ae.num_down_blocks,
            ae.max_features,
            ae.reshape_channel,
            ae.reshape_depth,
            ae.num_resblocks,
        )
        self.warping = WarpingNetwork(
            me.num_kp,
            wc.block_expansion,
            wc.max_features,
            wc.num_down_blocks,
            wc.reshape_channel,
            wc.estimate_occlusion_map,
            dense_motion_params=vars(wc.dense_motion),
        )
        self.decoder = SPADEDecoder(
            dc.upscale, dc.max_features, dc.block_expansion, dc.out_channels, dc.num_down_blocks, dc.spade_hidden
        )
        self.stitching = StitchingRetargeting(sc.stitching, sc.lip, sc.eye)
        self.has_stitching = True  # False when loaded without the stitching file: stitch() then changes nothing
        self.precision = "fp32"
        self.runner = None  # an ONNX or compiled backend (pctalk.keypoints.backends.use_backend); None: eager
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> LivePortrait:
        """Frozen: always eval mode, whatever ``mode`` is."""
        return super().train(False)

    def set_precision(self, precision: str) -> LivePortrait:
        """Run the networks under autocast: ``"fp32"`` (exact, default), ``"fp16"`` or ``"bf16"`` (GPU speed modes;
        LivePortrait itself renders in fp16). Outputs are always float32."""
        if precision not in _PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(_PRECISIONS)}, got {precision!r}")
        self.precision = precision
        return self

    def to_channels_last(self) -> LivePortrait:
        """Channels-last weights for every convolution (faster on GPUs with tensor cores, and on some CPUs)."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Conv3d)):
                fmt = torch.channels_last if isinstance(module, nn.Conv2d) else torch.channels_last_3d
                weight = module.weight_orig if hasattr(module, "weight_orig") else module.weight  # spectral norm
                weight.data = weight.data.contiguous(memory_format=fmt)
        return self

    def _autocast(self, device: torch.device):
        dtype = _PRECISIONS[self.precision]
        return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)

    def extract_motion(self, images: torch.Tensor, return_raw: bool = False) -> Motion:
        """Keypoints, pose and expression of ``images (B, 3, S, S)``, RGB in [0, 1] (S = ``config.input_size``)."""
        _check_images(images, self.config.input_size, "extract_motion")
        with self._autocast(images.device):
            net = self.motion_extractor if self.runner is None else self.runner.motion
            raw = {k: v.float() for k, v in net(images).items()}
        b = images.shape[0]
        pitch, yaw, roll = (headpose_degrees(raw[k]) for k in ("pitch", "yaw", "roll"))
        return Motion(
            kp=raw["kp"].reshape(b, -1, 3),
            exp=raw["exp"].reshape(b, -1, 3),
            pitch=pitch,
            yaw=yaw,
            roll=roll,
            t=raw["t"],
            scale=raw["scale"],
            R=rotation_matrix(pitch, yaw, roll),
            raw=raw if return_raw else None,
        )

    def appearance(self, images: torch.Tensor) -> torch.Tensor:
        """Feature volume of ``images (B, 3, S, S)`` in [0, 1]: ``(B, 32, 16, 64, 64)`` at the official sizes."""
        _check_images(images, self.config.input_size, "appearance")
        with self._autocast(images.device):
            net = self.appearance_encoder if self.runner is None else self.runner.appearance
            return net(images).float()

    def warp_decode(self, feature: torch.Tensor, x_source: torch.Tensor, x_driven: torch.Tensor) -> torch.Tensor:
        """Render: warp the source ``feature`` from ``x_source`` to ``x_driven`` keypoints ``(B, 21, 3)`` and decode
        to ``(B, 3, 512, 512)`` in [0, 1] at the official sizes."""
        if feature.ndim != 5:
            raise ValueError(f"warp_decode expects a feature volume (B, C, D, H, W), got shape {tuple(feature.shape)}")
        _check_keypoints(x_source, self.config.num_kp, "x_source")
        _check_keypoints(x_driven, self.config.num_kp, "x_driven")
        with self._autocast(feature.device):
            if self.runner is not None:
                return self.runner.render(feature, x_source, x_driven).float()
            warped = self.warping(feature, kp_driving=x_driven, kp_source=x_source)
            return self.decoder(warped).float()

    def stitch(self, x_source: torch.Tensor, x_driven: torch.Tensor) -> torch.Tensor:
        """Stitching: ``x_driven`` plus the MLP's 63 keypoint deltas and a (tx, ty) shift, so the rendered face
        pastes back into the source frame without seams. ``(B, 21, 3)`` in and out (unchanged when the model was
        loaded without its stitching file)."""
        _check_keypoints(x_source, self.config.num_kp, "x_source")
        _check_keypoints(x_driven, self.config.num_kp, "x_driven")
        if not self.has_stitching:
            return x_driven
        b, k = x_driven.shape[:2]
        delta = self.stitching.stitching(torch.cat([x_source.reshape(b, -1), x_driven.reshape(b, -1)], dim=1))
        shift = torch.zeros_like(x_driven[:, :1])
        shift[..., :2] = delta[:, 3 * k : 3 * k + 2].reshape(b, 1, 2)
        return x_driven + delta[:, : 3 * k].reshape(b, k, 3) + shift

    def retarget_eyes(self, x_source: torch.Tensor, eye_ratios: torch.Tensor) -> torch.Tensor:
        """LivePortrait's eye retargeting: the eye MLP's keypoint deltas ``(B, 21, 3)`` (to add to the driven
        keypoints) for source keypoints ``x_source (B, 21, 3)`` and ``eye_ratios (B, 3)``: the source's left and
        right eye-open ratios and the target ratio (:func:`pctalk.control.eyes.eye_open_ratio`), in its input order
        ``[x_source (63), ratios (3)]``. Zeros when the model was loaded without its stitching file."""
        _check_keypoints(x_source, self.config.num_kp, "x_source")
        b, k = x_source.shape[:2]
        if eye_ratios.shape != (b, 3):
            raise ValueError(f"eye_ratios must be (B, 3) = (left, right, target), got {tuple(eye_ratios.shape)}")
        if not self.has_stitching:
            return torch.zeros_like(x_source)
        delta = self.stitching.eye(torch.cat([x_source.reshape(b, -1), eye_ratios.to(x_source)], dim=1))
        return delta.reshape(b, k, 3)


def build_liveportrait(config: LivePortraitConfig | None = None) -> LivePortrait:
    """A LivePortrait with freshly initialised (random) weights."""
    return LivePortrait(config)


def _liveportrait_dir(root: str | os.PathLike[str]) -> Path:
    root = Path(root)
    if (root / "base_models").is_dir() or root.name == "liveportrait":
        return root
    return root / "liveportrait"


def load_liveportrait(
    root: str | os.PathLike[str],
    device: str | torch.device = "cpu",
    config: LivePortraitConfig | None = None,
    require_stitching: bool = True,
) -> LivePortrait:
    """Load LivePortrait's public checkpoints from ``root`` (the folder holding ``liveportrait/``, or that folder).

    Raises:
        MissingWeightsError: a file is absent; the message names the expected path and where it comes from.
        CheckpointKeyError: a file does not fit the network (its first offending keys are listed).
    """
    folder = _liveportrait_dir(root)
    model = LivePortrait(config)
    for attr, (name, rel) in BASE_MODELS.items():
        path = folder / rel
        if not path.is_file():
            raise MissingWeightsError(missing_message(registry_entry(name), folder.parent))
        load_state_dict_strict(getattr(model, attr), load_checkpoint(path), path)
    path = folder / STITCHING[1]
    if path.is_file():
        checkpoint = load_checkpoint(path)
        for attr, key in StitchingRetargeting.FILE_KEYS.items():
            if key not in checkpoint:
                raise KeyError(f"{path} has no {key!r} entry (found {sorted(checkpoint)}); is it the stitching module?")
            load_state_dict_strict(
                getattr(model.stitching, attr), strip_prefix(checkpoint[key], "module."), f"{path}[{key}]"
            )
    elif require_stitching:
        raise MissingWeightsError(missing_message(registry_entry(STITCHING[0]), folder.parent))
    else:
        model.has_stitching = False
    return model.to(device)


def save_liveportrait(models: LivePortrait, root: str | os.PathLike[str]) -> Path:
    """Write ``models`` in LivePortrait's public layout under ``root/liveportrait/``, atomically; returns it."""
    folder = Path(root) / "liveportrait"
    for attr, (_, rel) in BASE_MODELS.items():
        state = {k: v.detach().cpu() for k, v in getattr(models, attr).state_dict().items()}
        save_checkpoint(state, folder / rel)
    stitching = {
        key: {k: v.detach().cpu() for k, v in getattr(models.stitching, attr).state_dict().items()}
        for attr, key in StitchingRetargeting.FILE_KEYS.items()
    }
    save_checkpoint(stitching, folder / STITCHING[1])
    return folder
