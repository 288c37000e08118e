"""The checkpoint module: every format in and out, the official release's layout both ways with equal motion, and
clear errors for the wrong file."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

import numpy as np
import official_layout as official
import pytest
import torch

from conftest import tiny_fit
from pctalk.audio.encoder import AudioEncoder
from pctalk.checkpoints import (
    FORMAT_VERSION,
    CheckpointFormatError,
    EMCStage,
    LACStage,
    export,
    load_emc_stage,
    load_lac_stage,
    read,
    save_release,
)
from pctalk.cli import main
from pctalk.inference import Controls, EmotionControl, TalkingFacePipeline
from pctalk.inference.pipeline import SourceFrames
from pctalk.keypoints.transform import rotation_matrix
from pctalk.models import ExpressionPredictor, LipRefiner
from pctalk.models.config import EmotionConfig, PredictorConfig
from pctalk.models.emotion_predictor import EmotionPredictor
from pctalk.weights import UnsafeCheckpointError

P, T_LAC, T_EMC, N = 5, 25, 20, 58  # styles, the two stages' windows, frames (three windows, the last one short)


@pytest.fixture(scope="module")
def release_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random official-layout LAC (with its refiner under model_ft) and EMC (obj_vector with a bias), built from the
    layout's facts, with an audio encoder beside them."""
    folder = tmp_path_factory.mktemp("official")
    lac = official.randomised(official.MotionDecoder(P, T_LAC, 18, style_bias=False), seed=1)
    refiner = official.randomised(official.OfficialRefiner(), seed=2)
    official.save_official(folder / "lac.pth", lac, P, T_LAC, model_ft=refiner.state_dict())
    official.save_official(
        folder / "emc.pth", official.randomised(official.OfficialEMC(P, T_EMC), seed=3, output_std=0.05), P, T_EMC
    )
    torch.save(AudioEncoder().state_dict(), folder / "audio_encoder.pth")
    return folder


def _frames(seed: int = 0) -> dict[str, np.ndarray]:
    """Plausible per-frame source motion (a moving head)."""
    rng = np.random.default_rng(seed)
    angles = [torch.from_numpy(rng.normal(0, 8, N).astype(np.float32)) for _ in range(3)]
    return {
        "kp": np.repeat(rng.normal(0, 0.1, (1, 21, 3)).astype(np.float32), N, 0),
        "exp": rng.normal(0, 0.01, (N, 21, 3)).astype(np.float32),
        "scale": rng.uniform(1.5, 1.9, (N, 1)).astype(np.float32),
        "R": rotation_matrix(*angles).numpy(),
        "t": rng.normal(0, 0.05, (N, 3)).astype(np.float32),
    }


def _source(frames: dict[str, np.ndarray]) -> SourceFrames:
    t = {k: torch.from_numpy(v) for k, v in frames.items()}
    return SourceFrames(t["kp"], t["exp"], t["scale"], t["R"], t["t"], np.arange(N))


def _features(seed: int = 4) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 1, (N, 512)).astype(np.float32)


# -- the official layout -------------------------------------------------------------------------------------------
def test_official_files_load_and_export_back_byte_for_byte(release_files: Path, tmp_path: Path) -> None:
    lac = load_lac_stage(release_files / "lac.pth")
    emc = load_emc_stage(release_files / "emc.pth")
    assert lac.info.target == "lips" and lac.info.window == T_LAC and lac.info.n_styles == P
    assert lac.refiner is not None and not lac.predictor.config.style_bias
    assert emc.info.window == T_EMC and emc.predictor.config.style_bias and emc.predictor.config.emotion_layers == 2
    save_release(lac, tmp_path, "official")
    save_release(emc, tmp_path, "official")
    for name in ("lac.pth", "emc.pth"):
        original, again = (torch.load(folder / name, weights_only=True) for folder in (release_files, tmp_path))
        assert again["args"] == original["args"]
        for part in ("model", "model_ft"):
            assert set(again.get(part, {})) == set(original.get(part, {})), (name, part)
            for key, tensor in original.get(part, {}).items():
                assert again[part][key].dtype == tensor.dtype
                assert again[part][key].numpy().tobytes() == tensor.numpy().tobytes(), (name, part, key)
    # and the official code's strict load takes them: every key of its modules, no other, the same shapes
    for name, module in (
        ("lac.pth", official.MotionDecoder(P, T_LAC, 18, False)),
        ("emc.pth", official.OfficialEMC(P, T_EMC)),
    ):
        module.load_state_dict(torch.load(tmp_path / name, weights_only=True)["model"], strict=True)
    official.OfficialRefiner().load_state_dict(torch.load(tmp_path / "lac.pth", weights_only=True)["model_ft"])


