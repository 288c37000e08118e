"""LAC speed on CPU at the paper's sizes (d 512, 1 layer, 4 heads, FF 1024).

- ``generate`` for 10 s of audio (250 frames at 25 fps), batch 1: with cached keys and values vs recomputing the
  whole sequence at every step (FaceFormer's way). Target: >= 1000 frames/s cached.
- Training steps per second at the paper's window (50 frames), batch 16: from stored audio features, and from mel
  windows through the frozen published-size audio encoder.

    python benchmarks/bench_lac.py
"""

from __future__ import annotations

import torch

from common import machine, timeit
from pctalk.models import ExpressionPredictor
from pctalk.tasks import ExpressionTask
from pctalk.tasks.expression import audio_features
from pctalk.tasks.losses import masked_l1, velocity_l1


def main() -> None:
    torch.manual_seed(0)
    print(f"machine: {machine()}")
    model = ExpressionPredictor(n_styles=100).eval()
    torch.nn.init.normal_(model.vertice_map_r.weight, std=0.01)
    audio, style = torch.randn(1, 250, 512), torch.tensor([3])
    for cached in (True, False):
        seconds = timeit(lambda cached=cached: model.generate(audio, style, use_cache=cached), repeats=3)
        print(f"generate, 250 frames, {'cached' if cached else 'naive (recompute)'}: {250 / seconds:8.0f} frames/s")

    task = ExpressionTask(n_styles=100, audio_encoder_width=1.0)
    task.audio_encoder.requires_grad_(False).eval()  # as with a pretrained, frozen encoder
    optimiser = task.configure_optimizers()
    task.predictor.train()
    b, w = 16, 50
    batches = {
        "stored audio features": {"audio_feat": torch.randn(b, w, 512)},
        "mel windows + frozen audio encoder": {"mel": torch.randn(b, w, 1, 80, 16)},
    }
    for name, inputs in batches.items():
        batch = {**inputs, "target": torch.randn(b, w, 18) * 0.01, "mask": torch.ones(b, w, dtype=torch.bool)}
        batch["style"] = torch.randint(0, 100, (b,))

        def step(batch=batch) -> None:
            with torch.no_grad():
                feat = audio_features(batch, task.audio_encoder)
            pred = task.predictor(feat, batch["style"], batch["target"])
            loss = masked_l1(pred, batch["target"], batch["mask"]) + velocity_l1(pred, batch["target"], batch["mask"])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()

        seconds = timeit(step, repeats=5)
        print(f"training step, batch {b} x {w} frames, {name}: {1 / seconds:6.2f} steps/s")


if __name__ == "__main__":
    main()
