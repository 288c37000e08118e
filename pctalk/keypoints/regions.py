"""Which of LivePortrait's 21 implicit keypoints belong to which facial region (0-based indices).

LivePortrait ties some implicit keypoints to 2D landmarks during training, so these sets move the lips, eyes and
brows (PC-Talk's region control). Keypoint 5's x and y in ``exp`` act as a face shift.
"""

from __future__ import annotations

__all__ = ["BROWS", "EYES", "LIPS", "LOWER_FACE", "NUM_KP", "REGIONS", "TARGETS", "UPPER_FACE", "region"]

#: Number of implicit keypoints.
NUM_KP = 21
LIPS: tuple[int, ...] = (6, 12, 14, 17, 19, 20)
EYES: tuple[int, ...] = (11, 13, 15, 16, 18)
BROWS: tuple[int, ...] = (0, 1, 2)
UPPER_FACE: tuple[int, ...] = tuple(sorted(EYES + BROWS))
LOWER_FACE: tuple[int, ...] = LIPS

REGIONS: dict[str, tuple[int, ...]] = {
    "lips": LIPS,
    "eyes": EYES,
    "brows": BROWS,
    "upper_face": UPPER_FACE,
    "lower_face": LOWER_FACE,
    "all": tuple(range(NUM_KP)),
}

#: LAC's prediction targets: the six lip keypoints (the paper's), or all 21 (Table 3's "no lip keypoints" ablation)
TARGETS: dict[str, tuple[int, ...]] = {"lips": LIPS, "all": tuple(range(NUM_KP))}


def region(name: str) -> tuple[int, ...]:
    """The keypoint indices of region ``name`` (one of :data:`REGIONS`)."""
    try:
        return REGIONS[name]
    except KeyError:
        raise ValueError(f"unknown facial region {name!r}; choose one of {', '.join(REGIONS)}") from None
