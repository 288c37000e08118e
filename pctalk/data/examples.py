"""Turning a decoded clip into a training example: a window of frames with its audio, targets and labels."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from pctalk.audio.mel import frame_windows
from pctalk.data.schema import Clip
from pctalk.keypoints.regions import LIPS, TARGETS

__all__ = ["clip_example", "lip_deformation"]


def lip_deformation(exp: np.ndarray, scale: np.ndarray, keypoints: tuple[int, ...] = LIPS) -> np.ndarray:
    """``D = s * exp[keypoints]``: ``exp (T, 21, 3)``, ``scale (T, 1)`` -> ``(T, len(keypoints) * 3)``."""
    return (scale[:, :, None] * exp[:, list(keypoints)]).reshape(len(exp), -1)


def _window(x: np.ndarray, start: int, length: int) -> np.ndarray:
    """A copy of ``x[start:start + length]``, padded at the end by repeating the last frame (only the window is
    copied: ``x`` may be a read-only view into the shard's bytes)."""
    piece = x[start : start + length]
    if len(piece) < length:
        return np.concatenate([piece, np.repeat(piece[-1:], length - len(piece), axis=0)])
    return np.array(piece)


def clip_example(
    clip: Clip,
    window: int,
    rng: random.Random | None = None,
    audio: str = "auto",
    target: str = "lips",
    with_reference: bool = False,
    extras: tuple[str, ...] = (),
) -> dict[str, Any]:
    """One example of ``window`` frames from ``clip``.

    Args:
        window: frames per example; shorter clips are padded by repeating their last frame (``mask`` is False there).
        rng: picks the window's start at random; ``None`` takes the first frames (deterministic validation).
        audio: ``"mel"`` (mel windows ``(W, 1, 80, 16)``), ``"feat"`` (stored encoder features ``(W, 512)``) or
            ``"auto"`` (features when the shard has them, else mel windows).
        target: ``"lips"`` (``D``, 18 values per frame) or ``"all"`` (63).
        with_reference: also return what rendering needs: the reference crop, the window's motion and the
            reference frame's motion (the lip refiner's stage).
        extras: any of ``raw_audio`` (the window's 16 kHz samples, ``(W * 640,)``), ``reference_exp`` (the
            expression ``(W, 21, 3)`` of another window of the clip: a reference video of the same emotion) and
            ``text`` (the clip's transcript: ``pctalk-data build --transcripts``; a clip without one is an error):
            the inputs of the learned emotion sources.

    Returns:
        tensors ``target (W, 18|63)``, ``mask (W,)``, ``mel`` or ``audio_feat``, ``style``, ``emotion``, ``level``
        (and the rendering inputs), plus ``key``.
    """
    if audio not in ("mel", "feat", "auto"):
        raise ValueError(f"audio must be 'mel', 'feat' or 'auto', got {audio!r}")
    m = clip.motion
    n = len(m)
    start = rng.randrange(max(1, n - window + 1)) if rng is not None else 0
    mask = np.zeros(window, bool)
    mask[: min(window, n - start)] = True
    use_feat = audio == "feat" or (audio == "auto" and clip.audio_feat is not None)
    if use_feat and clip.audio_feat is None:
        raise ValueError(
            f"{clip.key} has no audio_feat.npy; rebuild the shards with --audio-features or use audio='mel'"
        )
    out: dict[str, Any] = {
        "key": clip.key,
        "target": torch.from_numpy(
            lip_deformation(_window(m.exp, start, window), _window(m.scale, start, window), TARGETS[target])
        ),
        "mask": torch.from_numpy(mask),
        "style": torch.tensor(clip.meta.style_id),
        "emotion": torch.tensor(clip.meta.emotion_id),
        "level": torch.tensor(clip.meta.level),
    }
    if use_feat:
        out["audio_feat"] = torch.from_numpy(_window(clip.audio_feat, start, window))
        out["audio_feat_sha256"] = str(clip.meta.extra.get("audio_feat_sha256", ""))  # the encoder that made them
    if not use_feat or with_reference:  # the lip refiner's sync loss needs the mel windows too
        windows = frame_windows(clip.mel, n, start=start, count=min(window, n - start)).numpy()
        out["mel"] = torch.from_numpy(_window(windows, 0, window))
    unknown = set(extras) - {"raw_audio", "reference_exp", "text"}
    if unknown:
        raise ValueError(f"unknown extras {sorted(unknown)}; choose from raw_audio, reference_exp, text")
    if "raw_audio" in extras:
        spf = len(clip.audio) // n
        out["raw_audio"] = torch.from_numpy(_window(clip.audio.reshape(n, spf), start, window).reshape(-1))
    if "reference_exp" in extras:
        other = rng.randrange(max(1, n - window + 1)) if rng is not None else max(0, n - window)
        out["reference_exp"] = torch.from_numpy(_window(m.exp, other, window))
    if "text" in extras:
        text = str(clip.meta.extra.get("text") or "").strip()
        if not text:
            raise ValueError(
                f"{clip.key} has no transcript, which the text emotion source trains on: build the shards with "
                f"`pctalk-data build ... --transcripts FILE` (clip id -> text), or drop `text` from the sources"
            )
        out["text"] = text
    if with_reference:
        for name in ("exp", "pitch", "yaw", "roll", "t", "scale"):
            out[name] = torch.from_numpy(_window(getattr(m, name), start, window))
        out["kp"] = torch.from_numpy(np.array(m.kp))
        out["ref"] = torch.from_numpy(clip.ref).permute(2, 0, 1).float().div_(255)
        for name in ("exp", "pitch", "yaw", "roll", "t", "scale"):
            out[f"ref_{name}"] = torch.from_numpy(np.array(getattr(m, name)[0]))
    return out