def test_motion_equals_the_official_release(release_files: Path) -> None:
    """Same weights, audio features and source motion: pctalk's LAC (windows, warm start, the refiner inside each
    window, Kalman smoothing, lip scale, articulation edits) and EMC (pure emotion per region with intensity) give
    the official release's expression to 1e-5."""
    frames, feat, person = _frames(), _features(), 3
    lac_model = official.randomised(official.MotionDecoder(P, T_LAC, 18, style_bias=False), seed=1)
    refiner = official.randomised(official.OfficialRefiner(), seed=2)
    emc_model = official.randomised(official.OfficialEMC(P, T_EMC), seed=3, output_std=0.05)
    edits = {"opening": 1.6, "pursing": 0.5}
    conditions = [("happy", "lips", 0.6), ("sad", "upper_face", 0.4), ("angry", "brows", 1.0)]
    after_lac = official.lac_motion(lac_model, refiner, feat, frames, person, lip_scale=1.3, edits=edits)
    expected = official.emc_motion(emc_model, feat, frames, after_lac, person, conditions)

    pipeline = TalkingFacePipeline(
        load_lac_stage(release_files / "lac.pth"), load_emc_stage(release_files / "emc.pth"), device="cpu",
        progress=False,
    )  # fmt: skip
    controls = Controls(
        style_id=person, lip_scale=1.3, style_edits=edits,
        emotions=[EmotionControl(e, region, i) for e, region, i in conditions],
    )  # fmt: skip
    driven = pipeline.drive(torch.from_numpy(feat)[None], _source(frames), controls)
    np.testing.assert_allclose(driven.exp.numpy(), expected, atol=1e-5, rtol=0)
    # the comparison is not between two unchanged expressions: LAC and EMC each move them by far more than 1e-5
    assert np.abs(after_lac - frames["exp"]).max() > 1e-2 and np.abs(expected - after_lac).max() > 1e-3

    # every stage of it matters: without smoothing, or without the refiner, both sides still agree
    plain = official.lac_motion(lac_model, None, feat, frames, person, smooth_on=False)
    unrefined = pipeline.drive(torch.from_numpy(feat)[None], _source(frames), Controls(style_id=person, smooth=False,
                                                                                        refine=False))  # fmt: skip
    np.testing.assert_allclose(unrefined.exp.numpy(), plain, atol=1e-5, rtol=0)
    assert np.abs(plain - expected).max() > 1e-4


@pytest.fixture(scope="module")
def trained_lac(tmp_path_factory: pytest.TempPathFactory, synthetic_corpus: Path) -> Path:
    """A LAC checkpoint of `pctalk fit` on the synthetic corpus (two training identities)."""
    return tiny_fit("expression_tiny.yaml", synthetic_corpus, tmp_path_factory.mktemp("run"))


