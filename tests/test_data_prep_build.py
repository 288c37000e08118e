"""``pctalk-data build`` on tiny raw datasets made on the fly, read back through the shard schema."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds

from conftest import offline_env
from data_prep.build import BuildModels, build, job_slice
from pctalk.data.schema import SCHEMA_VERSION, SchemaError, decode_sample, encode_sample
from pctalk.data.splits import content_sha256, read_splits, read_test_list
from pctalk.data.writer import read_manifests
from pctalk.keypoints.crop import FaceCropper
from pctalk.media import VideoReader
from raw_media import SENTENCES, hdtf_dataset, mead_dataset, speech, talking_video, variable_frame_rate_video


@pytest.fixture
def models(tiny_liveportrait) -> BuildModels:
    return BuildModels(tiny_liveportrait, FaceCropper("opencv"), batch_size=16)


def read_shards(out: Path, split: str | None = None) -> list:
    names = sorted(p.name for p in out.glob("*.tar") if split is None or p.name.startswith(f"{split}-"))
    if not names:
        return []
    urls = [str(out / n) for n in names]
    return [decode_sample(s) for s in wds.WebDataset(urls, shardshuffle=False, empty_check=False)]


def test_hdtf_build_round_trip(tmp_path: Path, models: BuildModels) -> None:
    root = hdtf_dataset(tmp_path / "raw", {"WDA_Alice": 2, "RD_Bob": 1, "WRA_Carol": 1})
    split_file = tmp_path / "splits.txt"
    split_file.write_text("WDA_Alice train\nRD_Bob val\nWRA_Carol test\n")
    out = tmp_path / "shards"
    status = build("hdtf", root, out, models, split_file=split_file, min_frames=20, test_seconds=1.0, progress=False,
                   face_frames=3)  # fmt: skip
    assert status == 0
    clips = read_shards(out)
    by_split = {s: sorted(c.key for c in clips if c.meta.split == s) for s in ("train", "val", "test")}
    assert by_split["train"] == ["hdtf/WDA_Alice/000", "hdtf/WDA_Alice/001"]
    assert by_split["val"] == ["hdtf/RD_Bob/000"]
    assert by_split["test"] and all(k.startswith("hdtf/WRA_Carol/000_s") for k in by_split["test"])  # 1 s pieces
    for clip in clips:
        n = clip.meta.n_frames
        assert clip.motion.exp.shape == (n, 21, 3) and clip.motion.scale.shape == (n, 1)
        assert clip.audio.shape == (n * 640,) and clip.mel.shape == (80, n * 640 // 200 + 1)
        assert clip.ref.shape == (256, 256, 3) and clip.meta.schema_version == SCHEMA_VERSION
        assert clip.faces.shape == (3, 256, 256, 3)  # face crops for the emotion classifier, per (test) piece
        assert np.isfinite(clip.motion.exp).all()
    assert all(c.meta.n_frames == 25 for c in clips if c.meta.split == "test")
    alice = [c for c in clips if c.meta.identity == "WDA_Alice"]
    assert alice[0].meta.n_frames == len(speech(SENTENCES[0])) * 25 // 16000
    styles = {c.meta.identity: c.meta.style_id for c in clips}
    assert styles == {"WDA_Alice": 0, "RD_Bob": -1, "WRA_Carol": -1}  # styles index the training identities
    sizes = json.loads((out / "sizes.json").read_text())
    assert sum(sizes.values()) == len(clips)
    listed = {s: (out / f"{s}.txt").read_text().split() for s in ("train", "val", "test")}
    assert sorted(name for names in listed.values() for name in names) == sorted(sizes)
    splits = read_splits(out / "splits.json")
    assert splits["hdtf"] == {"RD_Bob": "val", "WDA_Alice": "train", "WRA_Carol": "test"}
    assert json.loads((out / "splits.json").read_text())["version"] == 1
    # the test pieces evaluation scores: each with its raw video (relative to the root) and frame range
    pieces, header = read_test_list(out / "test_clips.json")
    assert [p.key for p in pieces] == by_split["test"] and header["splits_sha256"] == content_sha256(splits)
    assert [p.start_frame for p in pieces] == [25 * i for i in range(len(pieces))]
    where = {(p.video, p.audio, p.n_frames, p.identity) for p in pieces}
    assert where == {("WRA_Carol_000.mp4", None, 25, "WRA_Carol")}
    assert not list(out.glob("*.tmp"))


def test_mead_layout_with_separate_audio(
    tmp_path: Path, models: BuildModels, capsys: pytest.CaptureFixture[str]
) -> None:
    root = mead_dataset(tmp_path / "raw", ("M003", "W011"))
    out = tmp_path / "shards"
    assert build("mead", root, out, models, min_frames=20, progress=False) == 0
    # M003 is a test identity and W011 trains: no one validates, which the build says, with the fix
    err = " ".join(capsys.readouterr().err.split())
    assert "no identity of mead went to the val split" in err and "--split-file" in err
    assert json.loads((out / "styles.json").read_text()) == {"mead": {"0": "W011"}}
    clips = read_shards(out)
    assert sorted(c.key for c in clips) == [
        "mead/M003/happy_3_001",
        "mead/M003/neutral_1_001",
        "mead/W011/happy_3_001",
        "mead/W011/neutral_1_001",
    ]
    assert all(c.faces is None for c in clips)  # no face crops unless asked for
    happy = next(c for c in clips if c.key == "mead/W011/happy_3_001")
    assert (happy.meta.emotion, happy.meta.level, happy.meta.emotion_id) == ("happy", 3, 1)
    assert {c.meta.split for c in clips if c.meta.identity == "M003"} == {"test"}  # MEAD's default test identity
    assert {c.meta.split for c in clips if c.meta.identity == "W011"} != {"test"}


def test_thirty_fps_source_is_resampled_by_timestamp(tmp_path: Path, models: BuildModels) -> None:
    talking_video(tmp_path / "raw" / "Dan" / "talk.mp4", SENTENCES[1], fps=30)
    out = tmp_path / "shards"
    assert build("folder", tmp_path / "raw", out, models, min_frames=20, progress=False) == 0
    (clip,) = read_shards(out)
    assert clip.key == "folder/Dan/talk" and clip.meta.extra["source_fps"] == pytest.approx(30)
    assert clip.meta.n_frames == int(len(speech(SENTENCES[1])) / 16000 * 30) * 25 // 30


def test_variable_frame_rate_is_resampled_by_timestamp(tmp_path: Path) -> None:
    path = variable_frame_rate_video(tmp_path / "vfr.mp4", gaps_ms=(50, 20))  # frames at 0, 50, 70, 120, 140 ms...
    reader = VideoReader(path)
    frames = np.concatenate(list(reader.chunks(16)))
    assert len(frames) == len(reader) == 52  # 2.08 s + the last frame, at 25 fps
    source = np.round(frames[:8, 32, 32, 0] / 4).astype(int).tolist()  # which source frame each 40 ms tick got
    assert source == [0, 0, 2, 3, 4, 5, 6, 8]  # 0 ms -> 0, 40 -> 0 (50 not yet), 80 -> 2 (70), 120 -> 3, ...


@pytest.mark.parametrize("n", [64, 250, 1001])
def test_a_25_fps_video_keeps_every_frame(tmp_path: Path, n: int) -> None:
    """decord's float32 timestamps put the end of 64 frames at 2.5599999 s: the last frame must not be dropped."""
    from pctalk.media import write_video

    frames = np.zeros((n, 64, 64, 3), np.uint8)
    frames[:, :, :, 0] = (np.arange(n) % 256)[:, None, None]
    reader = VideoReader(write_video(tmp_path / "v.mp4", frames, fps=25))
    assert len(reader) == n and sum(len(c) for c in reader.chunks(100)) == n
    assert sum(len(c) for c in reader.chunks(16, start=n - 10)) == 10


