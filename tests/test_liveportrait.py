"""pctalk's LivePortrait: bit-compatible with the public code (golden fixture), loads its checkpoint layout, frozen."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import TESTS
from pctalk.keypoints.config import LivePortraitConfig
from pctalk.keypoints.liveportrait import LivePortrait, build_liveportrait, load_liveportrait, save_liveportrait
from pctalk.weights import CheckpointKeyError, MissingWeightsError, load_checkpoint
from random_weights import seeded_state_dict

GOLDEN = TESTS / "fixtures" / "liveportrait_tiny.pt"


def _golden_model() -> LivePortrait:
    """The fixture's weights: each network seeded by name from 1234 + its index (tests/fixtures/README.md)."""
    model = LivePortrait(LivePortraitConfig.tiny(spade_hidden=128))
    parts = [
        model.motion_extractor,
        model.appearance_encoder,
        model.warping,
        model.decoder,
        model.stitching.stitching,
        model.stitching.lip,
        model.stitching.eye,
    ]
    for i, part in enumerate(parts):
        part.load_state_dict(seeded_state_dict(part.state_dict(), 1234 + i))
    return model


def test_matches_the_public_implementation(tmp_path: Path) -> None:
    golden = torch.load(GOLDEN, weights_only=True)
    root = tmp_path / "weights"
    save_liveportrait(_golden_model(), root)
    model = load_liveportrait(root, config=LivePortraitConfig.tiny(spade_hidden=128))  # through the real loader
    images, x_driven = golden["images"], golden["x_driven"]

    def close(ours: torch.Tensor, name: str, atol: float = 1e-4) -> None:
        torch.testing.assert_close(ours, golden[name], atol=atol, rtol=0, msg=f"{name} differs from LivePortrait")

    with torch.no_grad():
        motion = model.extract_motion(images, return_raw=True)
        for head in ("kp", "exp", "pitch", "yaw", "roll", "t", "scale"):
            close(motion.raw[head], f"raw.{head}")
        for angle in ("pitch", "yaw", "roll"):
            close(getattr(motion, angle), angle)
        close(motion.R, "R")
        x_source = motion.keypoints()
        close(x_source, "x_source")
        feature = model.appearance(images)
        close(feature, "feature")
        close(model.warping(feature, kp_driving=x_driven, kp_source=x_source), "warped")
        # With these random weights the decoder's activations reach ~1.5e3, so the SIMD kernels of another CPU (the
        # fixture was made on AVX-512, CI may run AVX2) round the image by up to ~1.1e-4; on one machine pctalk and
        # the public code agree bit for bit (tests/fixtures/README.md).
        image = model.warp_decode(feature, x_source, x_driven)
        close(image, "image", atol=1e-3)
        assert (image - golden["image"]).abs().mean() < 2e-5
        close(model.stitch(x_source, x_driven), "stitched")


def test_official_sizes() -> None:
    model = build_liveportrait()
    counts = {
        name: sum(p.numel() for p in getattr(model, name).parameters()) / 1e6
        for name in ("motion_extractor", "appearance_encoder", "warping", "decoder")
    }
    assert counts == pytest.approx(
        {"motion_extractor": 28.12, "appearance_encoder": 0.836, "warping": 45.53, "decoder": 55.37}, rel=1e-3
    )
    assert model.config.output_size == 512
    keys = model.decoder.state_dict()
    assert {"G_middle_0.conv_0.weight_orig", "G_middle_0.conv_0.weight_u", "G_middle_0.conv_0.weight_v"} <= set(keys)
    assert all(k.startswith("detector.") for k in model.motion_extractor.state_dict())


def test_round_trip_in_the_public_layout(tmp_path: Path, tiny_liveportrait: LivePortrait) -> None:
    folder = save_liveportrait(tiny_liveportrait, tmp_path)
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*.pth")) == [
        "base_models/appearance_feature_extractor.pth",
        "base_models/motion_extractor.pth",
        "base_models/spade_generator.pth",
        "base_models/warping_module.pth",
        "retargeting_models/stitching_retargeting_module.pth",
    ]
    stitching = load_checkpoint(folder / "retargeting_models/stitching_retargeting_module.pth")
    assert set(stitching) == {"retarget_shoulder", "retarget_mouth", "retarget_eye"}
    for root in (tmp_path, folder):  # the folder holding liveportrait/, or liveportrait/ itself
        loaded = load_liveportrait(root, config=LivePortraitConfig.tiny())
        for (k, a), (_, b) in zip(sorted(loaded.state_dict().items()), sorted(tiny_liveportrait.state_dict().items())):
            assert torch.equal(a, b), k


def test_stitching_loads_with_a_ddp_prefix(tmp_path: Path, tiny_liveportrait: LivePortrait) -> None:
    folder = save_liveportrait(tiny_liveportrait, tmp_path)
    path = folder / "retargeting_models/stitching_retargeting_module.pth"
    stitching = load_checkpoint(path)
    torch.save({key: {f"module.{k}": v for k, v in sd.items()} for key, sd in stitching.items()}, path)
    loaded = load_liveportrait(tmp_path, config=LivePortraitConfig.tiny())
    torch.testing.assert_close(loaded.stitching.state_dict(), tiny_liveportrait.stitching.state_dict())


