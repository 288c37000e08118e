"""Render backends for the frozen LivePortrait: ``torch`` (eager, the reference), ``onnx`` (the networks exported
to ONNX, the warping module's 5-D grid sample included, run by ONNX Runtime) and ``compile`` (``torch.compile``;
with ``mode="reduce-overhead"`` on a GPU it captures CUDA graphs). Each gives the eager fp32 outputs within 1e-4
(``tests/test_backends.py``).

The exported folder (``pctalk export-onnx``) holds one file per network and ``manifest.json`` with the sizes and
the SHA-256 of the weights they were exported from, so a folder from other weights is refused instead of rendering
another face:

- ``motion_extractor.onnx``: images ``(B, 3, S, S)`` -> pitch, yaw, roll (bins), t, exp, scale, kp
- ``appearance_feature_extractor.onnx``: images -> feature volume ``(B, C, D, H, W)``
- ``warping_spade.onnx``: feature, x_source, x_driven ``(B, 21, 3)`` -> image ``(B, 3, 2S, 2S)`` (warp + decode)
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from pctalk.keypoints.liveportrait import LivePortrait

__all__ = ["BACKENDS", "MOTION_OUTPUTS", "OnnxLivePortrait", "export_onnx", "use_backend", "weights_sha256"]

BACKENDS = ("torch", "onnx", "compile")
MOTION_OUTPUTS = ("pitch", "yaw", "roll", "t", "exp", "scale", "kp")
OPSET = 20  # the first with N-D GridSample
FILES = {"motion": "motion_extractor.onnx", "appearance": "appearance_feature_extractor.onnx",
         "render": "warping_spade.onnx"}  # fmt: skip


def weights_sha256(model: LivePortrait) -> str:
    """SHA-256 of the networks' weights (what an export was made from)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if name.startswith("stitching."):
            continue
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class _Motion(nn.Module):
    def __init__(self, model: LivePortrait) -> None:
        super().__init__()
        self.net = model.motion_extractor

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.net(images)
        return tuple(out[k] for k in MOTION_OUTPUTS)


class _Render(nn.Module):
    def __init__(self, model: LivePortrait) -> None:
        super().__init__()
        self.warping, self.decoder = model.warping, model.decoder

    def forward(self, feature: torch.Tensor, x_source: torch.Tensor, x_driven: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.warping(feature, kp_driving=x_driven, kp_source=x_source))


def export_onnx(model: LivePortrait, out: str | os.PathLike[str]) -> Path:
    """Export the motion extractor, appearance encoder and warping module + SPADE decoder of ``model`` (fp32, any
    batch size) into the folder ``out``: the old manifest removed first, each file written atomically, the new
    manifest last (so a folder loads only when complete). ``model`` itself is not moved or changed.

    Returns:
        the folder.
    """
    import copy

    from pctalk.weights.io import atomic_write

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").unlink(missing_ok=True)  # an interrupted re-export leaves no folder that loads
    model = copy.deepcopy(model).float().cpu().eval()  # the caller's model stays where it was
    size = model.config.input_size
    images = torch.rand(2, 3, size, size)
    with torch.no_grad():
        feature = model.appearance(images)
        x = model.extract_motion(images).keypoints()
    jobs = {
        "motion": (_Motion(model).eval(), (images,), ["images"], list(MOTION_OUTPUTS)),
        "appearance": (model.appearance_encoder, (images,), ["images"], ["feature"]),
        "render": (_Render(model).eval(), (feature, x, x + 0.01), ["feature", "x_source", "x_driven"], ["image"]),
    }
    for name, (module, inputs, names, outputs) in jobs.items():
        axes = {k: {0: "batch"} for k in (*names, *outputs)}

        def write(tmp: Path, module=module, inputs=inputs, names=names, outputs=outputs, axes=axes) -> None:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
                torch.onnx.export(module, inputs, str(tmp), input_names=names, output_names=outputs,
                                  dynamic_axes=axes, opset_version=OPSET, dynamo=False)  # fmt: skip

        atomic_write(folder / FILES[name], write)
        model.eval()  # the exporter restores each wrapper's (train) mode onto the shared networks: re-freeze them
    manifest = {"format": "pctalk-liveportrait-onnx", "version": 1, "opset": OPSET, "input_size": size,
                "num_kp": model.config.num_kp, "weights_sha256": weights_sha256(model), "files": FILES}  # fmt: skip
    atomic_write(folder / "manifest.json", lambda tmp: tmp.write_text(json.dumps(manifest, indent=2)))
    return folder


