"""``pctalk-eval run``: generated and external videos scored on the test identities, bad clips skipped, the paper's
table written; a 2-process DDP run gives the one-process numbers."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from eval.metrics.lse import lse_video
from eval.networks.emotion_fan import EmotionFAN
from eval.networks.syncnet_v2 import SyncNetV2
from eval.runner import Method, MetricSettings, render_table, run_command
from eval_networks import TinyI3D, fid_inception_template
from random_weights import seeded_state_dict
from raw_media import hdtf_dataset

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
EMOTIONS8 = ["neutral", "happy", "sad", "angry", "fear", "disgusted", "surprised", "contempt"]


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A raw HDTF-like folder (identity B is the test identity), splits.json, and random metric weights."""
    root = tmp_path_factory.mktemp("bench")
    raw = hdtf_dataset(root / "HDTF", {"A": 1, "B": 3})
    (root / "splits.json").write_text(json.dumps({"hdtf": {"A": "train", "B": "test"}}))
    weights = root / "weights"
    (weights / "syncnet").mkdir(parents=True)
    torch.save(seeded_state_dict(SyncNetV2().state_dict(), 3), weights / "syncnet" / "syncnet_v2.model")
    (weights / "fid").mkdir()
    torch.save(seeded_state_dict(fid_inception_template(), 5), weights / "fid" / "pt_inception-2015-12-05-6726825d.pth")
    (weights / "fvd").mkdir()
    torch.manual_seed(0)
    torch.jit.script(TinyI3D().eval()).save(str(weights / "fvd" / "i3d_torchscript.pt"))
    (weights / "emotion_fan").mkdir()
    fan = seeded_state_dict(EmotionFAN(8).state_dict(), 11)
    torch.save({"state_dict": fan, "classes": EMOTIONS8}, weights / "emotion_fan" / "emotion_fan_mead.pth.tar")
    other = root / "other_method"
    other.mkdir()
    for clip in sorted(raw.glob("B_*.mp4")):
        shutil.copy(clip, other / clip.name)
    (other / "B_002.mp4").write_bytes(b"not a video")  # corrupt: reported and skipped
    return {"root": root, "raw": raw, "weights": weights, "other": other}


def _settings(bench: dict[str, Path], metrics: list[str]) -> MetricSettings:
    # the bench's videos (and the tiny renders pasted back into them) are square face crops; random-weight renders
    # have no face a detector could track
    return MetricSettings(metrics=metrics, weights_root=bench["weights"], frame_stride=20, lse_crop="frame")


def test_run_scores_external_videos_and_the_real_ones(bench, tmp_path) -> None:
    """Another method's folder of videos (one corrupt) beside the real-videos row; pctalk's own generated rows, the
    test pieces and resuming are driven end to end by tests/test_rehearsal.py."""
    out = tmp_path / "table1"
    settings = _settings(bench, ["lse", "fid", "niqe", "fvd", "acc_emo"])
    assert run_command("table1", out, "hdtf", bench["raw"], [Method("Other", videos=bench["other"])],
                       splits=bench["root"] / "splits.json", settings=settings, accelerator="cpu",
                       devices=1) == 0  # fmt: skip
    results = json.loads((out / "results.json").read_text())
    other = results["blocks"]["HDTF"]["Other"]
    assert [s["clip"] for s in other["skipped"]] == ["hdtf/B/002"] and other["clips"] == 3
    assert "VideoError" in other["skipped"][0]["reason"]  # each skipped clip once, with its reason
    used = results["protocols"]["HDTF"]
    assert used["counted"]["Other"]["clips"] == 2 and used["clips"]["test clips"] == 3
    assert used["clips"]["splits_sha256"] and "test_list" not in used["clips"]  # no test list: the whole raw clips
    assert (
        used["networks"]["syncnet.syncnet_v2"]["sha256"]
        == hashlib.sha256((bench["weights"] / "syncnet" / "syncnet_v2.model").read_bytes()).hexdigest()
    )
    expected_all = [lse_video(bench["raw"] / f"B_00{i}.mp4", bench["weights"] / "syncnet" / "syncnet_v2.model")
                    for i in (0, 1, 2)]  # fmt: skip
    expected = expected_all[:2]
    real = results["blocks"]["HDTF"]["Real videos"]  # the ground-truth row, scored by the same run
    assert real["clips"] == 3 and real["skipped"] == []
    # FVD needs two videos a side: the halves of three clips are two and one
    assert all(np.isfinite(real[k]) for k in ("lse_c", "lse_d", "niqe", "fid", "acc_emo")), real
    assert real["lse_c"] == pytest.approx(sum(r.lse_c for r in expected_all) / 3, rel=1e-5)
    assert other["lse_c"] == pytest.approx(sum(r.lse_c for r in expected) / 2, rel=1e-5)
    assert other["fid"] == pytest.approx(0.0, abs=1e-2)  # the same frames as the reference
    table = (out / "table.md").read_text()
    assert "| Other |" in table and "| Ours (w Aug Data), image input (paper) | 9.37 | 6.44 |" in table
    assert "FVD: stylegan-v" in table


