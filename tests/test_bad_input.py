"""Bad input and faults: nothing silently wrong, nothing lost, a clear message. Each test is a class of fault a
careless user or a killed job produces."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import torch
import webdataset as wds

from conftest import REPO
from data_prep.sources import enumerate_clips
from pctalk.cli import main
from pctalk.data import ShardDataModule
from pctalk.data.schema import clip_key, decode_sample
from pctalk.data.synthetic import MARKER, SyntheticCorpus, synth
from pctalk.data.writer import ShardSink, read_manifests, write_index
from pctalk.weights.io import atomic_write, save_checkpoint


# -- the synthetic corpus is only written where asked, into its own folder -----------------------------------------
def test_the_synthetic_corpus_never_goes_into_real_data(tmp_path: Path) -> None:
    half_built = tmp_path / "shards" / "hdtf"  # a real build in progress: shards and a manifest, no train.txt yet
    half_built.mkdir(parents=True)
    (half_built / "train-j000-000000.tar").write_bytes(b"real shard")
    (half_built / "manifest-j000.jsonl").write_text('{"key": "hdtf/A/000", "status": "written"}\n')
    before = sorted(p.name for p in half_built.iterdir())
    with pytest.raises(ValueError, match=r"already holds other files and is not a synthetic corpus"):
        SyntheticCorpus(str(half_built), clips=4, identities=3).ensure([half_built])
    assert sorted(p.name for p in half_built.iterdir()) == before  # untouched
    with pytest.raises(ValueError, match="not a synthetic corpus"):
        synth(half_built, clips=4, identities=3, progress=False)  # `pctalk-data synth --out` refuses it too


def test_a_mistyped_root_fails_instead_of_training_on_invented_data(tmp_path: Path) -> None:
    """A debug config's synthetic corpus is for its own folder: pointing ``root`` elsewhere never writes one."""
    typo = tmp_path / "shards" / "hdft"
    dm = ShardDataModule(str(typo), synthetic=SyntheticCorpus(str(tmp_path / "synth_debug"), clips=4, identities=3))
    dm.prepare_data()
    assert not typo.exists() and not (tmp_path / "synth_debug").exists()
    with pytest.raises(FileNotFoundError, match=r"hdft/train.txt not found: build the shards"):
        dm.shards("train")


def test_the_synthetic_corpus_is_written_into_its_folder_and_rewritten_cleanly(tmp_path: Path) -> None:
    folder = tmp_path / "synth_debug"
    corpus = SyntheticCorpus(str(folder), clips=6, identities=3)
    ShardDataModule(str(folder), synthetic=corpus).prepare_data()
    assert (folder / "train.txt").is_file() and json.loads((folder / MARKER).read_text())["clips"] == 6
    (folder / "train.txt").unlink()  # as if a synth was killed before its index: the rewrite starts clean
    corpus.ensure([folder])
    keys = [r["key"] for r in read_manifests(folder)]
    assert len(keys) == len(set(keys)) == 6


# -- clip keys: unique for any file name, stable, collisions refused --------------------------------------------------
def test_clip_keys_are_unique_and_stable_for_any_name() -> None:
    names = ["talk 1", "talk_1", "talk-1", "Привет", "Здравствуй", "José", "Jose", "ジョン", "a.b", "WRA_Anna_000"]
    keys = [clip_key("hdtf", name, "000") for name in names]
    assert len(set(keys)) == len(keys)
    assert keys == [clip_key("hdtf", name, "000") for name in names]  # a rerun finds the same keys
    assert clip_key("hdtf", "WRA_Anna_000", "000") == "hdtf/WRA_Anna_000/000"  # plain names are kept as they were
    assert all("." not in k and " " not in k for k in keys)


def test_clips_that_would_share_a_key_are_an_error(tmp_path: Path) -> None:
    root = tmp_path / "HDTF"
    root.mkdir()
    for name in ("Anna_000.mp4", "Anna_000.mov"):  # the same clip name in two containers
        (root / name).write_bytes(b"")
    with pytest.raises(ValueError, match=r"Anna_000.mov and .*Anna_000.mp4 would both be clip 'hdtf/Anna/000'"):
        enumerate_clips("hdtf", root)
    (root / "Anna_000.mov").unlink()
    (root / "Anna 000.mp4").write_bytes(b"")  # a space where the other has an underscore: its own key
    assert len({c.key for c in enumerate_clips("hdtf", root)}) == 2


