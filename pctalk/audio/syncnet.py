"""Wav2Lip's colour SyncNet expert and the sync loss it gives (the lip refiner's image-space loss).

Face input follows Wav2Lip's training data exactly: five consecutive face crops, lower half, 48x96, **BGR** channel
order (Wav2Lip reads frames with OpenCV), values in [0, 1], stacked on channels into ``(B, 15, 48, 96)``. The audio
input is the mel window of the first of the five frames, ``(B, 1, 80, 16)``.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from pctalk.audio.conv import audio_stack, face_stack
from pctalk.weights import load_checkpoint, load_state_dict_strict

__all__ = ["SYNC_FRAMES", "SyncNet", "face_input", "load_syncnet", "sync_loss"]

#: Frames seen by the expert at once.
SYNC_FRAMES = 5


def face_input(frames: torch.Tensor) -> torch.Tensor:
    """Wav2Lip's face input from RGB face crops.

    Args:
        frames: ``(B, 5, 3, H, W)`` RGB face crops in [0, 1] (H even).

    Returns:
        ``(B, 15, 48, 96)``: the lower half of each crop resized to 48x96, converted to BGR, frames stacked on
        channels. Differentiable.
    """
    if frames.ndim != 5 or frames.shape[1] != SYNC_FRAMES or frames.shape[2] != 3:
        raise ValueError(f"face_input expects frames (B, 5, 3, H, W), got {tuple(frames.shape)}")
    b, t, _, h, w = frames.shape
    lower = frames[..., h // 2 :, :].reshape(b * t, 3, h - h // 2, w)
    if lower.shape[-2:] != (48, 96):
        lower = F.interpolate(lower, size=(48, 96), mode="bilinear", align_corners=False, antialias=True)
    bgr = lower.flip(1)
    return bgr.reshape(b, t * 3, 48, 96)


class SyncNet(nn.Module):
    """Wav2Lip's ``SyncNet_color``: L2-normalised 512-d audio and face embeddings."""

    def __init__(self) -> None:
        super().__init__()
        self.face_encoder = face_stack()
        self.audio_encoder = audio_stack()

    def forward(self, mel_windows: torch.Tensor, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``mel_windows (B, 1, 80, 16)``, ``faces (B, 15, 48, 96)`` -> ``(audio (B, 512), face (B, 512))``."""
        if tuple(faces.shape[1:]) != (15, 48, 96):
            raise ValueError(f"SyncNet expects faces (B, 15, 48, 96), got {tuple(faces.shape)}")
        if tuple(mel_windows.shape[1:]) != (1, 80, 16):
            raise ValueError(f"SyncNet expects mel windows (B, 1, 80, 16), got {tuple(mel_windows.shape)}")
        audio = F.normalize(self.audio_encoder(mel_windows).flatten(1), p=2, dim=1)
        face = F.normalize(self.face_encoder(faces).flatten(1), p=2, dim=1)
        return audio, face

    def sync_probability(self, frames: torch.Tensor, mel_windows: torch.Tensor) -> torch.Tensor:
        """``(B,)`` cosine similarity of the embeddings, in [0, 1]: the expert's probability of "in sync"."""
        audio, face = self(mel_windows, face_input(frames))
        return F.cosine_similarity(audio, face)

    def sync_loss(self, frames: torch.Tensor, mel_windows: torch.Tensor) -> torch.Tensor:
        """Wav2Lip's expert sync loss: BCE of the cosine similarity against "in sync", averaged over the batch.

        Args:
            frames: ``(B, 5, 3, H, W)`` RGB face crops in [0, 1]; gradients flow back to them.
            mel_windows: ``(B, 1, 80, 16)``, the window of each sequence's first frame.

        Mixed precision: the loss is computed in fp32 with autocast off (CUDA autocast refuses
        ``F.binary_cross_entropy``, and a bf16 cosine near 1 has no resolution left); with target 1 the BCE is
        ``-log(p)``, which is what is computed.
        """
        device = frames.device.type
        with torch.autocast(device_type=device, enabled=False):
            p = self.sync_probability(frames.float(), mel_windows.float()).clamp(1e-7, 1 - 1e-7)
            return -torch.log(p).mean()


#: ``sync_loss(syncnet, frames, mel_windows)`` as a function.
sync_loss = SyncNet.sync_loss


def load_syncnet(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> SyncNet:
    """Load Wav2Lip's ``lipsync_expert.pth`` (``{"state_dict": ..., "optimizer": ..., ...}``, keys optionally
    ``module.``-prefixed) or a bare state dict into a frozen :class:`SyncNet` in eval mode."""
    obj = load_checkpoint(path)
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else obj
    if not isinstance(state, dict):
        raise ValueError(f"{path} is not a SyncNet checkpoint (expected a dict with a 'state_dict')")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    net = load_state_dict_strict(SyncNet(), state, path).to(device).eval()
    return net.requires_grad_(False)
