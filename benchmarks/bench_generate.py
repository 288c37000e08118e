"""Generation speed on CPU: the motion stage (audio -> driven keypoints, every control on) at the paper's sizes,
and the renderer (LivePortrait at the official sizes). On a GPU (when one is present) the same script reports the
end-to-end fps at 512x512.

    python benchmarks/bench_generate.py [--render-frames 4]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from common import machine, timeit
from pctalk.audio.encoder import AudioEncoder, encode_windows
from pctalk.audio.mel import audio_windows
from pctalk.audio.tts import synthesize
from pctalk.checkpoints import EMCStage, LACStage
from pctalk.inference import Controls, EmotionControl, TalkingFacePipeline
from pctalk.inference.pipeline import SourceFace, _default_motion
from pctalk.keypoints.liveportrait import build_liveportrait
from pctalk.models import ExpressionPredictor, LipRefiner
from pctalk.models.emotion_predictor import EmotionPredictor

TEXT = "The duck ate too many bees. Then it flew away over the lake, singing loudly, while the children counted clouds."


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--render-frames", type=int, default=4)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"machine: {machine()}")
    encoder = AudioEncoder()
    lac = LACStage(ExpressionPredictor(n_styles=100), encoder, LipRefiner())
    emc = EMCStage(EmotionPredictor(n_styles=100), encoder)
    for module in (lac.predictor, lac.refiner, emc.predictor, encoder):
        module.eval()
    pipelines = {
        p: TalkingFacePipeline(lac, emc, device="cpu", progress=False, audio_precision=p) for p in ("fp32", "bf16")
    }
    wav = synthesize(TEXT).wav.repeat(3)[: 16000 * 10]  # 10 s
    source = SourceFace(np.zeros((1, 256, 256, 3), np.uint8), [None], _default_motion(torch.device("cpu")), None, False)
    controls = Controls(
        lip_scale=1.2, loudness_scale=True, style_edits={"duck": 1.5, "bee": 0.8},
        emotions=[EmotionControl("happy", "lips", 0.6), EmotionControl("sad", "upper_face", 0.4)],
    )  # fmt: skip
    n = 250
    windows = audio_windows(wav)  # the motion stage's floor: the published audio encoder alone, one window a frame
    seconds = timeit(lambda: encode_windows(encoder, windows), repeats=3)
    print(f"audio encoder alone (fp32, {len(windows)} mel windows, batches of 128):       {n / seconds:5.0f} frames/s")
    for precision, pipeline in pipelines.items():
        seconds = timeit(lambda pipeline=pipeline: pipeline.motion(wav, source, controls), repeats=3)
        print(
            f"motion stage ({precision} audio), LAC + refiner + 2 emotions + lip controls: {n / seconds:5.0f} frames/s"
        )
        seconds = timeit(lambda pipeline=pipeline: pipeline.motion(wav, source, Controls()), repeats=3)
        print(
            f"motion stage ({precision} audio), LAC + refiner only:                         {n / seconds:5.0f} frames/s"
        )

    pipeline = pipelines["fp32"]
    for chunk_ms in (40, 200, 640):  # streaming: audio pushed as it would arrive, motion blocks out
        step = 16 * chunk_ms
        for _ in range(2):  # the second run is timed (the first warms the allocator)
            engine = pipeline.motion_stream(source, Controls(causal_smoothing=True))
            pushes, first, start = [], None, time.perf_counter()
            for i in range(0, len(wav), step):
                t0 = time.perf_counter()
                blocks = engine.push(wav[i : i + step])
                pushes.append(time.perf_counter() - t0)
                if blocks and first is None:  # audio time until the block's audio came + its compute
                    first = (i + step) / 16000 + pushes[-1]
            engine.close()
            total = time.perf_counter() - start
        print(f"streaming, {chunk_ms:3d} ms chunks, LAC + refiner: first frame after {1000 * first:5.0f} ms, "
              f"per chunk median {1000 * float(np.median(pushes)):5.1f} ms / max {1000 * max(pushes):5.0f} ms, "
              f"real-time factor {total / (len(wav) / 16000):.3f}")  # fmt: skip
    if args.render_frames == 0:
        return
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    lp = build_liveportrait().to(device)
    images = torch.rand(1, 3, 256, 256, device=device)
    with torch.no_grad():
        motion = lp.extract_motion(images)
        feature = lp.appearance(images)
        x_s = motion.keypoints()
        k = args.render_frames
        batch = (feature.expand(k, -1, -1, -1, -1), x_s.expand(k, -1, -1), x_s.expand(k, -1, -1) + 0.01)
        seconds = timeit(lambda: lp.warp_decode(*batch), repeats=2)
    print(f"renderer (stitching excluded), official sizes, batch {k}, {device.type}: {k / seconds:6.2f} frames/s")
    if device.type == "cuda":
        lp.set_precision("fp16")
        start = time.perf_counter()
        with torch.no_grad():
            for _ in range(10):
                lp.warp_decode(*batch)
        torch.cuda.synchronize()
        print(f"renderer fp16 on GPU: {10 * k / (time.perf_counter() - start):6.1f} frames/s")


if __name__ == "__main__":
    main()