@pytest.mark.ddp
def test_run_under_two_process_ddp_equals_one_process(bench, run_cli, tmp_path: Path) -> None:
    config = {
        "table": "table1", "dataset": "hdtf", "root": str(bench["raw"]), "splits": str(bench["root"] / "splits.json"),
        "methods": [{"name": "Other", "videos": str(bench["other"])}],
        "settings": {"metrics": ["lse", "niqe", "fvd"], "weights_root": str(bench["weights"]), "frame_stride": 20},
        "accelerator": "cpu", "ground_truth": False,
    }  # fmt: skip
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    run_cli(["run", "--config", tmp_path / "run.yaml", "--out", tmp_path / "one", "--devices", "1"], module="eval")
    run_cli(["run", "--config", tmp_path / "run.yaml", "--out", tmp_path / "two", "--devices", "2",
             "--strategy", "ddp"], module="eval")  # fmt: skip
    one = json.loads((tmp_path / "one" / "results.json").read_text())["blocks"]["HDTF"]["Other"]
    two = json.loads((tmp_path / "two" / "results.json").read_text())["blocks"]["HDTF"]["Other"]
    assert two["skipped"] == one["skipped"] and [s["clip"] for s in one["skipped"]] == ["hdtf/B/002"]
    for key in ("lse_c", "lse_d", "niqe", "fvd"):
        assert two[key] == pytest.approx(one[key], rel=1e-6), key
    # fewer clips than ranks: the rank without a clip still takes part in the metrics' sync (no hang)
    run_cli(["run", "--config", tmp_path / "run.yaml", "--out", tmp_path / "few", "--devices", "2",
             "--strategy", "ddp", "--max-clips", "1"], module="eval", timeout=240)  # fmt: skip
    few = json.loads((tmp_path / "few" / "results.json").read_text())["blocks"]["HDTF"]["Other"]
    assert few["skipped"] == [] and np.isfinite(few["lse_c"])


def test_render_table_layout() -> None:
    text = render_table("table3", {"blocks": {"HDTF": {"mine": {"lse_c": 8.0}}}})
    assert text.splitlines()[0] == "| Method | HDTF LSE-C↑ |"
    assert "| mine | 8.00 |" in text and "| + lip refiner (paper) | 9.26 |" in text
    # what the run computed beyond the paper's columns, the table shows
    text = render_table("table1", {"blocks": {"HDTF": {"mine": {"lse_c": 8.0, "acc_emo": 50.0, "efid": 2.0}}}})
    header, _, row = text.splitlines()[:3]
    assert "| HDTF FVD↓ | HDTF Acc_emo↑ | HDTF E-FID↓ | MEAD-Neutral LSE-C↑ |" in header
    assert row == "| mine | 8.00 | – | – | – | – | 50.00 | 2.00 | – | – | – | – | – |"


def test_a_lac_of_target_all_trains_exports_and_generates(
    bench, synthetic_corpus: Path, liveportrait_weights: Path, tmp_path: Path
) -> None:
    """Table 3's "no lip keypoints" LAC: fit one predicting all 21 keypoints (debug sizes), export it, generate with
    it; the lip refiner refuses it, as the official release does (tests/test_rehearsal.py scores it in Table 3)."""
    from pctalk.checkpoints import load_lac_stage
    from pctalk.cli import main
    from pctalk.media import VideoReader
    from pctalk.tasks import LipRefinerTask

    experiments = Path(__file__).resolve().parents[1] / "experiments" / "lac"
    run = tmp_path / "run"
    assert main(["fit", "-c", str(experiments / "expression_debug.yaml"), "-c",
                 str(experiments / "ablation" / "all_keypoints.yaml"), f"--data.init_args.root={synthetic_corpus}",
                 "--model.init_args.n_styles=2", "--trainer.max_steps=4",
                 f"--trainer.default_root_dir={run}"]) == 0  # fmt: skip
    ckpt = run / "checkpoints" / "last.ckpt"
    assert torch.load(ckpt, weights_only=True)["pctalk"]["target"] == "all"
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(tmp_path / "release")]) == 0
    lac = tmp_path / "release" / "lac.pth"
    stage = load_lac_stage(lac)
    assert stage.info.target == "all" and stage.info.keypoints == tuple(range(21)) and stage.predictor.out_dim == 63
    kp_video = tmp_path / "kp.mp4"
    assert main(["generate", "--audio", str(bench["raw"] / "B_000.mp4"), "--lac", str(lac), "--no-progress",
                 "--keypoint-video", str(kp_video)]) == 0  # fmt: skip
    assert len(VideoReader(kp_video)) > 10
    with pytest.raises(ValueError, match="predicts all 21 keypoints"):
        LipRefinerTask(expression=str(ckpt), weights=str(liveportrait_weights), liveportrait_size="tiny")
