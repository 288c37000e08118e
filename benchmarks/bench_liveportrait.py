"""LivePortrait at the official sizes: ms per frame and peak memory of each stage, batch 1 and 8.

Stages: motion extraction (M), appearance encoding (F), render (W + G, 512x512 out), stitching. Each configuration
runs in its own process so the peak memory (RSS on CPU, allocator peak on GPU) is its own. Random weights: speed
does not depend on them.

    python benchmarks/bench_liveportrait.py                        # fp32, batch 1 and 8
    python benchmarks/bench_liveportrait.py --precision bf16 --channels-last --compile
    python benchmarks/bench_liveportrait.py --reference /path/to/LivePortrait   # also time the public code
    python benchmarks/bench_liveportrait.py --stage render --backend torch onnx compile --reference /path/to/LP

``--backend`` times each of pctalk's backends (:mod:`pctalk.keypoints.backends`) side by side, with the ratio to the
public code's time when ``--reference`` is given (the ONNX export at the official sizes is made once, into
``--onnx-dir``). Every render that computes differently from eager fp32 (a backend, channels-last, compile, lower
precision) prints its largest difference from the eager fp32 render of the same inputs.

``--reference`` takes a checkout of KwaiVGI/LivePortrait (not part of pctalk) and times its modules on the same
inputs and weights, for the "no slower than the public implementation" check.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

from common import machine, peak_rss_mib, timeit

STAGES = ("motion", "appearance", "render", "stitch")


def _reference_modules(path: str, model):
    """The public implementation's networks with pctalk's (random) weights loaded into them."""
    sys.path.insert(0, path)
    from src.modules.appearance_feature_extractor import AppearanceFeatureExtractor
    from src.modules.motion_extractor import MotionExtractor
    from src.modules.spade_generator import SPADEDecoder
    from src.modules.warping_network import WarpingNetwork

    m = MotionExtractor(num_kp=21, backbone="convnextv2_tiny")
    f = AppearanceFeatureExtractor(3, 64, 2, 512, 32, 16, 6)
    dense = {"block_expansion": 32, "max_features": 1024, "num_blocks": 5, "reshape_depth": 16, "compress": 4}
    w = WarpingNetwork(21, 64, 512, 2, 32, estimate_occlusion_map=True, dense_motion_params=dense)
    g = SPADEDecoder(upscale=2, max_features=512, block_expansion=64, out_channels=64, num_down_blocks=2)
    for ref, ours in (
        (m, model.motion_extractor),
        (f, model.appearance_encoder),
        (w, model.warping),
        (g, model.decoder),
    ):
        ref.load_state_dict(ours.state_dict())
        ref.to(model.decoder.fc.weight.device).eval()
    return m, f, w, g


def worker(args: argparse.Namespace) -> dict:
    from pctalk.keypoints.liveportrait import build_liveportrait

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    model = build_liveportrait().to(device)
    b = args.batch
    images = torch.rand(b, 3, 256, 256, device=device)
    # the render compared with eager fp32 when anything changes how it computes
    changed = args.backend != "torch" or args.channels_last or args.compile or args.precision != "fp32"
    with torch.no_grad():
        motion = model.extract_motion(images)
        feature = model.appearance(images)
        x_s = motion.keypoints()
        x_d = x_s + 0.01
        eager = model.warp_decode(feature, x_s, x_d) if args.stage == "render" and changed and not args.public else None
        if args.channels_last:
            model.to_channels_last()
        model.set_precision(args.precision)
        if args.public:
            m, f, w, g = _reference_modules(args.reference, model)
            fns = {
                "motion": lambda: m(images),
                "appearance": lambda: f(images),
                "render": lambda: g(w(feature, kp_driving=x_d, kp_source=x_s)["out"]),
                "stitch": lambda: model.stitch(x_s, x_d),
            }
        else:
            if args.backend == "onnx":
                from pctalk.keypoints.backends import export_onnx, use_backend

                if not (Path(args.onnx_dir) / "manifest.json").is_file():
                    export_onnx(model, args.onnx_dir)
                use_backend(model.to(device), "onnx", args.onnx_dir)
            elif args.backend == "compile":
                from pctalk.keypoints.backends import use_backend

                use_backend(model, "compile")
            render = model.warp_decode
            if args.compile:
                compiled = torch.compile(lambda feat, a, c: model.warp_decode(feat, a, c))
                render = compiled
            fns = {
                "motion": lambda: model.extract_motion(images),
                "appearance": lambda: model.appearance(images),
                "render": lambda: render(feature, x_s, x_d),
                "stitch": lambda: model.stitch(x_s, x_d),
            }
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        seconds = timeit(fns[args.stage], repeats=args.repeats, warmup=1)
        diff = None if eager is None else (fns["render"]() - eager).abs().max().item()
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else peak_rss_mib()
    return {"ms_per_frame": 1000 * seconds / b, "peak_mib": peak, "max_diff": diff}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--stage", choices=STAGES, nargs="+", default=list(STAGES))
    parser.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default="fp32")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile the render")
    parser.add_argument("--reference", help="a KwaiVGI/LivePortrait checkout to time the public implementation")
    parser.add_argument("--backend", nargs="+", default=["torch"], choices=("torch", "onnx", "compile"),
                        help="pctalk backends to time, side by side")  # fmt: skip
    parser.add_argument("--onnx-dir", default="/tmp/pctalk_bench_liveportrait_onnx")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--public", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.batch, args.stage, args.backend = args.batch[0], args.stage[0], args.backend[0]
        print(json.dumps(worker(args)))
        return
    options = f"precision={args.precision} channels_last={args.channels_last} compile={args.compile}"
    print(f"machine: {machine()}")
    print(f"LivePortrait official sizes, {options}")
    print(f"{'stage':<12}{'batch':>6}{'code':>10}{'ms/frame':>12}{'fps':>9}{'peak MiB':>11}{'x public':>10}"
          f"{'max |diff| vs eager':>21}")  # fmt: skip
    impls = (["public"] if args.reference else []) + args.backend
    for stage in args.stage:
        for batch in args.batch:
            public = None
            for impl in impls:
                cmd = [sys.executable, __file__, "--worker", "--batch", str(batch), "--stage", stage]
                cmd += ["--precision", args.precision, "--repeats", str(args.repeats if batch == 1 else 2)]
                cmd += ["--channels-last"] * args.channels_last + ["--compile"] * args.compile
                cmd += ["--reference", args.reference] if args.reference else []
                cmd += ["--backend", impl if impl != "public" else "torch", "--onnx-dir", args.onnx_dir]
                cmd += ["--public"] * (impl == "public")
                run = subprocess.run(cmd, capture_output=True, text=True, check=True)
                r = json.loads(run.stdout.strip().splitlines()[-1])
                ms = r["ms_per_frame"]
                public = ms if impl == "public" else public
                ratio = f"{ms / public:.2f}x" if public else ""
                diff = "" if r["max_diff"] is None else f"{r['max_diff']:.1e}"
                print(f"{stage:<12}{batch:>6}{impl:>10}{ms:>12.1f}{1000 / ms:>9.2f}{r['peak_mib']:>11.0f}{ratio:>10}"
                      f"{diff:>21}")  # fmt: skip


if __name__ == "__main__":
    main()
