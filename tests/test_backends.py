"""LivePortrait's render backends: ONNX Runtime on the exported networks and torch.compile, each equal to eager fp32
within 1e-4 (tiny sizes), and the commands that use them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pctalk.keypoints.backends import OnnxLivePortrait, export_onnx, use_backend
from raw_media import speech

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")


def _outputs(model, images: torch.Tensor, feature: torch.Tensor, x_s: torch.Tensor, x_d: torch.Tensor):
    with torch.no_grad():
        motion = model.extract_motion(images)
        return {"kp": motion.kp, "exp": motion.exp, "R": motion.R, "t": motion.t, "scale": motion.scale,
                "feature": model.appearance(images), "render": model.warp_decode(feature, x_s, x_d)}  # fmt: skip


def test_onnx_and_compiled_networks_equal_eager(tiny_liveportrait, tmp_path: Path) -> None:
    model = tiny_liveportrait
    size = model.config.input_size
    images = torch.rand(3, 3, size, size, generator=torch.Generator().manual_seed(1))  # a batch the export never saw
    with torch.no_grad():
        feature = model.appearance(images)
        x_s = model.extract_motion(images).keypoints()
    x_d = x_s + 0.02 * torch.randn(x_s.shape, generator=torch.Generator().manual_seed(2))
    eager = _outputs(model, images, feature, x_s, x_d)
    state = {k: v.clone() for k, v in model.state_dict().items()}

    folder = export_onnx(model, tmp_path / "onnx")
    assert not any(m.training for m in model.modules())  # exporting leaves the shared networks frozen
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["opset"] >= 20 and set(manifest["files"]) == {"motion", "appearance", "render"}
    for backend in ("onnx", "compile"):
        use_backend(model, backend, folder, compile_backend="aot_eager")
        got = _outputs(model, images, feature, x_s, x_d)
        for key, value in eager.items():
            assert got[key].shape == value.shape and (got[key] - value).abs().max() < 1e-4, (backend, key)
    use_backend(model, "torch")
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())  # no running statistic moved
    assert torch.equal(_outputs(model, images, feature, x_s, x_d)["render"], eager["render"])

    with pytest.raises(FileNotFoundError, match="pctalk export-onnx"):
        OnnxLivePortrait(tmp_path / "nowhere", model)
    other = type(model)(model.config)
    with pytest.raises(ValueError, match="exported from other LivePortrait weights"):
        OnnxLivePortrait(folder, other)
    with pytest.raises(ValueError, match="backend must be one of"):
        use_backend(model, "tensorrt")


def test_generate_with_the_onnx_backend(
    release: Path, liveportrait_weights: Path, astronaut_path: Path, tmp_path: Path, capsys
) -> None:
    from pctalk.cli import main
    from pctalk.inference import Controls, TalkingFacePipeline
    from pctalk.media import VideoReader, write_audio

    assert main(["export-onnx", "--weights", str(liveportrait_weights), "--liveportrait-size", "tiny"]) == 0
    assert (liveportrait_weights / "liveportrait_onnx_tiny" / "manifest.json").is_file()
    assert "manifest.json" in capsys.readouterr().out
    common = dict(weights=liveportrait_weights, cropper="opencv", liveportrait_size="tiny", progress=False)
    frames = {}
    wav = speech("Bees hum all day.")
    for backend in ("torch", "onnx"):
        pipeline = TalkingFacePipeline.from_checkpoints(release / "lac.pth", backend=backend, **common)
        source = pipeline.load_source(astronaut_path)
        frames[backend] = np.stack(list(pipeline.render(source, pipeline.motion(wav, source, Controls()))))
    diff = np.abs(frames["onnx"].astype(int) - frames["torch"].astype(int))
    assert frames["onnx"].shape == frames["torch"].shape and diff.max() <= 1  # uint8 rounding of a < 1e-4 difference
    args = [
        "generate",
        "--source",
        str(astronaut_path),
        "--audio",
        str(tmp_path / "a.wav"),
        "--lac",
        str(release / "lac.pth"),
        "--weights",
        str(liveportrait_weights),
        "--cropper",
        "opencv",
        "--liveportrait-size",
        "tiny",
        "--no-progress",
        "--backend",
        "onnx",
        "--out",
        str(tmp_path / "o.mp4"),
    ]
    write_audio(tmp_path / "a.wav", wav)
    assert main(args) == 0 and len(VideoReader(tmp_path / "o.mp4")) == len(frames["torch"])
    assert main([*args[:-2], "--onnx", str(tmp_path / "missing"), "--out", str(tmp_path / "p.mp4")]) == 2
    assert "pctalk export-onnx" in capsys.readouterr().err