def test_a_pctalk_trained_lac_round_trips_through_the_official_layout(tmp_path: Path, trained_lac: Path) -> None:
    ckpt = trained_lac
    with pytest.warns(UserWarning, match=r"official release builds its networks at"):
        assert export(ckpt, tmp_path / "official", format="official") == 0
    obj = torch.load(tmp_path / "official" / "lac.pth", weights_only=True)
    assert set(obj) >= {"model", "args", "pctalk"} and obj["args"] == {"person_num": 2, "T": 25}
    trained, back = load_lac_stage(ckpt), load_lac_stage(tmp_path / "official" / "lac.pth")
    assert back.info.styles == trained.info.styles and back.info.target == "lips"
    assert back.info.style_counts == trained.info.style_counts
    feat = torch.randn(1, 40, trained.info.audio_dim)
    frames = _source(_frames())
    frames = SourceFrames(*(x[:40] for x in (frames.kp, frames.exp, frames.scale, frames.R, frames.t)), np.arange(40))
    motions = [TalkingFacePipeline(s, device="cpu", progress=False).drive(feat, frames, Controls(style_id=1))
               for s in (trained, back)]  # fmt: skip
    torch.testing.assert_close(motions[0].exp, motions[1].exp, atol=1e-6, rtol=0)
    assert (motions[0].lips - frames.exp[:, list(official.LIPS)] * frames.scale[:, :, None]).abs().max() > 0


def test_styles_are_named_listed_and_picked_by_name(
    trained_lac: Path, synthetic_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The checkpoint stores each style's identity and training clips (from the shards' styles.json and
    style_counts.json); `pctalk styles` lists them; `pctalk generate --style NAME` is `--style-id ID`."""
    import json

    info = load_lac_stage(trained_lac).info
    names = json.loads((synthetic_corpus / "styles.json").read_text())["synth"]
    assert info.styles == {k: f"synth/{v}" for k, v in names.items()}
    records = [json.loads(line) for line in (synthetic_corpus / "manifest-j000.jsonl").read_text().splitlines()]
    train = [r for r in records if r.get("split") == "train" and r.get("status") == "written"]
    for k in names:
        mine = [r for r in train if r["style_id"] == int(k)]
        assert info.style_counts[k] == {"clips": len(mine), "frames": sum(r["n_frames"] for r in mine)} and mine
    capsys.readouterr()
    assert main(["styles", str(trained_lac)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[1].split() == ["id", "identity", "dataset", "clips", "hours"]
    assert table[3].split()[:4] == ["1", names["1"], "synth", str(info.style_counts["1"]["clips"])]
    assert info.style_id(f"synth/{names['1']}") == info.style_id(names["1"]) == info.style_id("1") == 1
    assert info.style_id("mean") == -1
    with pytest.raises(ValueError, match=f"no speaking style 'nobody'.*0 synth/{names['0']}"):
        info.style_id("nobody")
    with pytest.raises(ValueError, match="does not exist"):
        info.style_id(7)
    common = ["generate", "--lac", str(trained_lac), "--text", "The duck ate too many bees.", "--no-progress"]
    assert main([*common, "--style", names["1"], "--save-motion", str(tmp_path / "named.npz")]) == 0
    assert main([*common, "--style-id", "1", "--save-motion", str(tmp_path / "id.npz")]) == 0
    assert main([*common, "--style-id", "0", "--save-motion", str(tmp_path / "other.npz")]) == 0
    named, by_id, other = (np.load(tmp_path / f"{n}.npz") for n in ("named", "id", "other"))
    assert set(named.files) == set(by_id.files) and all(np.array_equal(named[k], by_id[k]) for k in named.files)
    assert any(not np.array_equal(named[k], other[k]) for k in named.files)  # the style matters
    capsys.readouterr()
    assert main([*common, "--style", "nobody", "--save-motion", str(tmp_path / "x.npz")]) == 2
    assert "pctalk styles" in capsys.readouterr().err


def test_export_writes_a_model_card_and_pctalk_card_prints_it(
    trained_lac: Path, synthetic_corpus: Path, release: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The card says what the checkpoint was trained on (datasets, identities, clips, frames, the splits' hash), how
    (task, steps, epochs, seed, settings), its last validation figures, the pretrained files it needs by SHA-256, and
    the command that runs it; a file without a training record says so."""
    import hashlib
    import json

    ckpt = torch.load(trained_lac, weights_only=True)  # the record loads without pickled code
    assert export(trained_lac, tmp_path / "rel") == 0
    card = json.loads((tmp_path / "rel" / "model_card.json").read_text())["lac"]
    counts = load_lac_stage(trained_lac).info.style_counts
    assert card["data"]["datasets"] == ["synth"] and card["data"]["identities"] == 2
    assert card["data"]["train_clips"] == sum(c["clips"] for c in counts.values()) > 0
    assert card["data"]["train_frames"] == sum(c["frames"] for c in counts.values())
    assert card["data"]["roots"] == [str(synthetic_corpus)]
    assert (
        card["data"]["splits_sha256"] == {}
    )  # the synthetic corpus has no splits.json (tests/test_rehearsal.py: HDTF's)
    assert card["training"]["task"] == "ExpressionTask" and card["training"]["steps"] == ckpt["global_step"] > 0
    assert card["training"]["epochs"] == ckpt["epoch"] and card["settings"]["model"]["lr"] > 0
    assert card["validation"] and all(k.startswith("val") and np.isfinite(v) for k, v in card["validation"].items())
    assert card["sha256"] == hashlib.sha256((tmp_path / "rel" / "lac.pth").read_bytes()).hexdigest()
    assert card["pretrained"]["audio encoder (weights, state-dict hash)"]["sha256"]
    assert card["run"].startswith(f"pctalk generate --lac {tmp_path / 'rel' / 'lac.pth'}")
    text = (tmp_path / "rel" / "MODEL_CARD.md").read_text()
    assert "## LAC" in text and f"| 1 | {load_lac_stage(trained_lac).info.styles['1'].split('/')[1]} |" in text
    capsys.readouterr()
    assert main(["card", str(trained_lac)]) == 0
    assert "### Validation" in (out := capsys.readouterr().out) and f"steps: {ckpt['global_step']}" in out
    assert main(["card", str(release / "emc.pth")]) == 0
    assert "## EMC" in (out := capsys.readouterr().out) and "Not recorded" in out


