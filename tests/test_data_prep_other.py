"""``pctalk-data synth``, ``inspect`` and ``augment``."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import webdataset as wds
from skimage import data

from data_prep.augment import AugmentModels, LeakError, augment, load_drivers, reenact
from data_prep.build import BuildModels, build
from data_prep.inspect_shards import inspect_shards
from pctalk.audio.io import load_audio
from pctalk.audio.syncnet import SyncNet
from pctalk.audio.tts import synthesize
from pctalk.data import ShardDataModule
from pctalk.data.schema import decode_sample
from pctalk.data.styles import read_styles
from pctalk.data.synthetic import synth, visemes
from pctalk.keypoints.crop import FaceCropper
from pctalk.keypoints.regions import BROWS, EYES, LIPS
from pctalk.media import VideoReader
from raw_media import hdtf_dataset


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    synth(out, clips=24, identities=4, seed=3, progress=False)
    return out


def test_synth_corpus_follows_the_schema(corpus: Path) -> None:
    report = inspect_shards(corpus)
    assert report["failures"] == []
    assert sum(report["counts"]["split"].values()) == 24
    assert report["identities"] == {"train": 2, "val": 1, "test": 1}
    assert set(report["counts"]["emotion"]) >= {"neutral", "happy", "sad"}
    assert report["hours"]["train"] > 0


def test_synth_is_deterministic(tmp_path: Path, corpus: Path) -> None:
    import webdataset as wds

    from pctalk.data.schema import decode_sample

    synth(tmp_path, clips=24, identities=4, seed=3, progress=False)
    for name in ("sizes.json", "train.txt"):
        assert (tmp_path / name).read_text() == (corpus / name).read_text()

    def clips(folder: Path) -> list:
        return [decode_sample(s) for s in wds.WebDataset(sorted(map(str, folder.glob("*.tar"))), shardshuffle=False)]

    for a, b in zip(clips(corpus), clips(tmp_path), strict=True):
        assert a.key == b.key and np.array_equal(a.audio, b.audio) and np.array_equal(a.motion.exp, b.motion.exp)


def test_synth_lips_follow_the_phonemes() -> None:
    speech = synthesize("Pa pa, tea.")
    n = len(speech.wav) * 25 // 16000
    weights = visemes(speech, n)  # (n, 3): open, wide, round

    def at(symbol: str, into: float = 0.05) -> np.ndarray:
        start = next(p.start for p in speech.phonemes if p.symbol.lstrip("',") == symbol)
        return weights[min(n - 1, int((start + into) * 25))]

    assert at("A:")[0] > 0.8  # "pa" opens the mouth
    assert at("_:", 0.08)[0] < 0.2  # the pause closes it
    assert at("i:")[1] > 0.5 and at("i:")[2] < 0.2  # "tea" widens, not rounds


def test_synth_emotions_move_only_their_regions(corpus: Path) -> None:
    import webdataset as wds

    from pctalk.data.schema import decode_sample

    clips = [decode_sample(s) for s in wds.WebDataset(sorted(map(str, corpus.glob("*.tar"))), shardshuffle=False)]
    by = {}
    for c in clips:
        by.setdefault((c.meta.identity, c.meta.emotion), []).append(c.motion.exp.mean(0))
    identity = next(i for (i, e) in by if e != "neutral" and (i, "neutral") in by)
    emotion = next(e for (i, e) in by if i == identity and e != "neutral")
    delta = np.mean(by[(identity, emotion)], 0) - np.mean(by[(identity, "neutral")], 0)
    others = [k for k in range(21) if k not in LIPS + EYES + BROWS]
    assert np.abs(delta[list(EYES + BROWS)]).max() > 5 * np.abs(delta[others]).max()


def test_inspect_reports_undecodable_samples(tmp_path: Path, corpus: Path) -> None:
    import tarfile

    shard = sorted(corpus.glob("train-*.tar"))[0]
    bad = tmp_path / "train-j000-000000.tar"
    with tarfile.open(shard) as src, tarfile.open(bad, "w") as dst:
        for member in src.getmembers():
            if not member.name.endswith("motion.npz"):
                dst.addfile(member, src.extractfile(member))
    report = inspect_shards(tmp_path)
    assert report["failures"] and "lacks motion.npz" in report["failures"][0][1]


# -- augmentation -----------------------------------------------------------------------------------------------------


@pytest.fixture
def drivers(tmp_path: Path, tiny_liveportrait) -> Path:
    root = hdtf_dataset(tmp_path / "raw", {"Trainee": 1, "Tester": 1})
    (tmp_path / "splits.txt").write_text("Trainee train\nTester test\n")
    out = tmp_path / "driver_shards"
    models = BuildModels(tiny_liveportrait, FaceCropper("opencv"), batch_size=16)
    build("hdtf", root, out, models, split_file=tmp_path / "splits.txt", min_frames=20, test_seconds=0, progress=False)
    return out


@pytest.fixture
def faces(tmp_path: Path) -> Path:
    folder = tmp_path / "faces"
    folder.mkdir()
    cv2.imwrite(str(folder / "astro.jpg"), data.astronaut()[..., ::-1])
    cv2.imwrite(str(folder / "blank.png"), np.full((200, 200, 3), 90, np.uint8))
    return folder


def _models(tiny_liveportrait) -> AugmentModels:
    return AugmentModels(tiny_liveportrait, FaceCropper("opencv"), SyncNet().eval(), torch.device("cpu"), batch_size=8)


def test_augment_writes_clips_with_the_driver_audio(
    tmp_path: Path, drivers: Path, faces: Path, tiny_liveportrait
) -> None:
    clips = load_drivers(drivers)
    assert [c.meta.identity for c in clips] == ["Trainee"]
    out = tmp_path / "aug"
    assert (
        augment(faces, clips, out, _models(tiny_liveportrait), per_face=1, threshold=0.0, max_frames=30, progress=False)
        == 0
    )
    (video,) = list(out.glob("astro/*.mp4"))
    reader = VideoReader(video)
    assert len(reader) == 30 and reader.size == (128, 128)  # tiny LivePortrait renders 128 x 128
    audio = load_audio(video)
    np.testing.assert_allclose(len(audio), 30 * 640, atol=1100)
    records = [json.loads(line) for line in (out / "augment-j000.jsonl").read_text().splitlines()]
    assert {r["status"] for r in records} == {"kept", "skipped"}  # the blank image has no face
    kept = next(r for r in records if r["status"] == "kept")
    assert (kept["driver_style"], kept["driver_identity"]) == (0, "hdtf/Trainee")
    # Resumable: a rerun does nothing new.
    augment(faces, clips, out, _models(tiny_liveportrait), per_face=1, threshold=0.0, max_frames=30, progress=False)
    assert len((out / "augment-j000.jsonl").read_text().splitlines()) == len(records)


def test_augmented_clips_carry_their_drivers_style_and_train_the_refiner(
    tmp_path: Path, drivers: Path, tiny_liveportrait
) -> None:
    """Three augmented identities (more than HDTF's one style), written as ``pctalk-data augment`` writes them (clips
    of real faces here, so that the cropper finds them), shard with their driver's style under its name; the refiner
    then trains on HDTF + augmented with a stage 1 that knows one style."""
    from raw_media import SENTENCES, talking_video

    (driver,) = load_drivers(drivers)
    out = tmp_path / "aug"
    name = driver.key.replace("/", "_")
    for k, image_id in enumerate(("astro", "astro_2", "astro_3")):
        talking_video(out / image_id / f"{name}.mp4", SENTENCES[k % len(SENTENCES)])
        record = {"key": f"{image_id}/{name}", "driver": driver.key, "driver_style": driver.meta.style_id,
                  "driver_identity": "hdtf/Trainee", "status": "kept"}  # fmt: skip
        (out / "augment-j000.jsonl").open("a").write(json.dumps(record) + "\n")
    talking_video(out / "unrecorded" / "clip.mp4", SENTENCES[0])  # not from augment: no driver style
    shards = tmp_path / "aug_shards"
    build("faces", out, shards, BuildModels(tiny_liveportrait, FaceCropper("opencv"), batch_size=16), min_frames=20,
          progress=False, decode_workers=0)  # fmt: skip
    urls = [str(p) for p in sorted(shards.glob("train-*.tar"))]
    styles = {c.meta.identity: c.meta.style_id for c in map(decode_sample, wds.WebDataset(urls, shardshuffle=False))}
    assert styles == {"astro": 0, "astro_2": 0, "astro_3": 0, "unrecorded": -1}
    assert read_styles(shards) == read_styles(drivers) == {"0": "hdtf/Trainee"}
    _refiner_step(tmp_path, f"{drivers},{shards}", tiny_liveportrait)


def _refiner_step(tmp_path: Path, roots: str, tiny_liveportrait) -> None:
    """One training step of the lip refiner on ``roots`` from a random one-style stage 1 (a release ``lac.pth``)."""
    from lightning.pytorch import Trainer

    from pctalk.audio.encoder import AudioEncoder
    from pctalk.checkpoints import LACStage, save_release
    from pctalk.keypoints.liveportrait import save_liveportrait
    from pctalk.models import ExpressionPredictor
    from pctalk.models.config import PredictorConfig
    from pctalk.tasks import LipRefinerTask

    weights = tmp_path / "weights"
    save_liveportrait(tiny_liveportrait, weights)
    (weights / "wav2lip").mkdir()
    torch.save({"state_dict": SyncNet().state_dict()}, weights / "wav2lip" / "lipsync_expert.pth")
    config = PredictorConfig(d_model=32, n_heads=4, ff_dim=64)
    save_release(LACStage(ExpressionPredictor(1, audio_dim=64, config=config), AudioEncoder(0.125)), tmp_path / "lac")
    task = LipRefinerTask(str(tmp_path / "lac" / "lac.pth"), str(weights), liveportrait_size="tiny")
    data = ShardDataModule(roots, window=5, batch_size=2, audio="mel", with_reference=True, samples_per_epoch=4)
    trainer = Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)  # fmt: skip
    trainer.fit(task, datamodule=data)
    assert trainer.global_step == 1 and torch.isfinite(trainer.callback_metrics["train/loss"])


def test_augment_drops_out_of_sync_clips(tmp_path: Path, drivers: Path, faces: Path, tiny_liveportrait) -> None:
    out = tmp_path / "aug"
    augment(
        faces,
        load_drivers(drivers),
        out,
        _models(tiny_liveportrait),
        per_face=1,
        threshold=1.01,
        max_frames=20,
        progress=False,
    )
    assert not list(out.glob("*/*.mp4"))
    records = [json.loads(line) for line in (out / "augment-j000.jsonl").read_text().splitlines()]
    assert any(r["status"] == "dropped" and "sync confidence" in r["reason"] for r in records)


def test_augment_refuses_test_identities_as_drivers(drivers: Path) -> None:
    test_shards = (drivers / "test.txt").read_text().split()
    with open(drivers / "train.txt", "a") as fh:
        fh.write("\n".join(test_shards) + "\n")
    with pytest.raises(LeakError, match="Tester"):
        load_drivers(drivers)


def test_reenactment_follows_the_driver(tiny_liveportrait) -> None:
    """Relative motion: a driver that does not move gives the source's own pose in every frame."""
    from pctalk.data.schema import Clip, ClipMeta, ClipMotion

    n = 4
    still = ClipMotion(
        exp=np.zeros((n, 21, 3)), pitch=np.full(n, 10.0), yaw=np.zeros(n), roll=np.zeros(n), t=np.zeros((n, 3)),
        scale=np.ones((n, 1)), kp=np.zeros((21, 3)),
    )  # fmt: skip
    meta = ClipMeta("hdtf", "x", "0", "train", n)
    clip = Clip(
        "hdtf/x/0",
        still,
        np.zeros((80, 13), np.float32),
        np.zeros(n * 640, np.float32),
        np.zeros((256, 256, 3), np.uint8),
        meta,
    )
    models = _models(tiny_liveportrait)
    frames = reenact(models, data.astronaut(), clip, max_frames=n)
    assert frames.shape == (n, 128, 128, 3)
    assert np.array_equal(frames[0], frames[-1])


