"""Acc_emo (Emotion-FAN), E-FID (Deep3DFaceRecon) and NIQE against their reference computations."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io
import torch
import torchvision
from PIL import Image
from skimage import data

from eval.metrics.efid import ExpressionFID
from eval.metrics.emotion import EmotionAccuracy
from eval.metrics.frechet import frechet_distance
from eval.metrics.niqe import NIQE, matlab_imresize, niqe
from eval.networks.deep3dfacerecon import ReconNet, align_face, load_lm3d
from eval.networks.emotion_fan import EmotionFAN, load_emotion_fan, preprocess_faces
from pctalk.weights.registry import MissingWeightsError
from random_weights import seeded_state_dict


def _faces(n: int, size: int, seed: int) -> np.ndarray:
    """Jittered crops around the astronaut's face."""
    rng = np.random.default_rng(seed)
    photo = data.astronaut()
    out = []
    for _ in range(n):
        dy, dx = rng.integers(-12, 12, 2)
        out.append(cv2.resize(photo[30 + dy : 250 + dy, 100 + dx : 320 + dx], (size, size)))
    return np.stack(out)


# -- Acc_emo ----------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def emotion_fan_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    state = seeded_state_dict(EmotionFAN(num_classes=8).state_dict(), seed=11)
    path = tmp_path_factory.mktemp("fan") / "emotion_fan_mead.pth.tar"
    torch.save({"epoch": 30, "state_dict": {f"module.{k}": v for k, v in state.items()}, "accuracy": 81.2}, path)
    return path


def test_emotion_fan_layout_is_resnet18_at() -> None:
    resnet = {k for k in torchvision.models.resnet18().state_dict() if not k.startswith("fc.")}
    heads = {f"{m}.{p}" for m in ("alpha.0", "beta.0", "pred_fc1", "pred_fc2") for p in ("weight", "bias")}
    assert set(EmotionFAN().state_dict()) == resnet | heads


def test_video_logits_equal_emotion_fan_val(emotion_fan_file: Path) -> None:
    """Emotion-FAN's ``val``: frames of all videos at once, pooled per video through an index matrix."""
    net, classes = load_emotion_fan(emotion_fan_file)
    assert classes is None and not net.training
    videos = [preprocess_faces(_faces(n, 240, seed=n)) for n in (3, 5)]
    with torch.no_grad():
        f, alphas = net.frame_features(torch.cat(videos))
        index = torch.tensor([0] * 3 + [1] * 5)
        index_matrix = torch.stack([index == i for i in range(2)]).float()
        vm = index_matrix.mm(f.mul(alphas)).div(index_matrix.mm(alphas))
        vs_cate = torch.cat([f, index_matrix.permute(1, 0).mm(vm)], dim=1)
        betas = net.beta(vs_cate)
        reference = net.pred_fc2(index_matrix.mm(vs_cate.mul(alphas)).div(index_matrix.mm(alphas.mul(betas))))
        ours = torch.stack([net(v) for v in videos])
        self_ref = net.pred_fc1(vm)
        self_ours = torch.stack([net(v, attention="self") for v in videos])
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(self_ours, self_ref, rtol=1e-5, atol=1e-5)


def test_emotion_accuracy_maps_classes_by_name(emotion_fan_file: Path) -> None:
    with pytest.raises(ValueError, match="classes="):
        EmotionAccuracy(emotion_fan_file)
    order = ["Neutral", "Happy", "Sad", "Angry", "Fear", "Disgust", "Surprise", "Contempt"]
    metric = EmotionAccuracy(emotion_fan_file, classes=order)
    videos = [_faces(3, 224, seed=s) for s in range(3)]
    predicted = [metric.predict(v) for v in videos]
    metric.update(videos, [predicted[0], predicted[1], "contempt" if predicted[2] != "contempt" else "happy"])
    assert float(metric.compute()) == pytest.approx(2 / 3)
    swapped = EmotionAccuracy(emotion_fan_file, classes=order[::-1])
    assert [swapped.predict(v) for v in videos] == [swapped.classes[metric.classes.index(p)] for p in predicted]
    with pytest.raises(ValueError, match="8 outputs"):
        EmotionAccuracy(emotion_fan_file, classes=order[:7])