def test_a_separate_official_refiner_file_and_namespace_args(release_files: Path, tmp_path: Path) -> None:
    obj = torch.load(release_files / "lac.pth", weights_only=True)
    torch.save({"model_ft": obj["model_ft"]}, tmp_path / "refiner.pth")
    namespace = argparse.Namespace(person_num=P, T=T_LAC, feature_dim=512)  # research checkpoints pickle their args
    torch.save({"model": {f"module.{k}": v for k, v in obj["model"].items()}, "args": namespace}, tmp_path / "lac.pth")
    torch.save(AudioEncoder().state_dict(), tmp_path / "audio_encoder.pth")
    bare = load_lac_stage(tmp_path / "lac.pth")
    assert bare.refiner is None and bare.info.window == T_LAC
    with_refiner = load_lac_stage(tmp_path / "lac.pth", refiner=tmp_path / "refiner.pth")
    reference = load_lac_stage(release_files / "lac.pth")
    x, a = torch.randn(1, 4, 18), torch.randn(1, 4, 512)
    torch.testing.assert_close(with_refiner.refiner(x, a), reference.refiner(x, a), atol=0, rtol=0)
    with pytest.raises(CheckpointFormatError, match=r"lip refiner alone"):
        load_lac_stage(tmp_path / "refiner.pth")


# -- every kind round-trips; old files still load --------------------------------------------------------------------
def _lac_stage(target: str = "lips", refiner: bool = True) -> LACStage:
    torch.manual_seed(0)
    out_dim = 18 if target == "lips" else 63
    predictor = ExpressionPredictor(3, out_dim, 64, PredictorConfig(d_model=32, ff_dim=64)).eval()
    torch.nn.init.normal_(predictor.vertice_map_r.weight, std=0.05)
    lip_refiner = LipRefiner(18, 64) if refiner else None
    if lip_refiner is not None:
        torch.nn.init.normal_(lip_refiner.linear.weight, std=0.01)
    return LACStage(predictor, AudioEncoder(0.125).eval(), lip_refiner)


