"""EMC's emotion controls: pure emotional deformation, intensity, and per-region composition.

- :func:`pure_emotion`: ``E = CPred(a, e) - CPred(a, neutral)``, same audio, style and window: the motion an emotion
  adds to speech, in ``s * exp`` units ``(B, T, 21, 3)``. Neutral minus neutral is exactly zero.
- :func:`compose`: ``exp[region] += intensity * E[region] / s`` for each term, summed; keypoints outside every
  named region stay untouched ("sad lips + surprised eyes", "smiling while crying").
- :func:`replace_region`: the reference-image (or reference-video) source: a region's expression is replaced by
  the reference's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from pctalk.keypoints.regions import region as region_indices
from pctalk.models.emotion_predictor import EmotionPredictor
from pctalk.models.windows import predict_windows, window_plan

__all__ = ["DEFAULT_INTENSITY", "EmotionTerm", "compose", "pure_emotion", "pure_emotions", "replace_region"]

#: Intensity used when a term names none.
DEFAULT_INTENSITY = 0.5
NEUTRAL = 0


def _is_neutral(emotion: torch.Tensor, n_emotions: int) -> torch.Tensor:
    """Per sample: is ``emotion`` (indices ``(B,)`` or codes ``(B, n_emotions)``) exactly the neutral label?"""
    if not emotion.is_floating_point():
        return emotion == NEUTRAL
    neutral = torch.zeros(n_emotions, dtype=emotion.dtype, device=emotion.device)
    neutral[NEUTRAL] = 1
    return (emotion == neutral).all(-1)


def pure_emotions(
    predictor: EmotionPredictor,
    audio: torch.Tensor,
    embeddings: torch.Tensor,
    style: torch.Tensor,
    window: int | None = None,
) -> torch.Tensor:
    """The pure emotional deformations of several emotions for one clip, in one batched pass (the neutral branch
    computed once): ``CPred(audio, e_k) - CPred(audio, neutral)`` for each embedding ``e_k``.

    Args:
        audio: ``(1, T, A)`` audio features.
        embeddings: ``(K, d)`` emotion embeddings.
        style: ``(1,)`` style index or ``(1, n_styles)`` code.
        window: predict over overlapping windows of this many frames (inference); ``None``: the whole clip at once.

    Returns:
        ``(K, T, 21, 3)`` in ``s * exp`` units.
    """
    k, t = len(embeddings), audio.shape[1]
    neutral = predictor.embed(torch.tensor([NEUTRAL], device=audio.device))
    rows = torch.cat([embeddings, neutral])
    audio_k, style_k = audio.expand(k + 1, -1, -1), style.expand(k + 1, *style.shape[1:])
    if window is None:
        out = predictor.generate(audio_k, style_k, rows)
    else:
        with torch.no_grad():  # the conditioning of every window at once: it does not depend on the warm start
            memories = predictor.window_memories(audio_k, rows, window_plan(t, window))
        out = predict_windows(lambda _, warm, w: predictor.decoder.decode(memories[w], style_k, warm), audio_k, window)
    return (out[:k] - out[k:]).view(k, t, 21, 3)


def pure_emotion(
    predictor: EmotionPredictor,
    audio: torch.Tensor,
    emotion: torch.Tensor,
    style: torch.Tensor,
    window: int | None = None,
) -> torch.Tensor:
    """The pure emotional deformation ``CPred(audio, emotion) - CPred(audio, neutral)``.

    Args:
        predictor: the combined predictor.
        audio: ``(B, T, A)`` audio features.
        emotion: labels ``(B,)``, codes ``(B, 8)`` (soft mixes allowed), or embeddings ``(B, d)`` from a source.
        style: ``(B,)`` style indices or ``(B, n_styles)`` codes.
        window: predict over overlapping windows of this many frames (inference), both branches warm-started
            alike; ``None`` predicts the whole sequence at once.

    Returns:
        ``(B, T, 21, 3)`` in ``s * exp`` units; exactly zero for neutral labels.
    """
    b = audio.shape[0]
    d = predictor.emotion_embedding.out_features
    is_embedding = emotion.is_floating_point() and emotion.ndim == 2 and emotion.shape[-1] == d
    embedding = emotion if is_embedding else predictor.embed(emotion)
    deformation = torch.cat(
        [pure_emotions(predictor, audio[i : i + 1], embedding[i : i + 1], style[i : i + 1], window) for i in range(b)]
    )
    if not is_embedding:
        deformation = deformation.masked_fill(_is_neutral(emotion, predictor.n_emotions)[:, None, None, None], 0.0)
    return deformation


@dataclass
class EmotionTerm:
    """One term of a composition: a pure emotional deformation ``(..., 21, 3)``, the region it acts on, and how
    strongly (``intensity`` may be a number or per-frame values ``(..., T)``)."""

    deformation: torch.Tensor
    region: str = "all"
    intensity: float | torch.Tensor = DEFAULT_INTENSITY


def compose(exp: torch.Tensor, scale: torch.Tensor, terms: Sequence[EmotionTerm]) -> torch.Tensor:
    """Add emotions to an expression: ``exp[region] += intensity * E[region] / s`` for every term.

    Args:
        exp: ``(..., T, 21, 3)`` expression deformation.
        scale: ``(..., T, 1)`` LivePortrait scale ``s`` (``E`` is in ``s * exp`` units).
        terms: the emotions; regions are names of :data:`pctalk.keypoints.regions.REGIONS`.

    Returns:
        the new ``exp``; keypoints outside every term's region are unchanged.
    """
    out = exp.clone()
    for term in terms:
        if term.deformation.shape[-2:] != (21, 3):
            raise ValueError(f"an emotion term's deformation must be (..., 21, 3), got {tuple(term.deformation.shape)}")
        idx = list(region_indices(term.region))
        intensity = torch.as_tensor(term.intensity, dtype=exp.dtype, device=exp.device)
        intensity = intensity[..., None, None] if intensity.ndim else intensity
        out[..., idx, :] += intensity * term.deformation[..., idx, :] / scale[..., None]
    return out


def replace_region(exp: torch.Tensor, reference: torch.Tensor, region: str) -> torch.Tensor:
    """``exp (..., 21, 3)`` with ``region``'s keypoints replaced by ``reference``'s (``(21, 3)``, or broadcastable):
    the reference-image source (the motion extractor's ``exp`` of the image), or a reference video's mean."""
    out = exp.clone()
    idx = list(region_indices(region))
    out[..., idx, :] = reference[..., idx, :].to(exp)
    return out
