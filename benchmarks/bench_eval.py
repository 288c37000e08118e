"""Evaluation cost: seconds per 10 s talking video (250 frames) for each metric, and LSE's offset search against
syncnet_python's per-window loop.

Networks are the metrics' own at their published sizes with random weights (SyncNet v2, pytorch-fid's Inception,
Emotion-FAN ResNet-18, Deep3DFaceRecon ResNet-50). FVD runs the real ``i3d_torchscript.pt`` when given (``--i3d
PATH``), else a random-weight Inception-I3D of the published architecture scripted to TorchScript
(``i3d_architecture.py``), loaded through the same loader. Frames: the astronaut photo with a mouth moving to eSpeak
speech, 512×512 (224×224 for LSE).

    python benchmarks/bench_eval.py [--seconds 10] [--i3d i3d_torchscript.pt]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path
from unittest import mock

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from skimage import data

from common import machine, timeit
from eval.metrics.fvd import video_clips
from eval.metrics.lse import SyncStream, mfcc, offset_distances, to_int16
from eval.networks.deep3dfacerecon import ReconNet, align_face
from eval.networks.emotion_fan import EmotionFAN, preprocess_faces
from eval.networks.syncnet_v2 import SyncNetV2
from i3d_architecture import save_random_i3d
from pctalk.audio.tts import synthesize

TEXT = "The duck ate too many bees. Then it flew away over the quiet lake while the children laughed at the wind."


def per_window_loop(feat_v: torch.Tensor, feat_a: torch.Tensor, vshift: int = 15) -> torch.Tensor:
    """The way syncnet_python's ``calc_pdist`` works, at its cost: per window, a copy of the visual embedding repeated
    ``2·vshift + 1`` times and one ``pairwise_distance`` call against the zero-padded audio embeddings around it."""
    width = 2 * vshift + 1
    zeros = feat_a.new_zeros(vshift, feat_a.shape[1])
    padded = torch.cat([zeros, feat_a, zeros])
    rows = [F.pairwise_distance(v[None].repeat(width, 1), padded[i : i + width]) for i, v in enumerate(feat_v)]
    return torch.stack(rows)


def once(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--i3d", type=Path, default=None)
    args = parser.parse_args()
    torch.manual_seed(0)
    n = int(args.seconds * 25)
    speech = synthesize(TEXT).wav
    wav = speech.repeat(int(args.seconds * 16000 // len(speech)) + 1)[: int(args.seconds * 16000)]
    face = cv2.resize(data.astronaut(), (512, 512))
    frames = np.repeat(face[None], n, axis=0)
    for i in range(n):  # a moving mouth
        cv2.ellipse(frames[i], (223, 161), (15, 2 + 8 * (i % 5)), 0, 0, 360, (40, 10, 10), -1)
    print(f"machine: {machine()}")
    print(f"video: {args.seconds:.0f} s, {n} frames\n")
    rows = []

    net = SyncNetV2().eval()
    small = np.stack([cv2.resize(f, (224, 224)) for f in frames])[..., ::-1].copy()
    samples = to_int16(wav)
    t_mfcc = once(lambda: mfcc(samples))

    def lse_stream() -> None:
        stream = SyncStream(net, samples)
        for first in range(0, n, 32):  # as the eval runner feeds it
            stream.push(small[first : first + 32])
        stream.finish()

    t_embed = once(lse_stream)
    g = torch.Generator().manual_seed(0)  # the offset search's cost does not depend on the embeddings' values
    feat_v, feat_a = torch.randn(n - 5, 1024, generator=g), torch.randn(n - 5, 1024, generator=g)
    t_vec = timeit(lambda: offset_distances(feat_v, feat_a, 15), repeats=50)
    t_loop = timeit(lambda: per_window_loop(feat_v, feat_a, 15), repeats=50)
    assert torch.equal(offset_distances(feat_v, feat_a, 15), per_window_loop(feat_v, feat_a, 15))
    rows += [
        ("LSE: MFCC", t_mfcc),
        ("LSE: SyncNet + offset search, streamed", t_embed),
        ("LSE: offset search, batched (ours)", t_vec),
        ("LSE: offset search, per-window loop (syncnet_python)", t_loop),
    ]

    from pytorch_fid import inception

    from eval.metrics.fid import inception_features

    with (
        mock.patch.object(inception, "load_state_dict_from_url", lambda *a, **k: None),
        mock.patch.object(torch.nn.Module, "load_state_dict", lambda *a, **k: None),
    ):  # random weights: skip the file
        fid_net = inception.InceptionV3([3]).eval()
    images = torch.from_numpy(frames).permute(0, 3, 1, 2)
    rows.append(("FID: Inception pool3 features, one video", once(
        lambda: [inception_features(fid_net, b) for b in images.split(50)])))  # fmt: skip

    from eval.metrics.niqe import niqe

    rows.append(("NIQE, every frame (512x512)", once(lambda: [niqe(f) for f in frames])))

    fan = EmotionFAN(8).eval()

    def acc_emo() -> None:
        with torch.inference_mode():
            parts = [fan.frame_features(chunk) for chunk in preprocess_faces(frames).split(64)]
            fan.video_logits(torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))

    rows.append(("Acc_emo: Emotion-FAN, every frame", once(acc_emo)))

    recon = ReconNet().eval()
    lm3d = np.array([[-0.31, 0.29, 0.13], [0.31, 0.29, 0.13], [0.0, 0.0, 0.6], [-0.25, -0.35, 0.2], [0.25, -0.35, 0.2]])
    lm5 = np.array([[185.0, 110.0], [235.0, 105.0], [212.0, 140.0], [190.0, 170.0], [232.0, 167.0]])

    def efid() -> None:
        crops = np.stack([align_face(f, lm5, lm3d) for f in frames])
        with torch.inference_mode():
            for b in torch.from_numpy(crops).permute(0, 3, 1, 2).float().div(255).split(50):
                recon(b)

    rows.append(("E-FID: alignment + Deep3DFaceRecon, every frame", once(efid)))

    from eval.metrics.fvd import FVD, PROTOCOLS

    with tempfile.TemporaryDirectory() as tmp:
        i3d = args.i3d or save_random_i3d(Path(tmp) / "i3d_torchscript.pt")
        which = "i3d_torchscript.pt" if args.i3d else "random-weight I3D"
        for name in ("stylegan-v", "stylegan-v-all-clips"):
            fvd = FVD(i3d, protocol=name)
            clips = len(video_clips(frames, PROTOCOLS[name]))
            fvd.update([frames[:16]], real=True)  # load and warm up the detector
            seconds = once(lambda fvd=fvd: fvd.update([frames], real=False))
            rows.append((f"FVD[{name}]: {which}, {clips} clip(s)", seconds))

    print(f"{'stage':<58} {'s per video':>12}")
    for name, seconds in rows:
        print(f"{name:<58} {seconds:12.4f}")
    print("\nFID's 2048-d Fréchet distance: symmetric eigendecompositions (ours) vs pytorch-fid's scipy sqrtm:")
    from pytorch_fid.fid_score import calculate_frechet_distance

    from eval.metrics.frechet import frechet_distance

    rng = np.random.default_rng(0)
    for n1, n2 in ((3000, 2500), (13, 12)):  # full rank; fewer frames than dimensions
        a, b = np.abs(rng.normal(size=(n1, 2048))) ** 1.5, np.abs(rng.normal(size=(n2, 2048))) + 0.1
        stats = (a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
        start = time.perf_counter()
        ours = frechet_distance(*stats)
        t_ours = time.perf_counter() - start
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start = time.perf_counter()
            reference = calculate_frechet_distance(*stats)
            t_ref = time.perf_counter() - start
        print(f"  {n1} vs {n2} frames: {t_ours:.2f} s vs {t_ref:.2f} s, {t_ref / t_ours:.1f}x, "
              f"relative difference {abs(ours - reference) / abs(reference):.1e}")  # fmt: skip
    print("\noffset search (vshift 15), batched per offset vs syncnet_python's per-window loop, bit-identical:")
    print(f"  {n - 5} windows: {t_vec * 1e3:.2f} ms vs {t_loop * 1e3:.2f} ms, {t_loop / t_vec:.1f}x")
    g = torch.Generator().manual_seed(0)
    for windows in (1495, 8995):  # 60 s and 6 min
        fv, fa = torch.randn(windows, 1024, generator=g), torch.randn(windows, 1024, generator=g)
        fast = timeit(lambda fv=fv, fa=fa: offset_distances(fv, fa, 15))
        slow = timeit(lambda fv=fv, fa=fa: per_window_loop(fv, fa, 15))
        print(f"  {windows} windows: {fast * 1e3:.2f} ms vs {slow * 1e3:.2f} ms, {slow / fast:.1f}x")


if __name__ == "__main__":
    main()