def _emc_stage(conditioning: str = "autoregressive") -> EMCStage:
    torch.manual_seed(1)
    legacy = conditioning == "encoder"  # pctalk 0.1's EMC: no style bias either
    config = EmotionConfig(d_model=32, ff_dim=64, emotion_layers=1, conditioning=conditioning, style_bias=not legacy)
    predictor = EmotionPredictor(3, 64, config).eval()
    torch.nn.init.normal_(predictor.decoder.vertice_map_r.weight, std=0.05)
    return EMCStage(predictor, AudioEncoder(0.125).eval())


def _same_motion(a: LACStage | EMCStage, b: LACStage | EMCStage) -> None:
    feat = torch.randn(1, 30, 64)
    if isinstance(a, LACStage):
        outs = [s.predictor.generate(feat, torch.tensor([2])) for s in (a, b)]
    else:
        outs = [s.predictor.generate(feat, torch.tensor([2]), s.predictor.embed(torch.tensor([3]))) for s in (a, b)]
    torch.testing.assert_close(outs[0], outs[1], atol=0, rtol=0)
    mel = torch.randn(3, 1, 80, 16)
    torch.testing.assert_close(a.audio_encoder(mel), b.audio_encoder(mel), atol=0, rtol=0)


@pytest.mark.parametrize("fmt", ["pctalk", "official"])
@pytest.mark.parametrize("kind", ["lac", "lac_all", "emc"])
def test_every_kind_round_trips_in_both_layouts(tmp_path: Path, kind: str, fmt: str) -> None:
    stage = _emc_stage() if kind == "emc" else _lac_stage("all" if kind == "lac_all" else "lips", kind == "lac")
    stage.info.styles = {"0": "hdtf/WRA_Anna", "1": "hdtf/Ødegaard", "2": "mead/M012"}
    with pytest.warns(UserWarning, match=r"official release") if fmt == "official" else contextlib.nullcontext():
        save_release(stage, tmp_path, fmt)
    load = load_emc_stage if kind == "emc" else load_lac_stage
    back = load(tmp_path / f"{'emc' if kind == 'emc' else 'lac'}.pth")
    assert back.info.to_dict() == {**stage.info.to_dict(), "format_version": FORMAT_VERSION}
    assert read(tmp_path / f"{'emc' if kind == 'emc' else 'lac'}.pth").format == fmt
    _same_motion(stage, back)
    if kind == "lac":
        x, a = torch.randn(1, 5, 18), torch.randn(1, 5, 64)
        torch.testing.assert_close(back.refiner(x, a), stage.refiner(x, a), atol=0, rtol=0)


def test_pctalk_0_1_files_still_load(tmp_path: Path) -> None:
    """The layouts pctalk 0.1 wrote (release files with a "config" entry; Lightning checkpoints with
    "predictor_config" / "emotion_config"), its EMC with the encoder conditioning."""
    lac, emc = _lac_stage(), _emc_stage("encoder")
    emc.audio_encoder = lac.audio_encoder  # the folder's one encoder
    config = {"n_styles": 3, "out_dim": 18, "audio_dim": 64, "d_model": 32, "n_layers": 1, "n_heads": 4,
              "ff_dim": 64, "period": 25}  # fmt: skip
    emotion_config = {**{k: v for k, v in config.items() if k != "out_dim"}, "n_emotions": 8, "emotion_layers": 1}
    torch.save(lac.audio_encoder.state_dict(), tmp_path / "audio_encoder.pth")
    torch.save({"expression_predictor": lac.predictor.state_dict(), "lip_refiner": lac.refiner.state_dict(),
                "config": config}, tmp_path / "lac.pth")  # fmt: skip
    torch.save({"emotion_predictor": emc.predictor.state_dict(), "config": emotion_config, "sources": {},
                "sources_config": {}}, tmp_path / "emc.pth")  # fmt: skip
    state = {f"predictor.{k}": v for k, v in lac.predictor.state_dict().items()}
    state.update({f"audio_encoder.{k}": v for k, v in lac.audio_encoder.state_dict().items()})
    torch.save({"state_dict": state, "pctalk": {"predictor_config": config}}, tmp_path / "old.ckpt")
    for path, stage in ((tmp_path / "lac.pth", lac), (tmp_path / "old.ckpt", lac)):
        loaded = load_lac_stage(path)
        assert read(path).format in ("pctalk-0.1", "lightning") and loaded.info.target == "lips"
        _same_motion(stage, loaded)
    old_emc = load_emc_stage(tmp_path / "emc.pth")
    assert old_emc.predictor.config.conditioning == "encoder"
    _same_motion(emc, old_emc)
    with pytest.raises(CheckpointFormatError, match=r"pctalk 0.1's transformer encoder"):
        save_release(old_emc, tmp_path / "out", "official")