def test_missing_file_names_path_and_origin(tmp_path: Path, tiny_liveportrait: LivePortrait) -> None:
    folder = save_liveportrait(tiny_liveportrait, tmp_path)
    (folder / "base_models/warping_module.pth").unlink()
    with pytest.raises(MissingWeightsError) as err:
        load_liveportrait(tmp_path, config=LivePortraitConfig.tiny())
    assert str(folder / "base_models/warping_module.pth") in str(err.value)
    assert "KwaiVGI/LivePortrait" in str(err.value)
    with pytest.raises(MissingWeightsError, match="liveportrait/base_models"):
        load_liveportrait(tmp_path / "empty", config=LivePortraitConfig.tiny())


def test_stitching_is_optional_only_when_asked(tmp_path: Path, tiny_liveportrait: LivePortrait) -> None:
    folder = save_liveportrait(tiny_liveportrait, tmp_path)
    (folder / "retargeting_models/stitching_retargeting_module.pth").unlink()
    with pytest.raises(MissingWeightsError, match="stitching_retargeting_module"):
        load_liveportrait(tmp_path, config=LivePortraitConfig.tiny())
    model = load_liveportrait(tmp_path, config=LivePortraitConfig.tiny(), require_stitching=False)
    x = torch.randn(2, 21, 3)
    assert not model.has_stitching and torch.equal(model.stitch(x, x + 1), x + 1)


def test_wrong_sizes_list_the_offending_keys(tmp_path: Path, tiny_liveportrait: LivePortrait) -> None:
    save_liveportrait(tiny_liveportrait, tmp_path)
    with pytest.raises(CheckpointKeyError, match=r"appearance_feature_extractor\.pth.*(missing|shape)"):
        load_liveportrait(tmp_path)  # official sizes expected, tiny files given


def test_bad_inputs_name_the_expected_shape(tiny_liveportrait: LivePortrait) -> None:
    with pytest.raises(ValueError, match=r"\(B, 3, 64, 64\)"):
        tiny_liveportrait.extract_motion(torch.rand(1, 3, 32, 32))
    with pytest.raises(TypeError, match="float images"):
        tiny_liveportrait.extract_motion(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\(B, 3, 64, 64\)"):
        tiny_liveportrait.appearance(torch.rand(3, 64, 64))
    feature = tiny_liveportrait.appearance(torch.rand(1, 3, 64, 64))
    with pytest.raises(ValueError, match=r"x_driven must be keypoints \(B, 21, 3\)"):
        tiny_liveportrait.warp_decode(feature, torch.zeros(1, 21, 3), torch.zeros(1, 20, 3))
    with pytest.raises(ValueError, match="feature volume"):
        tiny_liveportrait.warp_decode(feature[:, 0], torch.zeros(1, 21, 3), torch.zeros(1, 21, 3))


def test_frozen_but_differentiable_in_the_keypoints(tiny_liveportrait: LivePortrait) -> None:
    tiny_liveportrait.train()
    assert not any(m.training for m in tiny_liveportrait.modules())
    assert not any(p.requires_grad for p in tiny_liveportrait.parameters())
    images = torch.rand(2, 3, 64, 64)
    motion = tiny_liveportrait.extract_motion(images)
    feature = tiny_liveportrait.appearance(images)
    x_source = motion.keypoints()
    x_driven = x_source.clone().requires_grad_(True)
    before = {k: v.clone() for k, v in tiny_liveportrait.state_dict().items()}
    image = tiny_liveportrait.warp_decode(feature, x_source, tiny_liveportrait.stitch(x_source, x_driven))
    assert image.shape == (2, 3, 128, 128) and 0 <= image.min() and image.max() <= 1
    image.mean().backward()
    assert x_driven.grad is not None and x_driven.grad.abs().sum() > 0
    for k, v in tiny_liveportrait.state_dict().items():  # BN statistics and spectral-norm vectors untouched
        assert torch.equal(v, before[k]), k


def test_motion_indexing_and_keypoints(tiny_liveportrait: LivePortrait) -> None:
    motion = tiny_liveportrait.extract_motion(torch.rand(3, 3, 64, 64), return_raw=True)
    one = motion[1:2]
    assert one.kp.shape == (1, 21, 3) and one.raw["pitch"].shape == (1, 66)
    torch.testing.assert_close(one.keypoints(), motion.keypoints()[1:2])
    torch.testing.assert_close(
        motion.keypoints(torch.zeros_like(motion.exp))[:, :, 2], (motion.kp @ motion.R)[:, :, 2] * motion.scale
    )


def test_speed_options_keep_the_numbers(tiny_liveportrait: LivePortrait) -> None:
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        motion = tiny_liveportrait.extract_motion(images)
        feature = tiny_liveportrait.appearance(images)
        x = motion.keypoints()
        exact = tiny_liveportrait.warp_decode(feature, x, x + 0.01)
        tiny_liveportrait.to_channels_last()
        # Another memory layout sums in another order: float rounding only (large random-weight activations).
        channels_last = tiny_liveportrait.warp_decode(feature, x, x + 0.01)
        torch.testing.assert_close(channels_last, exact, atol=1e-3, rtol=0)
        assert (channels_last - exact).abs().mean() < 2e-5
        tiny_liveportrait.set_precision("bf16")
        fast = tiny_liveportrait.warp_decode(feature, x, x + 0.01)
        assert fast.dtype == torch.float32 and (fast - exact).abs().mean() < 0.05
    with pytest.raises(ValueError, match="precision"):
        tiny_liveportrait.set_precision("int8")
