"""Head pose for image-driven generation: pose templates (pitch, yaw, roll, translation sequences taken from real
videos), a built-in template of smooth natural head motion, ping-pong extension, and motion relative to the source."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pctalk.keypoints.transform import rotation_matrix
from pctalk.weights.io import atomic_write

__all__ = ["PoseTemplate", "builtin_template", "load_template", "ping_pong", "relative_pose"]


@dataclass
class PoseTemplate:
    """A head-pose sequence: ``pitch``, ``yaw``, ``roll`` ``(T,)`` degrees and ``t (T, 3)``, at 25 fps."""

    pitch: np.ndarray
    yaw: np.ndarray
    roll: np.ndarray
    t: np.ndarray
    name: str = ""

    def __len__(self) -> int:
        return len(self.pitch)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the template as ``.npz`` (atomically)."""
        arrays = {k: np.asarray(getattr(self, k), np.float32) for k in ("pitch", "yaw", "roll", "t")}

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)

        return atomic_write(Path(path), write)

    def extended(self, n: int) -> PoseTemplate:
        """This template over ``n`` frames (ping-ponged when shorter)."""
        return PoseTemplate(*(ping_pong(getattr(self, k), n) for k in ("pitch", "yaw", "roll", "t")), name=self.name)


def ping_pong(sequence: np.ndarray | torch.Tensor, n: int) -> np.ndarray | torch.Tensor:
    """``sequence`` extended to ``n`` items by playing it forwards, backwards, forwards... (no repeated end frame)."""
    length = len(sequence)
    if length == 0:
        raise ValueError("cannot extend an empty sequence")
    if length == 1:
        index = np.zeros(n, dtype=np.int64)
    else:
        period = 2 * (length - 1)
        phase = np.arange(n) % period
        index = np.where(phase < length, phase, period - phase)
    return sequence[torch.from_numpy(index)] if isinstance(sequence, torch.Tensor) else sequence[index]


def builtin_template(n: int = 250, seed: int = 0, amplitude: float = 1.0) -> PoseTemplate:
    """Smooth natural head motion: a few slow sinusoids per angle (a few degrees), and small drift."""
    rng = np.random.default_rng(seed)
    time = np.arange(n) / 25
    angles = []
    for base in (3.0, 5.0, 2.0):  # pitch, yaw, roll amplitudes in degrees
        signal = np.zeros(n)
        for _ in range(3):
            signal += base / 3 * np.sin(2 * math.pi * rng.uniform(0.05, 0.4) * time + rng.uniform(0, 2 * math.pi))
        angles.append(amplitude * (signal - signal[0]))
    t = np.zeros((n, 3))
    t[:, :2] = amplitude * 0.01 * np.sin(2 * math.pi * 0.1 * time[:, None] + rng.uniform(0, 6, 2))
    return PoseTemplate(*(a.astype(np.float32) for a in angles), t.astype(np.float32) - t[:1], name="builtin")


def load_template(name_or_path: str | os.PathLike[str]) -> PoseTemplate:
    """``"builtin"``, or an ``.npz`` written by ``pctalk-data pose-templates`` (:meth:`PoseTemplate.save`)."""
    if str(name_or_path) == "builtin":
        return builtin_template()
    path = Path(name_or_path)
    if not path.is_file():
        raise FileNotFoundError(
            f"pose template {path} not found; use 'builtin' or a file from `pctalk-data pose-templates`"
        )
    with np.load(path) as data:
        return PoseTemplate(data["pitch"], data["yaw"], data["roll"], data["t"], name=path.stem)


def relative_pose(
    template: PoseTemplate, source_R: torch.Tensor, source_t: torch.Tensor, relative: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply the template's motion relative to its first frame to the source's pose, as LivePortrait's relative mode:
    ``R_i = R_tpl_i @ R_tpl_0^T @ R_src`` and ``t_i = t_src + t_tpl_i - t_tpl_0`` (t_z kept at the source's). With
    ``relative=False`` the template's values are offsets from the source's pose themselves (``R_tpl_0`` and
    ``t_tpl_0`` taken as zero): a timeline's keyframes.

    Args:
        source_R: ``(3, 3)``, or ``(T, 3, 3)`` one per frame (a video's).
        source_t: ``(3,)``, or ``(T, 3)``.

    Returns:
        ``R (T, 3, 3)`` and ``t (T, 3)``.
    """
    device = source_R.device
    angles = [
        torch.from_numpy(np.asarray(getattr(template, k), np.float32)).to(device) for k in ("pitch", "yaw", "roll")
    ]
    r = rotation_matrix(*angles)
    if relative:
        r = r @ r[:1].transpose(1, 2)
    rotations = r @ source_R.reshape(-1, 3, 3)
    t = torch.from_numpy(np.asarray(template.t, np.float32)).to(device)
    shift = t - t[:1] if relative else t.clone()
    shift[:, 2] = 0
    return rotations, torch.as_tensor(source_t, dtype=source_R.dtype, device=device).reshape(-1, 3) + shift