def test_wrong_files_are_refused_with_what_to_do(tmp_path: Path) -> None:
    lac, emc = _lac_stage(), _emc_stage()
    emc.audio_encoder = lac.audio_encoder
    save_release(lac, tmp_path / "r")
    save_release(emc, tmp_path / "r")  # the same folder: allowed only for the same audio encoder
    with pytest.raises(CheckpointFormatError, match=r"is an EMC \(emotion\) checkpoint, not a LAC \(lip\) one"):
        load_lac_stage(tmp_path / "r" / "emc.pth")
    with pytest.raises(CheckpointFormatError, match=r"is a LAC \(lip\) checkpoint, not an EMC \(emotion\) one"):
        load_emc_stage(tmp_path / "r" / "lac.pth")
    future = torch.load(tmp_path / "r" / "lac.pth", weights_only=True)
    future["pctalk"]["format_version"] = FORMAT_VERSION + 1
    torch.save(future, tmp_path / "r" / "future.pth")
    with pytest.raises(CheckpointFormatError, match=rf"future.pth was written by a newer pctalk \(checkpoint format "
                       rf"{FORMAT_VERSION + 1}.*Upgrade pctalk"):  # fmt: skip
        load_lac_stage(tmp_path / "r" / "future.pth")
    with pytest.raises(CheckpointFormatError, match=r"is an audio encoder, not a LAC or EMC checkpoint"):
        load_lac_stage(tmp_path / "r" / "audio_encoder.pth")
    torch.save({"weights": {}, "epoch": 3}, tmp_path / "other.pth")
    with pytest.raises(CheckpointFormatError, match=r"other.pth is a dict with keys epoch, weights: not a LAC"):
        load_lac_stage(tmp_path / "other.pth")
    torch.save({"state_dict": {}, "hyper_parameters": {"_class_path": "eval.classifier.EmotionClassifierTask"}},
               tmp_path / "classifier.ckpt")  # fmt: skip
    with pytest.raises(CheckpointFormatError, match=r"Lightning checkpoint of eval.classifier.EmotionClassifierTask"):
        load_emc_stage(tmp_path / "classifier.ckpt")
    torch.save({"model": {"a": torch.ones(1)}, "args": object()}, tmp_path / "code.pth")
    with pytest.raises(UnsafeCheckpointError, match="refusing to load"):
        load_lac_stage(tmp_path / "code.pth")
    with pytest.raises(FileNotFoundError, match=r"missing\.pth"):
        load_lac_stage(tmp_path / "missing.pth")

    other = _emc_stage()  # a different audio encoder for the same folder
    torch.nn.init.normal_(other.audio_encoder.audio_encoder[0].conv_block[0].weight)
    with pytest.raises(CheckpointFormatError, match=r"already holds a different audio encoder"):
        save_release(other, tmp_path / "r")
    assert load_emc_stage(tmp_path / "r" / "emc.pth")  # the first export is intact
    # a release file beside the wrong encoder is refused; given explicitly, it is used with a warning
    save_release(other, tmp_path / "o")
    torch.save(lac.audio_encoder.state_dict(), tmp_path / "o" / "audio_encoder.pth")
    with pytest.raises(CheckpointFormatError, match=r"is not the audio encoder emc.pth was trained with"):
        load_emc_stage(tmp_path / "o" / "emc.pth")
    with pytest.warns(UserWarning, match=r"Using it because it was given explicitly"):
        load_emc_stage(tmp_path / "o" / "emc.pth", audio_encoder=tmp_path / "o" / "audio_encoder.pth")
    with pytest.raises(CheckpointFormatError, match=r"refiner does not support"):
        LACStage(_lac_stage("all", False).predictor, lac.audio_encoder, lac.refiner)