class OnnxLivePortrait:
    """ONNX Runtime sessions of an exported folder, called with torch tensors (results on the inputs' device).

    Raises:
        FileNotFoundError: the folder or one of its files is missing (the message says how to export it).
        ValueError: it was exported from other weights or sizes than ``model``'s.
    """

    def __init__(self, folder: str | os.PathLike[str], model: LivePortrait | None = None, threads: int = 0) -> None:
        import onnxruntime as ort

        folder = Path(folder)
        manifest_path = folder / "manifest.json"
        fix = "export it: pctalk export-onnx --weights WEIGHTS_ROOT --out " + str(folder)
        if not manifest_path.is_file():
            raise FileNotFoundError(f"{folder} holds no exported LivePortrait (no manifest.json); {fix}")
        manifest = json.loads(manifest_path.read_text())
        if model is not None:
            if manifest.get("input_size") != model.config.input_size:
                raise ValueError(f"{folder} was exported at input size {manifest.get('input_size')}, the weights "
                                 f"are {model.config.input_size}; {fix}")  # fmt: skip
            if manifest.get("weights_sha256") != weights_sha256(model):
                raise ValueError(f"{folder} was exported from other LivePortrait weights than these; {fix}")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
        self.sessions = {}
        for name, file in manifest["files"].items():
            if not (folder / file).is_file():
                raise FileNotFoundError(f"{folder / file} is missing; {fix}")
            self.sessions[name] = ort.InferenceSession(str(folder / file), options, providers=providers)

    def _run(self, name: str, **inputs: torch.Tensor) -> list[torch.Tensor]:
        device = next(iter(inputs.values())).device
        feeds = {k: np.ascontiguousarray(v.detach().float().cpu().numpy()) for k, v in inputs.items()}
        return [torch.from_numpy(o).to(device) for o in self.sessions[name].run(None, feeds)]

    def motion(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return dict(zip(MOTION_OUTPUTS, self._run("motion", images=images)))

    def appearance(self, images: torch.Tensor) -> torch.Tensor:
        return self._run("appearance", images=images)[0]

    def render(self, feature: torch.Tensor, x_source: torch.Tensor, x_driven: torch.Tensor) -> torch.Tensor:
        return self._run("render", feature=feature, x_source=x_source, x_driven=x_driven)[0]


def use_backend(
    model: LivePortrait, backend: str, onnx: str | os.PathLike[str] | None = None, compile_backend: str = "inductor"
) -> LivePortrait:
    """Route ``model``'s motion extraction, appearance and render through ``backend`` (:data:`BACKENDS`): ``onnx``
    needs the exported folder; ``compile`` compiles the networks on first use (``compile_backend``: torch.compile's
    backend). Returns ``model``."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    runner: object | None = None
    if backend == "onnx":
        if onnx is None:
            raise ValueError("the onnx backend needs the exported networks: pctalk export-onnx, then --onnx FOLDER")
        runner = OnnxLivePortrait(onnx, model)
    elif backend == "compile":
        runner = _Compiled(model, compile_backend)
    model.runner = runner
    return model


class _Compiled:
    """``torch.compile`` of each network, compiled on its first call. On a CUDA input with inductor it captures CUDA
    graphs (``mode="reduce-overhead"``); their outputs live in buffers the next replay overwrites, so each call marks
    a new step and returns copies. The pipeline renders with it in the calling thread (:meth:`thread_safe`)."""

    def __init__(self, model: LivePortrait, backend: str) -> None:
        self.backend, self.graphs = backend, False
        self.modules = {"motion": model.motion_extractor, "appearance": model.appearance_encoder,
                        "render": _Render(model).eval()}  # fmt: skip
        self.compiled: dict[str, Callable] = {}

    def thread_safe(self, device: torch.device) -> bool:
        """Whether the networks may run in another thread than the caller's: never (torch.compile recompiling for a
        new batch size in a worker thread can crash, and CUDA graphs replay from the thread that captured them)."""
        return False

    def _call(self, name: str, *inputs: torch.Tensor) -> Any:
        if name not in self.compiled:
            self.graphs = inputs[0].is_cuda and self.backend == "inductor"
            mode = "reduce-overhead" if self.graphs else None
            self.compiled[name] = torch.compile(self.modules[name], backend=self.backend, mode=mode, dynamic=False)
        if not self.graphs:
            return self.compiled[name](*inputs)
        torch.compiler.cudagraph_mark_step_begin()
        out = self.compiled[name](*inputs)
        return {k: v.clone() for k, v in out.items()} if isinstance(out, dict) else out.clone()

    def motion(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self._call("motion", images)

    def appearance(self, images: torch.Tensor) -> torch.Tensor:
        return self._call("appearance", images)

    def render(self, feature: torch.Tensor, x_source: torch.Tensor, x_driven: torch.Tensor) -> torch.Tensor:
        return self._call("render", feature, x_source, x_driven)


def default_onnx_folder(weights: str | os.PathLike[str], size: str = "official") -> Path:
    """Where ``pctalk export-onnx`` writes by default: ``WEIGHTS/liveportrait_onnx`` (``_tiny`` for tiny sizes)."""
    return Path(weights) / ("liveportrait_onnx" if size == "official" else f"liveportrait_onnx_{size}")


def export_onnx_command(weights: Path, out: Path | None = None, liveportrait_size: str = "official") -> int:
    """Export LivePortrait's networks to ONNX for ``pctalk generate --backend onnx``.

    Args:
        weights: the weights root (with liveportrait/, as `pctalk weights check` lists it).
        out: the folder to write (default: WEIGHTS/liveportrait_onnx, where generate looks).
        liveportrait_size: official, or tiny (the test sizes).
    """
    from pctalk.keypoints.config import LivePortraitConfig
    from pctalk.keypoints.liveportrait import load_liveportrait

    if liveportrait_size not in ("official", "tiny"):
        raise ValueError(f"liveportrait_size must be official or tiny, got {liveportrait_size!r}")
    config = LivePortraitConfig.tiny() if liveportrait_size == "tiny" else LivePortraitConfig()
    model = load_liveportrait(weights, config=config, require_stitching=False)
    folder = export_onnx(model, out or default_onnx_folder(weights, liveportrait_size))
    print(f"wrote {', '.join(FILES.values())} and manifest.json to {folder}")
    return 0
