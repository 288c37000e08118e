"""Eval streams a clip through every metric in chunks: the scores equal those of the whole clip held in memory, and
peak host memory does not grow with the clip's length."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from eval.clip_scorer import score_clip
from eval.runner import EvalClip, MetricSettings
from eval_networks import save_eval_weights
from pctalk.audio.io import load_audio
from pctalk.media import VideoReader, write_video
from raw_media import SENTENCES, scene_frames, scene_video, speech

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
METRICS = ["lse", "fid", "niqe", "fvd", "acc_emo", "efid"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("weights")
    save_eval_weights(root, scrfd=True)
    return root


def _states(metric: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: getattr(metric, name) for name in metric._defaults}


def test_a_streamed_landscape_clip_scores_what_the_whole_clip_scores(weights: Path, tmp_path: Path) -> None:
    """Every metric's state after one streamed pass (chunks of 7 frames, FID/NIQE/E-FID on every 3rd frame) equals
    its state after the whole clip in one array through the metrics' own ``update`` / ``score`` / ``predict``; LSE
    and Acc_emo cut the face from the 16:9 frames through the streamed face track."""
    video = scene_video(tmp_path / "gen.mp4", SENTENCES[0], seed=0)
    reference = scene_video(tmp_path / "real.mp4", SENTENCES[1], seed=1)
    settings = MetricSettings(metrics=METRICS, weights_root=weights, frame_stride=3,
                              fvd_protocol="stylegan-v-all-clips")  # fmt: skip
    streamed, whole = settings.build(), settings.build()
    audio = load_audio(video)
    score = score_clip(streamed, VideoReader(video).chunks(7), audio, real=False,
                       reference=VideoReader(reference).chunks(5), stride=3, target_emotion="happy")  # fmt: skip
    assert all(m._update_count == 0 for m in streamed.values())  # nothing counted before the commit
    score.commit()

    frames = np.concatenate(list(VideoReader(video).chunks()))
    real = np.concatenate(list(VideoReader(reference).chunks()))
    assert score.frames == len(frames) and score.resolution == "384x216" and score.frames_per_metric == len(frames[::3])
    assert score.fvd_clips == len(frames) // 16
    whole["lse"].add(whole["lse"].score(frames, audio))
    whole["acc_emo"].add(whole["acc_emo"].predict(frames), "happy")
    for side, is_real in ((frames, False), (real, True)):
        whole["fid"].update(torch.from_numpy(side[::3]).permute(0, 3, 1, 2), real=is_real)
        whole["efid"].update(side[::3], real=is_real)
        whole["fvd"].update([side], real=is_real)
    whole["niqe"].update(frames[::3])
    for name in METRICS:
        ours, theirs = _states(streamed[name]), _states(whole[name])
        for key in theirs:
            torch.testing.assert_close(ours[key], theirs[key], rtol=1e-5, atol=1e-4, msg=f"{name}.{key}")
    assert streamed["lse"].lse_c_sum == whole["lse"].lse_c_sum  # bit for bit
    assert float(streamed["fid"].real_n) == len(real[::3]) and float(streamed["efid"].fake_n) > 0


def _traced_peak(metrics: torch.nn.Module, video: Path) -> tuple[int, int]:
    """Frames scored and the peak of the host memory NumPy (the frames, crops, features and buffers) allocated
    while ``video`` was scored against itself as reference (tracemalloc traces NumPy's allocations)."""
    clip = EvalClip("k", "hdtf", "A", "neutral", video)
    tracemalloc.start()
    try:
        score = score_clip(metrics, clip.chunks(32), clip.audio_track(), real=False, reference=clip.chunks(32),
                           stride=25, target_emotion="neutral")  # fmt: skip
        score.commit()
        return score.frames, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _long_video(path: Path, seconds: float) -> Path:
    """A 640x360 talking-head clip of ``seconds``, written as it is made (the test never holds it whole)."""
    wav = speech(" ".join(SENTENCES[:3]))
    loop = scene_frames(wav, int(len(wav) / 16000 * 25), width=640, height=360, fps=25, head=200)
    n = int(seconds * 25)
    audio = wav.repeat(int(np.ceil(seconds * 16000 / len(wav))))[: int(seconds * 16000)]
    return write_video(path, (loop[i % len(loop)] for i in range(n)), fps=25, audio=audio)


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_the_clip(weights: Path, tmp_path: Path) -> None:
    """Every metric on a 2 s and an 8 s clip at 640x360 (the long one whole: 132 MiB of frames, 29 MiB of 224x224
    face crops; the short one is long enough for the steady state of a full chunk and the buffers): the long clip's
    peak host memory is the short one's within 10 MiB (the audio's MFCC, computed on the
    whole track as syncnet_python does: about 0.5 MiB a second), and a fraction of the clip held whole."""
    metrics = MetricSettings(metrics=METRICS, weights_root=weights, frame_stride=25).build()
    metrics["lse"].net, metrics["fvd"].detector  # loaded before tracing
    short = _traced_peak(metrics, _long_video(tmp_path / "short.mp4", 2))
    long = _traced_peak(metrics, _long_video(tmp_path / "long.mp4", 8))
    assert (short[0], long[0]) == (50, 200)
    assert long[1] - short[1] < 10 * 2**20, (short, long)
    assert all(np.isfinite(float(v)) for m in metrics.values() for v in np.atleast_1d(_value(m)))


def _value(metric: torch.nn.Module) -> list[float]:
    value = metric.compute()
    return [float(v) for v in value.values()] if isinstance(value, dict) else [float(value)]


def test_full_frames_with_lse_crop_frame_are_a_configuration_error(weights: Path, tmp_path: Path) -> None:
    """``lse_crop: frame`` on 16:9 frames would squeeze them to 224x224: the run stops with the fix (a ValueError the
    runner does not skip), where a clip without a face is a skipped clip (LSEInputError)."""
    from eval.metrics.lse import LSEInputError

    video = scene_video(tmp_path / "gen.mp4", SENTENCES[2])
    metrics = MetricSettings(metrics=["lse"], weights_root=weights, lse_crop="frame").build()
    with pytest.raises(ValueError, match="use lse_crop: track") as err:
        score_clip(metrics, VideoReader(video).chunks(32), load_audio(video), real=False)
    assert not isinstance(err.value, LSEInputError)
    grey = write_video(tmp_path / "grey.mp4", np.full((30, 216, 384, 3), 128, np.uint8), audio=load_audio(video))
    syncnet = weights / "syncnet" / "syncnet_v2.model"  # no SCRFD under tmp_path: the Haar cascade finds no face
    metrics = MetricSettings(metrics=["lse"], weights_root=tmp_path, syncnet=syncnet, lse_crop="track").build()
    with pytest.raises(LSEInputError, match="no face"):
        score_clip(metrics, VideoReader(grey).chunks(32), load_audio(grey), real=False)