# -- E-FID ------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def deep3d_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("deep3d")
    torch.save({"net_recon": seeded_state_dict(ReconNet().state_dict(), seed=13), "epoch": 20}, root / "epoch_20.pth")
    rng = np.random.default_rng(0)
    lm = np.concatenate([rng.uniform(-0.8, 0.8, (68, 2)), rng.uniform(0.0, 0.3, (68, 1))], axis=1)
    lm[36:48, 1] += 0.3  # eyes above the nose, mouth below
    lm[48:68, 1] -= 0.4
    (root / "BFM").mkdir()
    scipy.io.savemat(root / "BFM" / "similarity_Lm3D_all.mat", {"lm": lm})
    return root / "epoch_20.pth", root / "BFM" / "similarity_Lm3D_all.mat"


ASTRONAUT_5 = np.array([[185.0, 110.0], [235.0, 105.0], [212.0, 140.0], [190.0, 170.0], [232.0, 167.0]])


def reference_align(image: np.ndarray, lm: np.ndarray, lm3d: np.ndarray) -> np.ndarray:
    """Deep3DFaceRecon ``align_img`` (``POS`` + ``resize_n_crop_img``) after test.py flips y."""
    img = Image.fromarray(image)
    w0, h0 = img.size
    lm = lm.copy()
    lm[:, -1] = h0 - 1 - lm[:, -1]
    xp, x = lm.transpose(), lm3d.transpose()
    npts = xp.shape[1]
    a = np.zeros([2 * npts, 8])
    a[0 : 2 * npts - 1 : 2, 0:3] = x.transpose()
    a[0 : 2 * npts - 1 : 2, 3] = 1
    a[1 : 2 * npts : 2, 4:7] = x.transpose()
    a[1 : 2 * npts : 2, 7] = 1
    k = np.linalg.lstsq(a, np.reshape(xp.transpose(), [2 * npts, 1]), rcond=None)[0]
    s = 102.0 / ((np.linalg.norm(k[0:3]) + np.linalg.norm(k[4:7])) / 2)
    t = np.stack([k[3], k[7]], axis=0)
    w, h = (w0 * s).astype(np.int32), (h0 * s).astype(np.int32)
    left = (w / 2 - 112 + ((t[0] - w0 / 2) * s).item()).astype(np.int32)  # float() of a 1-element array
    up = (h / 2 - 112 + ((h0 / 2 - t[1]) * s).item()).astype(np.int32)
    return np.asarray(img.resize((w, h), resample=Image.Resampling.BICUBIC).crop((left, up, left + 224, up + 224)))


def test_efid_equals_frechet_of_deep3dfacerecon_expressions(deep3d_files, tmp_path: Path, monkeypatch) -> None:
    ckpt, lm3d_path = deep3d_files
    lm3d = load_lm3d(lm3d_path)
    photo = data.astronaut()
    rng = np.random.default_rng(1)
    landmarks = [ASTRONAUT_5 + rng.normal(0, 3, (5, 2)) for _ in range(10)]
    for lm in landmarks[:2]:
        np.testing.assert_array_equal(align_face(photo, lm, lm3d), reference_align(photo, lm, lm3d))

    metric = ExpressionFID(ckpt, lm3d=lm3d_path)
    frames = np.repeat(photo[None], 10, axis=0)
    frames[5:] = np.clip(frames[5:].astype(int) + 25, 0, 255).astype(np.uint8)  # "generated": brighter
    metric.update(frames[:5], real=True, landmarks=np.stack(landmarks[:5]))
    metric.update(frames[5:], real=False, landmarks=np.stack(landmarks[5:]))
    with torch.no_grad():
        crops = np.stack([reference_align(f, lm, lm3d) for f, lm in zip(frames, landmarks, strict=True)])
        coeffs = metric.net(torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255.0)[:, 80:144].double().numpy()
    real, fake = coeffs[:5], coeffs[5:]
    expected = frechet_distance(fake.mean(0), np.cov(fake, rowvar=False), real.mean(0), np.cov(real, rowvar=False))
    assert float(metric.compute()) == pytest.approx(expected, rel=1e-5)

    monkeypatch.setenv("PCTALK_WEIGHTS", str(tmp_path))
    with pytest.raises(MissingWeightsError, match="similarity_Lm3D_all"):
        ExpressionFID(ckpt)


