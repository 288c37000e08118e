"""The speaking-style encoder: trained on the shards as an identity classifier, it gives a held-out clip of a
training speaker that speaker's style; its code (or a mix of styles) drives LAC through ``pctalk generate``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds

from conftest import tiny_fit
from pctalk.checkpoints import load_lac_stage
from pctalk.checkpoints.style_encoder import load_style_encoder
from pctalk.cli import main
from pctalk.data.examples import lip_deformation
from pctalk.data.schema import decode_sample
from pctalk.data.synthetic import synth
from pctalk.inference import Controls, TalkingFacePipeline
from pctalk.inference.pipeline import mix_styles
from pctalk.models.config import StyleEncoderConfig
from pctalk.models.style_encoder import SpeakingStyleEncoder
from raw_media import talking_video


@pytest.fixture(scope="module")
def style_encoder(tmp_path_factory: pytest.TempPathFactory, synthetic_corpus: Path) -> Path:
    return tiny_fit("style_encoder_tiny.yaml", synthetic_corpus, tmp_path_factory.mktemp("style_run"))


def _clips(root: Path, split: str) -> list:
    shards = sorted(str(p) for p in root.glob(f"{split}-*.tar"))
    return [decode_sample(s) for s in wds.WebDataset(shards, shardshuffle=False)]


def test_a_held_out_clip_gets_its_speakers_style(style_encoder: Path, tmp_path: Path) -> None:
    """Clips 32-47 of the same seeded corpus are new clips of the same speakers (never trained on): each one's code
    is nearer its speaker's one-hot style than the other's."""
    encoder, block = load_style_encoder(style_encoder)
    assert not encoder.training and block["n_styles"] == 2 and set(block["styles"]) == {"0", "1"}
    assert block["training"]["task"] == "SpeakingStyleTask" and block["training"]["steps"] > 0
    more = tmp_path / "more"
    synth(more, clips=48, identities=4, seed=1, progress=False)
    held_out = [c for c in _clips(more, "train") if int(c.meta.clip) >= 32]
    assert {c.meta.style_id for c in held_out} == {0, 1}
    eye = torch.eye(2)
    with torch.no_grad():
        for clip in held_out:
            lips = torch.from_numpy(lip_deformation(clip.motion.exp, clip.motion.scale))[None]
            code = encoder.code(lips)[0]
            distances = (code[None] - eye).norm(dim=1)
            assert int(distances.argmin()) == clip.meta.style_id, (clip.key, code)


def test_an_untrained_encoder_gives_the_mean_style_and_padding_is_ignored() -> None:
    encoder = SpeakingStyleEncoder(5, config=StyleEncoderConfig(d_model=16, n_heads=2, ff_dim=32)).eval()
    lips = torch.randn(2, 30, 6, 3)
    torch.testing.assert_close(encoder.code(lips), torch.full((2, 5), 0.2))
    torch.nn.init.normal_(encoder.style_map.weight)
    mask = torch.ones(2, 30, dtype=torch.bool)
    mask[1, 20:] = False
    padded = lips.clone()
    padded[1, 20:] = 99.0  # whatever pads the clip does not count
    torch.testing.assert_close(encoder.code(padded, mask)[1], encoder.code(lips[1:, :20])[0])


def _save_encoder(encoder: SpeakingStyleEncoder, path: Path) -> Path:
    """A style-encoder file as SpeakingStyleTask writes it (its Lightning checkpoint's state dict and block)."""
    block = {"format_version": 1, "n_styles": encoder.n_styles, "in_dim": 18, "encoder": encoder.config.to_dict(),
             "styles": {}, "training": {}}  # fmt: skip
    state = {f"encoder.{k}": v for k, v in encoder.state_dict().items()}
    torch.save({"state_dict": state, "pctalk_style_encoder": block, "global_step": 0}, path)
    return path


def test_generate_takes_a_style_from_a_clip_and_mixes_styles(
    release: Path, liveportrait_weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.manual_seed(0)
    encoder = SpeakingStyleEncoder(3, config=StyleEncoderConfig(d_model=16, n_heads=2, ff_dim=32, dropout=0.0))
    torch.nn.init.normal_(encoder.style_map.weight, std=2.0)
    file = _save_encoder(encoder.eval(), tmp_path / "style.ckpt")
    clip = talking_video(tmp_path / "reference.mp4")
    rendering = ["--weights", str(liveportrait_weights), "--liveportrait-size", "tiny", "--cropper", "opencv"]
    common = ["generate", "--lac", str(release / "lac.pth"), "--text", "The duck ate too many bees.", "--no-progress"]

    def motion(*options: str) -> dict[str, np.ndarray]:
        out = tmp_path / f"m{len(list(tmp_path.glob('m*.npz')))}.npz"
        assert main([*common, *options, "--save-motion", str(out)]) == 0, capsys.readouterr().err
        return dict(np.load(out))

    pipeline = TalkingFacePipeline.from_checkpoints(
        release / "lac.pth", weights=liveportrait_weights, cropper="opencv", liveportrait_size="tiny", progress=False
    )
    loaded, _ = load_style_encoder(file)
    code = pipeline.style_code_from_clip(loaded, clip)
    assert len(code) == 3 and abs(sum(code) - 1) < 1e-6 and max(code) < 1
    face = pipeline.load_source(clip)
    lips = (face.motion.scale[:, :, None] * face.motion.exp[:, [6, 12, 14, 17, 19, 20]])[None]
    torch.testing.assert_close(torch.tensor(code), encoder.code(lips)[0].double().float())
    from_clip = motion("--style-from", str(clip), "--style-encoder", str(file), *rendering)
    driven = pipeline.generate(None, None, text="The duck ate too many bees.", controls=Controls(style_code=code),
                               save_motion=tmp_path / "expected.npz")  # fmt: skip
    assert np.array_equal(from_clip["lips"], np.load(tmp_path / "expected.npz")["lips"]) and len(driven.keypoints)
    # a mix: weight 1 is the style itself, bit for bit; in between, LAC's style embedding is the weighted sum
    assert all(np.array_equal(a, b) for a, b in zip(motion("--style-mix", "2:1").values(),
                                                     motion("--style-id", "2").values(), strict=True))  # fmt: skip
    half = motion("--style-id", "0", "--style-mix", "2:0.5")
    assert not np.array_equal(half["lips"], motion("--style-id", "0")["lips"])
    predictor = load_lac_stage(release / "lac.pth").predictor
    mixed = predictor.style_embedding(torch.tensor([mix_styles(3, 0, [(2, 0.5)])]))
    both = predictor.style_embedding(torch.tensor([0, 2]))
    torch.testing.assert_close(mixed[0], both.mean(0))
    # mistakes: a style encoder for another LAC, a clip without the encoder, bad weights
    other = _save_encoder(SpeakingStyleEncoder(2, config=StyleEncoderConfig(d_model=16, n_heads=2, ff_dim=32)),
                          tmp_path / "other.ckpt")  # fmt: skip
    for options, message in (
        (["--style-from", str(clip), "--style-encoder", str(other), *rendering], "knows 2 styles but the LAC has 3"),
        (["--style-from", str(clip), *rendering], "needs --style-encoder"),
        (["--style-mix", "2:0.7", "--style-mix", "1:0.6"], "sum to at most 1"),
        (["--style-mix", "2"], "use NAME:WEIGHT"),
        (["--style-id", "1", "--style-from", str(clip), "--style-encoder", str(file), *rendering], "not --style-id"),
        (["--style-encoder", str(release / "lac.pth"), "--style-from", str(clip), *rendering], "not a speaking-style"),
    ):
        capsys.readouterr()
        assert main([*common, *options, "--save-motion", str(tmp_path / "x.npz")]) == 2, options
        assert message in capsys.readouterr().err, options
