"""Face cropping on a real photo: the OpenCV backend end to end, and the LivePortrait backend's decoding and
geometry through ONNX models with known outputs."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from skimage import data

from onnx_models import face_template, landmark106_model, landmark203_model, scrfd_model
from pctalk.keypoints.crop import CROP_SIZE, FaceCropper, FaceNotFoundError, paste_back, soft_mask
from pctalk.keypoints.crop.geometry import landmark_crop_transform, transform_points, warp
from pctalk.keypoints.crop.onnx_models import FaceDetector, Landmark106
from pctalk.weights import MissingWeightsError

ASTRONAUT_FACE = (223.0, 118.0)  # centre of the astronaut's face in skimage.data.astronaut()


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()


# -- OpenCV backend ---------------------------------------------------------------------------------------------------


def test_opencv_crop_finds_the_face(astronaut: np.ndarray) -> None:
    crop = FaceCropper("opencv").crop(astronaut)
    assert crop.image.shape == (CROP_SIZE, CROP_SIZE, 3) and crop.image.dtype == np.uint8
    assert crop.landmarks is None and crop.source_size == (512, 512)
    centre = transform_points(np.array([[256.0, 256.0]]), crop.M_c2o)[0]  # crop centre in the photo
    assert abs(centre[0] - ASTRONAUT_FACE[0]) < 10
    assert 0 < ASTRONAUT_FACE[1] - centre[1] < 40  # shifted up, towards the forehead
    top_left, top_right = transform_points(np.array([[0.0, 0.0], [512.0, 0.0]]), crop.M_c2o)
    assert 150 < np.linalg.norm(top_right - top_left) < 250  # the face (about 95 px wide) fills half the crop
    np.testing.assert_allclose(crop.M_c2o @ crop.M_o2c, np.eye(3), atol=1e-9)


def test_paste_back_restores_the_untouched_area_exactly(astronaut: np.ndarray) -> None:
    crop = FaceCropper("opencv").crop(astronaut)
    generated = np.full((512, 512, 3), 255, np.uint8) - warp(astronaut, crop.M_o2c, 512)  # a negative: visibly new
    out = paste_back(generated, crop, astronaut)
    footprint = warp(soft_mask(), crop.M_c2o, (512, 512)) > 0
    assert np.array_equal(out[~footprint], astronaut[~footprint])
    assert footprint.sum() > 10000 and (out[footprint] != astronaut[footprint]).mean() > 0.5


def test_paste_back_is_aligned(astronaut: np.ndarray) -> None:
    crop = FaceCropper("opencv").crop(astronaut)
    for side in (512, 256):  # the decoder's render, or a crop-sized image
        same = warp(astronaut, np.diag([side / 512, side / 512, 1.0]) @ crop.M_o2c, side)  # the photo, re-cropped
        out = paste_back(same, crop, astronaut)
        centre = np.s_[80:160, 180:270]
        assert np.abs(out[centre].astype(int) - astronaut[centre]).mean() < 6


def test_no_face_and_bad_input(astronaut: np.ndarray) -> None:
    cropper = FaceCropper("opencv")
    with pytest.raises(FaceNotFoundError, match="no face"):
        cropper.crop(np.full((256, 256, 3), 128, np.uint8))
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        cropper.crop(astronaut.astype(np.float32))
    with pytest.raises(ValueError, match="backend"):
        FaceCropper("mtcnn")
    crop = cropper.crop(astronaut)
    with pytest.raises(ValueError, match="cut from an image of"):
        paste_back(crop.image, crop, astronaut[:300])


def test_opencv_video_tracking(astronaut: np.ndarray) -> None:
    frames = [np.roll(astronaut, shift=(2 * i, 3 * i), axis=(0, 1)) for i in range(4)]
    crops = FaceCropper("opencv").crop_video(frames)
    assert len(crops) == 4
    centres = [transform_points(np.array([[256.0, 256.0]]), c.M_c2o)[0] for c in crops]
    assert all(np.hypot(*(b - a)) < 8 for a, b in itertools.pairwise(centres))  # smooth
    assert centres[-1][0] > centres[0][0]  # follows the face to the right
    blank = np.zeros_like(astronaut)
    with pytest.raises(FaceNotFoundError, match="frame 0"):
        FaceCropper("opencv").crop_video([blank, astronaut])


# -- LivePortrait backend, through ONNX models with known outputs ------------------------------------------------


def _liveportrait_weights(root: Path, image: np.ndarray, roll: float = 0.0, extra_faces: bool = True) -> np.ndarray:
    """Write the three cropper models so that they find a face at ASTRONAUT_FACE; returns its 203 landmarks."""
    box = np.array([170.0, 60.0, 276.0, 176.0])
    kps = np.array([[200, 100], [246, 100], [223, 120], [205, 140], [241, 140]], np.float32)
    faces = [(box, 0.9, kps)]
    if extra_faces:
        faces += [(box + 3, 0.6, kps + 3), (np.array([20.0, 300.0, 60.0, 340.0]), 0.8, kps * 0 + 40)]
    scrfd_model(root / "insightface/models/buffalo_l/det_10g.onnx", faces)
    l106 = face_template(106, ASTRONAUT_FACE, 110, roll)
    s = 192 / (max(box[2] - box[0], box[3] - box[1]) * 1.5)
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    m106 = np.array([[s, 0, 96 - cx * s], [0, s, 96 - cy * s]])
    landmark106_model(root / "insightface/models/buffalo_l/2d106det.onnx", transform_points(l106, m106) / 96 - 1)
    l203 = face_template(203, ASTRONAUT_FACE, 110, roll)
    m224 = landmark_crop_transform(l106, 224, 1.5, vy_ratio=-0.1)
    landmark203_model(root / "liveportrait/landmark.onnx", transform_points(l203, m224) / 224)
    return l203


def test_detector_decodes_boxes_keypoints_and_nms(tmp_path: Path, astronaut: np.ndarray) -> None:
    _liveportrait_weights(tmp_path, astronaut)
    faces = FaceDetector(tmp_path / "insightface/models/buffalo_l/det_10g.onnx").detect(astronaut)
    assert len(faces) == 2  # the overlapping weaker box is suppressed
    np.testing.assert_allclose(faces[0].bbox, [170, 60, 276, 176], atol=1e-3)
    assert faces[0].score == pytest.approx(0.9)
    np.testing.assert_allclose(faces[0].kps[0], [200, 100], atol=1e-3)
    np.testing.assert_allclose(faces[1].bbox, [20, 300, 60, 340], atol=1e-3)  # smaller, second


def test_detector_undoes_the_letterbox(tmp_path: Path) -> None:
    path = scrfd_model(tmp_path / "det.onnx", [(np.array([100.0, 50.0, 200.0, 150.0]), 0.9, np.zeros((5, 2)))])
    wide = np.zeros((400, 600, 3), np.uint8)  # resized to 512 x 341 inside the 512 canvas
    (face,) = FaceDetector(path).detect(wide)
    np.testing.assert_allclose(face.bbox, np.array([100, 50, 200, 150]) * 400 / 341, rtol=1e-5)


def test_landmark106_input_normalisation_follows_insightface(tmp_path: Path) -> None:
    normalised = np.zeros((106, 2), np.float32)
    mxnet = Landmark106(landmark106_model(tmp_path / "a.onnx", normalised, mxnet_style=True))
    plain = Landmark106(landmark106_model(tmp_path / "b.onnx", normalised, mxnet_style=False))
    assert (mxnet.mean, mxnet.std) == (0.0, 1.0)
    assert (plain.mean, plain.std) == (127.5, 128.0)


@pytest.mark.parametrize("roll", [0.0, 15.0])
def test_liveportrait_crop_geometry(tmp_path: Path, astronaut: np.ndarray, roll: float) -> None:
    l203 = _liveportrait_weights(tmp_path, astronaut, roll)
    crop = FaceCropper("liveportrait", weights_root=tmp_path).crop(astronaut)
    np.testing.assert_allclose(crop.landmarks, l203, atol=2e-3)
    assert crop.image.shape == (256, 256, 3)
    pts = crop.landmarks_crop
    left, right = pts[[0, 6, 12, 18]].mean(0), pts[[24, 30, 36, 42]].mean(0)
    lip = (pts[48] + pts[66]) / 2
    assert abs(left[1] - right[1]) < 1e-3  # roll removed: the eyes are level
    assert abs((left[0] + right[0]) / 2 - lip[0]) < 1e-3  # the face axis is vertical
    # Square of side 2.3 x the landmarks' extent (1.24 x 110 px tall), mapped onto 256 pixels.
    assert np.hypot(*(right - left)) == pytest.approx(0.4 * 110 * 256 / (2.3 * 1.24 * 110), rel=1e-3)
    # Centre: the landmarks' box centre moved up by 0.125 of the side (about 36 crop pixels).
    centre_y = (pts[:, 1].min() + pts[:, 1].max()) / 2
    assert centre_y == pytest.approx(128 + 0.125 * 256, abs=0.05)


def test_liveportrait_video_detects_once_then_tracks(tmp_path: Path, astronaut: np.ndarray) -> None:
    _liveportrait_weights(tmp_path, astronaut)
    cropper = FaceCropper("liveportrait", weights_root=tmp_path)
    calls = []
    detect = cropper.detector.detect
    cropper.detector.detect = lambda image: calls.append(1) or detect(image)
    crops = cropper.crop_video([astronaut] * 3)
    assert len(crops) == 3 and len(calls) == 1
    assert all(c.landmarks.shape == (203, 2) for c in crops)


def test_missing_onnx_files_name_the_path_and_the_fallback(tmp_path: Path) -> None:
    with pytest.raises(MissingWeightsError) as err:
        FaceCropper("liveportrait", weights_root=tmp_path)
    assert "det_10g.onnx" in str(err.value) and "--cropper dlib" in str(err.value)


# -- the dlib cropper: a real face detector with landmarks, installed from PyPI -------------------------------------
def _face_box_astronaut() -> tuple[int, int, int, int]:
    """Where the astronaut's face is in skimage's photo (by eye: brows to chin, ear to ear), not the rocket."""
    return 170, 70, 275, 180


def test_dlib_crop_holds_the_astronauts_face(astronaut: np.ndarray) -> None:
    cropper = FaceCropper("dlib")
    crop = cropper.crop(astronaut)
    assert crop.landmarks is not None and crop.landmarks.shape == (68, 2)
    x1, y1, x2, y2 = _face_box_astronaut()
    inside = (crop.landmarks[:, 0] >= x1) & (crop.landmarks[:, 0] <= x2)
    inside &= (crop.landmarks[:, 1] >= y1) & (crop.landmarks[:, 1] <= y2)
    assert inside.mean() > 0.95  # the landmarks are the face's
    centre = transform_points(np.array([[256.0, 256.0]]), crop.M_c2o)[0]
    assert x1 < centre[0] < x2 and y1 < centre[1] < y2  # the crop is centred on it
    in_crop = crop.landmarks_crop
    assert (in_crop > 0).all() and (in_crop < CROP_SIZE).all()


def test_dlib_takes_the_largest_of_several_faces_and_says_so(astronaut: np.ndarray) -> None:
    import cv2

    face = astronaut[40:220, 140:300]
    canvas = np.full((480, 900, 3), 90, np.uint8)  # landscape, faces off-centre
    canvas[20:200, 40:200] = face  # the smaller face, left
    big = cv2.resize(face, (240, 270))
    canvas[150:420, 560:800] = big  # the larger face, right
    with pytest.warns(UserWarning, match=r"2 faces found; cropping the largest, box"):
        crop = FaceCropper("dlib").crop(canvas)
    assert crop.landmarks[:, 0].min() > 540  # the right-hand (larger) face
    frames = [canvas] * 3
    with pytest.warns(UserWarning, match="2 faces found"):
        crops = FaceCropper("dlib").crop_video(frames)
    assert len(crops) == 3 and all(c.landmarks[:, 0].min() > 540 for c in crops)
    with pytest.raises(FaceNotFoundError, match="dlib"):
        FaceCropper("dlib").crop(np.full((200, 300, 3), 120, np.uint8))