def test_split_files_in_every_published_form(tmp_path: Path) -> None:
    from data_prep.splits import assign_splits, load_split_file, write_splits
    from pctalk.data.splits import content_sha256, read_splits

    # a published one-column HDTF test list of clip names: the identities, all test (the file's name says so)
    (tmp_path / "hdtf_test_list.txt").write_text("WDA_BarackObama_000.mp4\nWDA_BarackObama_001.mp4\nRD_Radio34_003\n")
    fixed = load_split_file(tmp_path / "hdtf_test_list.txt", "hdtf")
    assert fixed == {"WDA_BarackObama": "test", "RD_Radio34": "test"}
    # that list is the whole test set: no other identity is hashed into test
    many = [f"WRA_Speaker{i:02d}" for i in range(60)]
    assigned = assign_splits([*many, "WDA_BarackObama", "RD_Radio34"], "hdtf", fixed)
    assert {i for i, s in assigned.items() if s == "test"} == {"WDA_BarackObama", "RD_Radio34"}
    assert "val" in assigned.values()
    # a MEAD list of paths, a JSON list named for its split, identity-split lines, and a splits.json of a build
    (tmp_path / "test.txt").write_text("M003/video/front/happy/level_3/001.mp4\nW015/video/front/sad/level_1/002.mp4\n")
    assert load_split_file(tmp_path / "test.txt", "mead") == {"M003": "test", "W015": "test"}
    (tmp_path / "val.json").write_text(json.dumps(["M012", "W011"]))
    assert load_split_file(tmp_path / "val.json", "mead") == {"M012": "val", "W011": "val"}
    (tmp_path / "lines.txt").write_text("# mine\nM012 Validation\nM003 test\n")
    assert load_split_file(tmp_path / "lines.txt") == {"M012": "val", "M003": "test"}
    write_splits(tmp_path / "shards", "mead", {"M003": "test", "M012": "train"})
    assert load_split_file(tmp_path / "shards" / "splits.json", "mead") == {"M003": "test", "M012": "train"}
    # a bare mapping of an older build reads the same, and the content hash ignores the file's formatting
    (tmp_path / "old.json").write_text(json.dumps({"mead": {"M012": "train", "M003": "test"}}, indent=4))
    assert read_splits(tmp_path / "old.json") == read_splits(tmp_path / "shards" / "splits.json")
    reordered = {"mead": {"M003": "test", "M012": "train"}}
    assert content_sha256(read_splits(tmp_path / "old.json")) == content_sha256(reordered)
    (tmp_path / "bad.txt").write_text("M003 holdout\n")
    with pytest.raises(ValueError, match=r"bad\.txt: splits must be one of"):
        load_split_file(tmp_path / "bad.txt")