# -- a kill between a shard's rename and its manifest lines ------------------------------------------------------------
def test_a_kill_between_rename_and_manifest_duplicates_nothing(
    synthetic_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pctalk.data.writer as writer

    urls = [str(synthetic_corpus / n) for n in (synthetic_corpus / "train.txt").read_text().split()]
    clips = [decode_sample(s) for _, s in zip(range(3), wds.WebDataset(urls, shardshuffle=False))]
    out = tmp_path / "shards"
    real = writer.append_records

    def killed(path: Path, records: list) -> None:
        raise KeyboardInterrupt  # the job dies right after renaming the shard, before its manifest lines

    monkeypatch.setattr(writer, "append_records", killed)
    with pytest.raises(KeyboardInterrupt):
        sink = ShardSink(out, maxcount=2)
        for clip in clips:
            sink.write(clip, source="x")
    monkeypatch.setattr(writer, "append_records", real)
    assert [p.name for p in out.glob("*.tar")] == ["train-j000-000000.tar"] and not read_manifests(out)

    rerun = ShardSink(out, maxcount=2)  # the rerun finds the renamed shard and records its clips
    assert set(rerun.done) == {c.key for c in clips[:2]}
    with rerun:
        for clip in clips:
            if clip.key not in rerun.done:
                rerun.write(clip, source="x")
    sizes = write_index(out)
    keys = [r["key"] for r in read_manifests(out)]
    assert sorted(keys) == sorted(c.key for c in clips) and sum(sizes.values()) == 3


# -- files others can read ---------------------------------------------------------------------------------------------
def test_written_files_get_the_umask_permissions(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        paths = [
            atomic_write(tmp_path / "splits.json", lambda tmp: tmp.write_text("{}")),
            save_checkpoint({"w": torch.ones(1)}, tmp_path / "release" / "lac.pth"),
        ]
    finally:
        os.umask(old)
    for path in paths:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


# -- the command line: messages, not tracebacks ------------------------------------------------------------------------
def test_fit_on_a_folder_without_shards_names_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty_shards"
    empty.mkdir()
    config = REPO / "tests" / "conf" / "expression_tiny.yaml"
    assert (
        main(["fit", "-c", str(config), f"--data.init_args.root={empty}", f"--trainer.default_root_dir={tmp_path}"])
        == 2
    )
    err = capsys.readouterr().err
    assert f"{empty}/" in err and ".txt not found" in err and "pctalk-data build" in err and "Traceback" not in err


def test_fit_resuming_from_a_refused_file_names_it(
    synthetic_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "downloaded.ckpt"
    torch.save({"state_dict": {}, "hook": object()}, bad)  # pickled code: refused
    config = REPO / "tests" / "conf" / "expression_tiny.yaml"
    code = main(["fit", "-c", str(config), f"--data.init_args.root={synthetic_corpus}", f"--ckpt_path={bad}",
                 f"--trainer.default_root_dir={tmp_path / 'run'}"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "downloaded.ckpt" in err and "Traceback" not in err


def test_broken_yaml_and_bad_numbers_name_the_file_and_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("model:\n  class_path: pctalk.tasks.ExpressionTask\n  init_args: [n_styles: 2\n")
    assert main(["fit", "-c", str(broken)]) == 2
    err = capsys.readouterr().err
    assert "broken.yaml is not valid YAML" in err and "line 3" in err
    assert main(["fit", "-c", str(tmp_path / "missing.yaml")]) == 2
    assert "config file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as done:
        main(["fit", "-c", str(REPO / "tests" / "conf" / "expression_tiny.yaml"), "--model.init_args.lr=abc"])
    assert done.value.code == 2 and "lr" in capsys.readouterr().err


# -- controls: every numeric one has a range; outside it the error names the option --------------------------------
@pytest.mark.parametrize(
    "args, option",
    [
        (["--lip-scale", "nan"], "--lip-scale"),
        (["--lip-scale", "-1"], "--lip-scale"),
        (["--emotion", "happy:lips:nan"], "--emotion happy:lips intensity"),
        (["--emotion", "happy:lips:inf"], "--emotion happy:lips intensity"),
        (["--emotion", "happy:all:50"], "--emotion happy:all intensity"),
        (["--emotion", "sad:eyes:-3"], "--emotion sad:eyes intensity"),
        (["--emotion", "sad:eyes:abc"], "is not a number"),
        (["--style-edit", "duck=nan"], "--style-edit duck"),
        (["--window", "1"], "--window"),
    ],
)
def test_out_of_range_controls_are_refused(
    release: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], option: str
) -> None:
    out = tmp_path / "motion.npz"
    code = main(["generate", "--lac", str(release / "lac.pth"), "--emc", str(release / "emc.pth"), "--text", "Hi.",
                 "--save-motion", str(out), "--no-progress", *args])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and option in err and "Traceback" not in err, err
    assert not out.exists()


@pytest.mark.parametrize(
    "controls, message",
    [
        ({"lip_scale": 1.5}, "needs a list of [time_s, value] keyframes"),
        ({"lip_scale": [[0, 1], [1, float("nan")]]}, "is outside its range"),
        ({"lip_scale": [[0, 1], [1, 9]]}, "is outside its range [0, 3]"),
        ({"emotion:grumpy:lips": [[0, 0.5]]}, "unknown emotion 'grumpy'"),
        ({"emotion:happy:chin": [[0, 0.5]]}, "unknown region 'chin'"),
        ({"style_edit:moo": [[0, 1.5]]}, "no pronunciation 'moo'"),
        ({"lip_scale": [[-1, 1]]}, "keyframe times must be finite seconds >= 0"),
    ],
)
def test_bad_timelines_are_refused_naming_the_file_and_control(
    release: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], controls: dict, message: str
) -> None:
    timeline = tmp_path / "timeline.json"
    timeline.write_text(json.dumps({"controls": controls}).replace("NaN", "NaN"))
    code = main(["generate", "--lac", str(release / "lac.pth"), "--text", "Hi.", "--controls", str(timeline),
                 "--save-motion", str(tmp_path / "m.npz"), "--no-progress"])  # fmt: skip
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2 and "timeline.json" in err and message in err and "Traceback" not in err, err


# -- outputs: checked before any work --------------------------------------------------------------------------------
def test_outputs_that_cannot_be_written_are_refused_first(
    release: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["generate", "--lac", str(release / "lac.pth"), "--text", "Hi.", "--no-progress"]
    folder = tmp_path / "videos"
    folder.mkdir()
    assert main([*common, "--keypoint-video", str(folder)]) == 2
    assert "is a folder; give a file name" in capsys.readouterr().err
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder")
    assert main([*common, "--save-motion", str(a_file / "sub" / "m.npz")]) == 2
    assert "cannot write into" in capsys.readouterr().err and a_file.read_text() == "not a folder"


# -- media and eval inputs --------------------------------------------------------------------------------------------
def test_a_truncated_wav_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], release: Path) -> None:
    import numpy as np

    from pctalk.media import write_audio

    whole = write_audio(tmp_path / "whole.wav", (0.1 * np.sin(np.arange(48000) / 9)).astype(np.float32), 16000)
    cut = tmp_path / "cut.wav"
    cut.write_bytes(Path(whole).read_bytes()[:30000])  # a copy cut short: the header still says 3 s
    code = main(["generate", "--lac", str(release / "lac.pth"), "--audio", str(cut), "--no-progress",
                 "--save-motion", str(tmp_path / "m.npz")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "cut.wav is truncated" in err and not (tmp_path / "m.npz").exists()


def test_eval_with_a_missing_videos_folder_names_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from eval.cli import main as eval_main

    config = tmp_path / "run.yaml"
    config.write_text(
        f"table: table1\ndataset: hdtf\nroot: {tmp_path}\nout: {tmp_path / 'out'}\n"
        f"methods:\n  - name: Other\n    videos: {tmp_path / 'no_such_folder'}\n"
    )
    code = eval_main(["run", "--config", str(config)])
    err = capsys.readouterr().err
    assert code == 2 and "no_such_folder does not exist" in err and not (tmp_path / "out" / "results.json").exists()


def test_weights_check_counts_empty_files_as_missing_and_names_a_missing_root(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pctalk.weights.registry import check

    (tmp_path / "liveportrait" / "base_models").mkdir(parents=True)
    (tmp_path / "liveportrait" / "base_models" / "motion_extractor.pth").write_bytes(b"")  # a download cut at 0 bytes
    status = next(s for s in check(tmp_path) if s.entry.name == "liveportrait.motion_extractor")
    assert not status.present and status.empty
    assert main(["weights", "check", "--root", str(tmp_path), "--strict"]) == 1
    assert "empty (0 bytes)" in capsys.readouterr().out
    assert main(["weights", "check", "--root", str(tmp_path / "no_such_root")]) == 2
    assert "does not exist" in capsys.readouterr().err
    needed_by_build = {s.entry.name for s in check(tmp_path) if "pctalk-data build" in s.entry.used_by}
    assert {"liveportrait.appearance_feature_extractor", "liveportrait.warping_module"} <= needed_by_build


def test_stage_two_given_the_wrong_stage_one_says_so(
    release: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = REPO / "experiments" / "lac" / "refiner_debug.yaml"
    code = main(["fit", "-c", str(config), f"--model.init_args.expression={release / 'emc.pth'}",
                 f"--trainer.default_root_dir={tmp_path}"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "emc.pth is an EMC (emotion) checkpoint, not a LAC (lip) one" in err
    assert err.count("Traceback") == 0


def test_a_build_into_an_unwritable_place_names_it(
    tmp_path: Path, liveportrait_weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from data_prep.cli import main as data_main
    from raw_media import hdtf_dataset

    root = hdtf_dataset(tmp_path / "raw", {"A": 1})
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep me")
    code = data_main(["build", "--dataset", "hdtf", "--root", str(root), "--out", str(a_file / "shards"),
                      "--cropper", "opencv", "--weights", str(liveportrait_weights), "--liveportrait-size", "tiny",
                      "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and "notes.txt/shards" in err and a_file.read_text() == "keep me"
