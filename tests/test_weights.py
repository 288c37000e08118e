"""The checkpoint registry and the one safe loader."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn

from pctalk.weights import (
    REGISTRY,
    CheckpointKeyError,
    MissingWeightsError,
    UnsafeCheckpointError,
    load_checkpoint,
    load_state_dict_strict,
    resolve,
    save_checkpoint,
    strip_prefix,
)
from pctalk.weights.registry import get


class _Planted:
    """An object whose unpickling would run code: a file holding it must be refused."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_registry_names_are_unique_and_paths_relative() -> None:
    names = [e.name for e in REGISTRY]
    assert len(names) == len(set(names))
    for entry in REGISTRY:
        assert not Path(entry.path).is_absolute()
        assert entry.origin and entry.used_by


def test_registry_covers_every_pretrained_part() -> None:
    paths = {e.path for e in REGISTRY}
    for expected in (
        "liveportrait/base_models/appearance_feature_extractor.pth",
        "liveportrait/base_models/motion_extractor.pth",
        "liveportrait/base_models/warping_module.pth",
        "liveportrait/base_models/spade_generator.pth",
        "liveportrait/retargeting_models/stitching_retargeting_module.pth",
        "liveportrait/landmark.onnx",
        "insightface/models/buffalo_l/det_10g.onnx",
        "insightface/models/buffalo_l/2d106det.onnx",
        "wav2lip/lipsync_expert.pth",
        "syncnet/syncnet_v2.model",
        "fvd/i3d_torchscript.pt",
        "deep3dfacerecon/epoch_20.pth",
    ):
        assert expected in paths


def test_resolve_missing_names_path_and_origin(tmp_path: Path) -> None:
    with pytest.raises(MissingWeightsError) as err:
        resolve("wav2lip.lipsync_expert", tmp_path)
    message = str(err.value)
    assert str(tmp_path / "wav2lip/lipsync_expert.pth") in message
    assert "Rudrabha/Wav2Lip" in message


def test_resolve_finds_fid_weights_in_the_torch_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cached = tmp_path / "torch/hub/checkpoints" / Path(get("fid.inception").path).name
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"weights")
    assert resolve("fid.inception", tmp_path / "empty_root") == cached


def test_resolve_unknown_name() -> None:
    with pytest.raises(KeyError, match="unknown pretrained file"):
        resolve("nope")


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    state = {"state_dict": {"w": torch.arange(6.0).reshape(2, 3)}, "global_step": 7}
    path = save_checkpoint(state, tmp_path / "sub" / "ckpt.pth")
    loaded = load_checkpoint(path)
    assert loaded["global_step"] == 7
    assert torch.equal(loaded["state_dict"]["w"], state["state_dict"]["w"])
    assert [p.name for p in path.parent.iterdir()] == ["ckpt.pth"]  # no temporary file left


def test_pickled_code_is_refused_and_not_executed(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    planted = tmp_path / "planted.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": _Planted(str(marker))}, planted)
    with pytest.raises(UnsafeCheckpointError, match="pickled Python objects") as err:
        load_checkpoint(planted)
    assert str(planted) in str(err.value)
    assert not marker.exists()


def test_truncated_checkpoint_has_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pth"
    torch.save({"w": torch.zeros(1000)}, path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(RuntimeError, match="cannot read checkpoint"):
        load_checkpoint(path)


def test_missing_checkpoint_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "absent.pth")


def test_failed_save_leaves_nothing_behind(tmp_path: Path) -> None:
    class Unsaveable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        save_checkpoint({"x": Unsaveable()}, tmp_path / "ckpt.pth")
    assert list(tmp_path.iterdir()) == []


def test_strict_loading_lists_offending_keys() -> None:
    net = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    state = net.state_dict()
    bad = dict(state)
    bad.pop("1.bias")
    bad["2.weight"] = torch.zeros(1)
    bad["0.weight"] = torch.zeros(4, 2)
    with pytest.raises(CheckpointKeyError) as err:
        load_state_dict_strict(net, bad, "model.pth")
    message = str(err.value)
    assert "model.pth" in message
    assert "1.bias" in message and "2.weight" in message and "0.weight: file (4, 2)" in message


def test_strict_loading_accepts_an_exact_state_dict() -> None:
    torch.manual_seed(0)
    source, target = nn.Linear(2, 3), nn.Linear(2, 3)
    load_state_dict_strict(target, source.state_dict(), "x")
    assert torch.equal(target.weight, source.weight)


def test_strip_prefix_only_touches_prefixed_keys() -> None:
    state = {"module.a": 1, "b": 2, "x.module.c": 3}
    assert strip_prefix(state, "module.") == {"a": 1, "b": 2, "x.module.c": 3}


def test_weights_check_lists_every_metric_file(run_cli, tmp_path: Path) -> None:
    out = run_cli(["weights", "check", "--root", tmp_path], env={"COLUMNS": "250"}).stdout
    for name in ("syncnet.syncnet_v2", "fid.inception", "fvd.i3d", "emotion.emotion_fan", "efid.deep3dfacerecon",
                 "efid.lm3d"):  # fmt: skip
        row = next((line for line in out.splitlines() if f" {name} " in line), None)
        assert row is not None and "missing" in row, out