def test_export_cli_names_the_file_and_the_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.save({"weights": {}}, tmp_path / "bad.ckpt")
    assert main(["export", "--checkpoint", str(tmp_path / "bad.ckpt"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "bad.ckpt" in err and "pctalk fit" in err


def test_the_audio_encoder_a_stage_was_trained_with_is_kept(tmp_path: Path) -> None:
    """Another encoder given explicitly: a warning at generation (for a .ckpt too), refused by export (which would
    record it as the stage's own)."""
    lac = _lac_stage()
    save_release(lac, tmp_path / "r")
    other = AudioEncoder(0.125)
    torch.nn.init.normal_(other.audio_encoder[0].conv_block[0].weight)
    torch.save(other.state_dict(), tmp_path / "other_encoder.pth")
    with pytest.warns(UserWarning, match=r"is not the audio encoder lac\.pth was trained with"):
        load_lac_stage(tmp_path / "r" / "lac.pth", audio_encoder=tmp_path / "other_encoder.pth")
    with pytest.raises(CheckpointFormatError, match="the motion would be wrong"):
        export(tmp_path / "r" / "lac.pth", tmp_path / "out", audio_encoder=tmp_path / "other_encoder.pth")
    assert not (tmp_path / "out" / "lac.pth").exists()
    state = {f"predictor.{k}": v for k, v in lac.predictor.state_dict().items()}
    state.update({f"audio_encoder.{k}": v for k, v in lac.audio_encoder.state_dict().items()})
    torch.save({"state_dict": state, "pctalk": load_lac_stage(tmp_path / "r" / "lac.pth").info.to_dict()},
               tmp_path / "stage1.ckpt")  # fmt: skip
    with pytest.warns(UserWarning, match="was trained with"):
        load_lac_stage(tmp_path / "stage1.ckpt", audio_encoder=tmp_path / "other_encoder.pth")
    wide = AudioEncoder(0.25)
    torch.save(wide.state_dict(), tmp_path / "wide.pth")
    with pytest.raises(CheckpointFormatError, match=r"wide.pth gives 128-d audio features but .* reads 64-d"):
        load_lac_stage(tmp_path / "stage1.ckpt", audio_encoder=tmp_path / "wide.pth")


def test_separate_refiners_are_checked_and_exported(tmp_path: Path, release_files: Path) -> None:
    lac = _lac_stage(refiner=False)
    save_release(lac, tmp_path / "r")
    with pytest.raises(
        CheckpointFormatError, match=r"reads 512-d audio features but .*lac.pth's audio encoder gives 64"
    ):
        load_lac_stage(tmp_path / "r" / "lac.pth", refiner=release_files / "lac.pth")  # the official refiner: 512-d
    torch.save({"weights": {}}, tmp_path / "random.pth")
    with pytest.raises(CheckpointFormatError, match="is not a lip refiner"):
        load_lac_stage(tmp_path / "r" / "lac.pth", refiner=tmp_path / "random.pth")
    with_refiner = _lac_stage()
    save_release(with_refiner, tmp_path / "stage2")
    assert export(tmp_path / "r" / "lac.pth", tmp_path / "combined", refiner=tmp_path / "stage2" / "lac.pth") == 0
    assert load_lac_stage(tmp_path / "combined" / "lac.pth").refiner is not None


@pytest.mark.parametrize(
    "stage, field",
    [
        (lambda: _emc_stage(), "emotion_layers"),  # the debug sizes' 1-layer emotion decoder
        (
            lambda: LACStage(ExpressionPredictor(3, 18, 512, PredictorConfig(style_bias=True)), AudioEncoder()),
            "style_bias",
        ),
    ],
)
def test_the_official_layout_warns_of_what_its_code_cannot_build(tmp_path: Path, stage, field: str) -> None:
    with pytest.warns(UserWarning, match=rf"this stage differs \(.*'{field}'"):
        save_release(stage(), tmp_path, "official")