def test_bad_clips_are_skipped_with_their_reason(tmp_path: Path, models: BuildModels) -> None:
    raw = tmp_path / "raw"
    talking_video(raw / "good" / "ok.mp4", SENTENCES[0])
    talking_video(raw / "mute" / "no_audio.mp4", SENTENCES[0], audio=False)
    talking_video(raw / "quiet" / "silent.mp4", SENTENCES[0], silent=True)
    talking_video(raw / "cut" / "short_audio.mp4", SENTENCES[0], audio_seconds=0.8)
    talking_video(raw / "empty" / "no_face.mp4", SENTENCES[0], blank=True)
    talking_video(raw / "tiny" / "short.mp4", "Hi.")
    broken = talking_video(raw / "trunc" / "truncated.mp4", SENTENCES[0])
    broken.write_bytes(broken.read_bytes()[: len(broken.read_bytes()) // 3])
    (raw / "junk").mkdir()
    (raw / "junk" / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    out = tmp_path / "shards"
    assert build("folder", raw, out, models, min_frames=20, progress=False) == 0
    reasons = {r["key"]: r.get("reason", "") for r in read_manifests(out)}
    assert reasons["folder/good/ok"] == ""
    assert reasons["folder/mute/no_audio"].startswith("no audio stream")
    assert reasons["folder/quiet/silent"].startswith("silent audio")
    assert reasons["folder/cut/short_audio"].startswith("audio shorter than video")
    assert reasons["folder/empty/no_face"].startswith("no face")
    assert reasons["folder/tiny/short"].startswith("too short")
    assert reasons["folder/trunc/truncated"].startswith("unreadable video")
    assert reasons["folder/junk/corrupt"].startswith("unreadable video")
    assert [c.key for c in read_shards(out)] == ["folder/good/ok"]


def test_nothing_written_is_an_error(tmp_path: Path, models: BuildModels) -> None:
    talking_video(tmp_path / "raw" / "a" / "x.mp4", SENTENCES[0], blank=True)
    assert build("folder", tmp_path / "raw", tmp_path / "out", models, min_frames=20, progress=False) == 1


def test_jobs_take_disjoint_slices(tmp_path: Path, models: BuildModels) -> None:
    root = hdtf_dataset(tmp_path / "raw", {"A": 2, "B": 2, "C": 1})
    out = tmp_path / "shards"
    for job in (0, 1):
        assert (
            build("hdtf", root, out, models, num_jobs=2, job_index=job, min_frames=20, test_seconds=0, progress=False)
            == 0
        )
    keys = [r["key"] for r in read_manifests(out)]
    assert len(keys) == len(set(keys)) == 5
    by_job = [{r["key"] for r in read_manifests(out, job)} for job in (0, 1)]
    assert by_job[0].isdisjoint(by_job[1]) and len(by_job[0]) == 3
    assert all("-j000-" in r["shard"] for r in read_manifests(out, 0) if r["status"] == "written")
    assert len(read_shards(out)) == 5


def test_job_slice_defaults_to_the_slurm_array(monkeypatch: pytest.MonkeyPatch) -> None:
    assert job_slice(None, None) == (1, 0)
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "4")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "7")
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "5")
    assert job_slice(None, None) == (4, 2)
    with pytest.raises(ValueError, match="outside"):
        job_slice(2, 2)


