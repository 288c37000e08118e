"""Keypoint regions and LivePortrait's keypoint math, against hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from pctalk.keypoints.regions import BROWS, EYES, LIPS, NUM_KP, REGIONS, region
from pctalk.keypoints.transform import headpose_degrees, rotation_matrix, transform_keypoints


def test_region_sets() -> None:
    assert LIPS == (6, 12, 14, 17, 19, 20)
    assert EYES == (11, 13, 15, 16, 18)
    assert BROWS == (0, 1, 2)
    assert REGIONS["upper_face"] == (0, 1, 2, 11, 13, 15, 16, 18)
    assert REGIONS["lower_face"] == LIPS
    assert REGIONS["all"] == tuple(range(NUM_KP))
    assert set(LIPS).isdisjoint(EYES) and set(EYES).isdisjoint(BROWS) and set(LIPS).isdisjoint(BROWS)
    assert region("eyes") == EYES
    with pytest.raises(ValueError, match="unknown facial region 'nose'"):
        region("nose")


def test_headpose_degrees() -> None:
    logits = torch.full((3, 66), -1e4)
    logits[0, 0] = 0  # all mass on bin 0
    logits[1, 65] = 0  # on bin 65
    logits[2, 32] = logits[2, 33] = 0  # split between 32 and 33: the centre
    torch.testing.assert_close(headpose_degrees(logits), torch.tensor([-97.5, 97.5, 0.0]))
    uniform = headpose_degrees(torch.zeros(1, 66))
    torch.testing.assert_close(uniform, torch.tensor([0.0]))
    with pytest.raises(ValueError, match=r"\(B, 66\)"):
        headpose_degrees(torch.zeros(2, 65))


def test_rotation_matrix_hand_computed() -> None:
    zero, ninety = torch.zeros(1), torch.full((1,), 90.0)
    torch.testing.assert_close(rotation_matrix(zero, zero, zero), torch.eye(3)[None])
    # Row-vector convention: R = (Rz Ry Rx)^T, so R for a pure yaw of 90 degrees is Ry(90)^T.
    ry = torch.tensor([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    torch.testing.assert_close(rotation_matrix(zero, ninety, zero)[0], ry, atol=1e-6, rtol=0)
    rx = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
    torch.testing.assert_close(rotation_matrix(ninety, zero, zero)[0], rx, atol=1e-6, rtol=0)
    rz = torch.tensor([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    torch.testing.assert_close(rotation_matrix(zero, zero, ninety)[0], rz, atol=1e-6, rtol=0)
    # A row vector along x, yawed by 90 degrees: x @ R.
    x = torch.tensor([[1.0, 0.0, 0.0]])
    torch.testing.assert_close(
        x @ rotation_matrix(zero, ninety, zero)[0], torch.tensor([[0.0, 0.0, -1.0]]), atol=1e-6, rtol=0
    )


def test_rotation_composition_order() -> None:
    p, y, r = torch.tensor([10.0]), torch.tensor([-25.0]), torch.tensor([40.0])
    R = rotation_matrix(p, y, r)[0]
    expected = (
        rotation_matrix(0 * p, 0 * y, r)[0].T
        @ rotation_matrix(0 * p, y, 0 * r)[0].T
        @ rotation_matrix(p, 0 * y, 0 * r)[0].T
    ).T
    torch.testing.assert_close(R, expected)
    torch.testing.assert_close(R @ R.T, torch.eye(3), atol=1e-6, rtol=0)
    assert torch.linalg.det(R).item() == pytest.approx(1.0, abs=1e-6)


def test_rotation_accepts_column_vectors_and_batches() -> None:
    angles = torch.tensor([[5.0], [15.0]])
    assert rotation_matrix(angles, angles, angles).shape == (2, 3, 3)
    with pytest.raises(ValueError, match="same batch size"):
        rotation_matrix(torch.zeros(2), torch.zeros(3), torch.zeros(2))


def test_transform_keypoints_drops_tz() -> None:
    kp = torch.tensor([[[1.0, 2.0, 3.0]]])
    exp = torch.tensor([[[0.5, 0.0, -1.0]]])
    R = torch.eye(3)[None]
    out = transform_keypoints(kp, R, exp, torch.tensor([[2.0]]), torch.tensor([[10.0, 20.0, 30.0]]))
    torch.testing.assert_close(out, torch.tensor([[[13.0, 24.0, 4.0]]]))


def test_transform_keypoints_applies_rotation_as_row_vectors() -> None:
    kp = torch.randn(2, 21, 3)
    angle = torch.tensor([30.0, -60.0])
    R = rotation_matrix(torch.zeros(2), torch.zeros(2), angle)
    out = transform_keypoints(kp, R, torch.zeros_like(kp), torch.ones(2, 1), torch.zeros(2, 3))
    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
    x, y = kp[0, :, 0], kp[0, :, 1]
    torch.testing.assert_close(out[0, :, 0], c * x - s * y, atol=1e-5, rtol=0)
    torch.testing.assert_close(out[0, :, 1], s * x + c * y, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match=r"\(B, K, 3\)"):
        transform_keypoints(kp, R, torch.zeros(2, 20, 3), torch.ones(2, 1), torch.zeros(2, 3))