# -- NIQE -------------------------------------------------------------------------------------------------------------
# Reference values: BasicSR 1.4.2 ``basicsr.metrics.niqe.niqe`` (its MATLAB port, with the same LIVE parameters) on
# ``matlab_rgb2gray(image)``, run on 2026-11-25. BasicSR resizes in float32 (``imresize`` through torch); with its
# resize swapped for a float64 one its values equal ours to 1e-12 (``FLOAT64``).
BASICSR = {"astronaut": 3.067253637350312, "chelsea": 2.572084171566674, "coffee": 4.058465425300524}
FLOAT64 = {"astronaut": 3.0666374996290626, "chelsea": 2.5720840430148844, "coffee": 4.058462007488328}


@pytest.mark.parametrize("name", sorted(BASICSR))
def test_niqe_matches_basicsr_on_real_photos(name: str) -> None:
    score = niqe(getattr(data, name)())
    assert score == pytest.approx(FLOAT64[name], rel=1e-9)
    assert score == pytest.approx(BASICSR[name], rel=5e-4)


def test_niqe_metric_and_bad_input() -> None:
    frames = np.stack([cv2.resize(data.astronaut(), (288, 288)), cv2.resize(data.chelsea(), (288, 288))])
    metric = NIQE()
    metric.update(torch.from_numpy(frames).permute(0, 3, 1, 2))
    assert float(metric.compute()) == pytest.approx((niqe(frames[0]) + niqe(frames[1])) / 2)
    assert niqe(frames[0]) < niqe(cv2.GaussianBlur(frames[0], (0, 0), 3))  # blur is less natural
    with pytest.raises(ValueError, match="96"):
        niqe(np.zeros((64, 64, 3), np.uint8))
    ramp = np.tile(np.linspace(0, 255, 192), (192, 1))
    np.testing.assert_allclose(matlab_imresize(np.full((192, 192), 7.0), 0.5), 7.0)
    assert matlab_imresize(ramp, 0.5).shape == (96, 96)


def test_face_metrics_take_frames_of_any_shape(emotion_fan_file: Path, syncnet_file_for_shapes: Path) -> None:
    """A landscape frame with the face off-centre (a pasted-back HDTF-shaped video): Acc_emo scores the face cut out
    of it, and LSE's ``frame`` mode, which would squeeze the whole frame to 224x224, refuses it."""
    from eval.metrics.emotion import EmotionAccuracy, face_video
    from eval.metrics.lse import LSEInputError, lse_frames
    from eval.networks.syncnet_v2 import load_syncnet_v2
    from pctalk.data.schema import EMOTIONS
    from raw_media import speech, talking_frames

    wav = speech("Hello there.")
    faces = talking_frames(wav, 16)  # (T, 320, 320, 3): the astronaut (a track needs 13 frames or more)
    landscape = np.zeros((len(faces), 360, 640, 3), np.uint8)
    landscape[:, 20:340, 300:620] = faces  # off-centre, right of the middle
    crops = face_video(landscape)
    assert crops.shape[1:] == (224, 224, 3)
    assert face_video(faces) is faces  # square frames are taken as face crops
    metric = EmotionAccuracy(emotion_fan_file, classes=EMOTIONS)
    assert metric.predict(landscape) in metric.classes
    metric.update([landscape], ["happy"])
    assert float(metric.total) == 1
    with pytest.raises(LSEInputError, match="crop='track'"):
        lse_frames(load_syncnet_v2(syncnet_file_for_shapes), landscape, wav, crop="frame")


@pytest.fixture(scope="module")
def syncnet_file_for_shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from eval.networks.syncnet_v2 import SyncNetV2
    from random_weights import seeded_state_dict

    path = tmp_path_factory.mktemp("syncnet") / "syncnet_v2.model"
    torch.save(seeded_state_dict(SyncNetV2().state_dict(), 3), path)
    return path