def test_schema_version_mismatch_is_refused(tmp_path: Path, models: BuildModels) -> None:
    talking_video(tmp_path / "raw" / "a" / "x.mp4", SENTENCES[0])
    build("folder", tmp_path / "raw", tmp_path / "out", models, min_frames=20, progress=False)
    (clip,) = read_shards(tmp_path / "out")
    sample = encode_sample(clip)
    sample["meta.json"] = sample["meta.json"].replace(b'"schema_version": 1', b'"schema_version": 99')
    with pytest.raises(SchemaError, match=r"schema version 99.*rebuild"):
        decode_sample(sample)


def raw_samples(out: Path) -> dict[str, dict[str, bytes]]:
    """Every sample's stored bytes (motion, meta, audio, mel, crops) by key."""
    urls = [str(p) for p in sorted(out.glob("*.tar"))]
    samples = wds.WebDataset(urls, shardshuffle=False, empty_check=False)
    return {s["__key__"]: {k: v for k, v in s.items() if not k.startswith("__")} for s in samples}


def test_decode_workers_give_byte_identical_samples(tmp_path: Path, models: BuildModels) -> None:
    """Decode and crop in 2 worker processes (chunks of clips interleaving, a test clip cut into pieces, face
    crops, skipped clips) store exactly what the in-process path does, with the same manifest reasons."""
    root = hdtf_dataset(tmp_path / "raw", {"WRA_Carol": 1, "WDA_Alice": 1})  # Carol has the longer sentence
    video = (root / "WDA_Alice_000.mp4").read_bytes()
    (root / "WDA_Zed_000.mp4").write_bytes(video[: len(video) // 2])
    talking_video(root / "WDA_Empty_000.mp4", SENTENCES[1], blank=True)
    split_file = tmp_path / "splits.txt"
    split_file.write_text("WDA_Alice train\nWRA_Carol test\n")
    models.batch_size = 8  # several chunks per clip
    outs = {}
    for workers in (0, 2):
        outs[workers] = out = tmp_path / f"shards-{workers}"
        assert build("hdtf", root, out, models, split_file=split_file, min_frames=20, test_seconds=1.0, face_frames=2,
                     progress=False, decode_workers=workers) == 0  # fmt: skip
    serial, parallel = raw_samples(outs[0]), raw_samples(outs[2])
    assert len(serial) == 3 and sorted(serial) == sorted(parallel)  # a whole clip and a test clip's 1 s pieces
    for key, sample in serial.items():
        assert sample == parallel[key], key
    reasons = [{r["key"]: r.get("reason") for r in read_manifests(out)} for out in outs.values()]
    assert reasons[0] == reasons[1]
    assert reasons[0]["hdtf/WDA_Zed/000"].startswith("unreadable video")
    assert reasons[0]["hdtf/WDA_Empty/000"].startswith("no face")


def test_default_decode_workers_follow_the_jobs_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    from data_prep.parallel import available_cpus, default_decode_workers

    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "12")
    assert available_cpus() == 12 and default_decode_workers() == 11
    monkeypatch.delenv("SLURM_CPUS_PER_TASK")
    assert available_cpus() == len(os.sched_getaffinity(0))
    assert default_decode_workers(1) == 0 and default_decode_workers(256) == 32


@pytest.mark.slow
def test_killed_build_resumes_without_duplicates_or_truncated_shards(
    tmp_path: Path, liveportrait_weights: Path
) -> None:
    root = hdtf_dataset(tmp_path / "raw", {f"P{i}": 2 for i in range(4)})
    out = tmp_path / "shards"
    cmd = [sys.executable, "-m", "data_prep", "build", "--dataset", "hdtf", "--root", str(root), "--out", str(out)]
    cmd += ["--weights", str(liveportrait_weights), "--liveportrait-size", "tiny", "--cropper", "opencv"]
    cmd += ["--min-frames", "20", "--test-seconds", "0", "--gpus", "1", "--workers", "1", "--no-progress"]
    proc = subprocess.Popen(cmd, env=offline_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while time.time() < deadline and len(read_manifests(out)) < 3:  # let it finish a few shards
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = read_manifests(out)
    assert 0 < len(first) < 8, "the build finished before it could be killed; make the dataset bigger"
    rerun = subprocess.run(cmd, env=offline_env(), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    records = read_manifests(out)
    keys = [r["key"] for r in records]
    assert len(keys) == len(set(keys)) == 8
    clips = read_shards(out)
    assert sorted(c.key for c in clips) == sorted(keys)  # every shard decodes; no clip twice
    assert not list(out.glob("*.tmp"))
    assert sum(json.loads((out / "sizes.json").read_text()).values()) == 8


def test_transcripts_and_styles_continuing_another_dataset(tmp_path: Path, models: BuildModels) -> None:
    """``--transcripts`` stores each clip's text (matched by key, path or file name); ``--styles-from`` numbers this
    dataset's styles after another folder's, and the data module refuses two folders that share an id."""
    from data_prep.transcripts import load_transcripts
    from pctalk.data import ShardDataModule
    from pctalk.data.styles import read_styles

    hdtf = hdtf_dataset(tmp_path / "raw", {"WDA_Alice": 1, "RD_Bob": 1})
    (tmp_path / "split.txt").write_text("WDA_Alice train\nRD_Bob train\n")
    first = tmp_path / "first"
    build("hdtf", hdtf, first, models, split_file=tmp_path / "split.txt", min_frames=20, progress=False)
    assert read_styles(first) == {"0": "hdtf/RD_Bob", "1": "hdtf/WDA_Alice"}

    mead = mead_dataset(tmp_path / "mead", identities=("M003", "M005", "W011"), emotions=("neutral",))
    (tmp_path / "mead_split.txt").write_text("M005 train\nW011 train\nM003 test\n")
    texts = tmp_path / "transcripts.tsv"
    texts.write_text("# clip id<TAB>text\nmead/M005/neutral_1_001\tShe had your dark suit.\n001\tDon't ask me.\n")
    assert load_transcripts(texts)["001"] == "Don't ask me."
    second = tmp_path / "second"
    build("mead", mead, second, models, split_file=tmp_path / "mead_split.txt", min_frames=20, progress=False,
          styles_from=str(first), transcripts=texts)  # fmt: skip
    clips = {c.meta.identity: c.meta for c in read_shards(second)}
    assert clips["M005"].extra["text"] == "She had your dark suit."  # by key, before the file name
    assert clips["W011"].extra["text"] == "Don't ask me."  # by file name
    assert (clips["M005"].style_id, clips["W011"].style_id, clips["M003"].style_id) == (2, 3, -1)
    assert ShardDataModule(f"{first},{second}").styles() == {
        "0": "hdtf/RD_Bob", "1": "hdtf/WDA_Alice", "2": "mead/M005", "3": "mead/W011",
    }  # fmt: skip
    third = tmp_path / "third"  # numbered on its own: ids 0 and 1 again, for other speakers
    build("mead", mead, third, models, split_file=tmp_path / "mead_split.txt", min_frames=20, progress=False)
    with pytest.raises(ValueError, match="--styles-from"):
        ShardDataModule(f"{first},{third}").setup("fit")
