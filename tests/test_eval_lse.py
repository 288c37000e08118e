"""LSE-C / LSE-D against a slow computation written from syncnet_python's protocol (``SyncNetInstance.evaluate``:
its windows, MFCC columns, batches and per-window distance loop), with random SyncNet weights saved as
``syncnet_v2.model`` is (a plain state dict from before ``num_batches_tracked``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import python_speech_features
import torch
import torch.nn.functional as F

from eval.metrics.lse import (
    LSE,
    FaceTrack,
    LSEInputError,
    SyncStream,
    _face_boxes,
    face_detector,
    lse_frames,
    lse_video,
    offset_distances,
    to_int16,
    track_crop,
)
from eval.networks.syncnet_v2 import SyncNetV2, load_syncnet_v2
from pctalk.audio.io import load_audio
from pctalk.media import VideoReader, write_video
from random_weights import seeded_state_dict
from raw_media import speech, talking_frames, talking_video


@pytest.fixture(scope="module")
def syncnet_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    template = SyncNetV2().state_dict()
    state = seeded_state_dict(template, seed=3)
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    path = tmp_path_factory.mktemp("syncnet") / "syncnet_v2.model"
    torch.save(state, path)
    return path


def per_window_distances(feat_v: torch.Tensor, feat_a: torch.Tensor, vshift: int) -> torch.Tensor:
    """``(N, 2·vshift + 1)``: the reference protocol's slow way, one ``F.pairwise_distance`` call per window between
    that window's visual embedding and the audio embeddings ``i − vshift … i + vshift`` (zeros past the ends)."""
    width = 2 * vshift + 1
    zeros = feat_a.new_zeros(vshift, feat_a.shape[1])
    padded = torch.cat([zeros, feat_a, zeros])
    return torch.stack([F.pairwise_distance(v.expand(width, -1), padded[i : i + width]) for i, v in enumerate(feat_v)])


def reference_scores(net: SyncNetV2, frames_bgr: list[np.ndarray], audio: np.ndarray, vshift: int = 15):
    """LSE-C, LSE-D, offset and mean distances of one clip, computed from syncnet_python's protocol as its README and
    ``SyncNetInstance.evaluate`` define it: float32 BGR frames and ``python_speech_features`` MFCC (13 × M, 100 Hz),
    ``min(T, ⌊N / 640⌋) − 5`` windows embedded in batches of 20 (frames ``v … v+4``, MFCC columns ``4v … 4v+19``),
    one distance call per window, then mean per offset; LSE-D is the minimum, LSE-C the median minus the minimum."""
    video = torch.tensor(np.stack(frames_bgr), dtype=torch.float32).permute(3, 0, 1, 2)  # (3, T, H, W)
    coefficients = torch.tensor(np.asarray(python_speech_features.mfcc(audio, 16000)).T, dtype=torch.float32)
    windows = min(len(frames_bgr), len(audio) // 640) - 5
    visual, sound = [], []
    with torch.no_grad():
        for first in range(0, windows, 20):
            batch = range(first, min(windows, first + 20))
            visual.append(net.forward_lip(torch.stack([video[:, v : v + 5] for v in batch])))
            sound.append(net.forward_aud(torch.stack([coefficients[None, :, 4 * v : 4 * v + 20] for v in batch])))
    mdist = per_window_distances(torch.cat(visual), torch.cat(sound), vshift).mean(0)
    best = int(torch.argmin(mdist))
    return float(torch.median(mdist) - mdist[best]), float(mdist[best]), vshift - best, mdist.numpy()


def test_lse_equals_syncnet_python(syncnet_file: Path) -> None:
    net = load_syncnet_v2(syncnet_file)
    assert not net.training
    wav = speech("The duck ate too many bees before lunch.")[: int(1.3 * 16000)]
    frames = talking_frames(wav, 32, size=224)
    audio = to_int16(wav)
    conf, dist, offset, mdist = reference_scores(net, [f[..., ::-1] for f in frames], audio)
    ours = lse_frames(net, frames, wav, vshift=15)
    np.testing.assert_allclose(ours.mdist, mdist, rtol=1e-5, atol=1e-6)
    assert ours.lse_c == pytest.approx(conf, rel=1e-4, abs=1e-5)
    assert ours.lse_d == pytest.approx(dist, rel=1e-5)
    assert ours.offset == offset
    assert ours.mdist.shape == (31,)


def test_offset_distances_are_the_per_window_loop() -> None:
    g = torch.Generator().manual_seed(0)
    fv, fa = torch.randn(600, 16, generator=g), torch.randn(600, 16, generator=g)  # three blocks of windows
    for vshift in (0, 3, 15, 50):
        loop = per_window_distances(fv, fa, vshift)
        assert torch.equal(offset_distances(fv, fa, vshift), loop)  # bit-identical


def test_lse_video_reads_the_file_it_scores(syncnet_file: Path, tmp_path: Path) -> None:
    wav = speech("Then it flew away over the quiet lake.")[: int(1.2 * 16000)]
    video = write_video(tmp_path / "face.mp4", talking_frames(wav, 30, size=224), audio=wav)
    result = lse_video(video, syncnet_file)
    frames = np.concatenate(list(VideoReader(video).chunks()))
    again = lse_frames(load_syncnet_v2(syncnet_file), frames, load_audio(video))
    assert (result.lse_c, result.lse_d, result.offset) == (again.lse_c, again.lse_d, again.offset)
    assert np.isfinite(result.lse_c) and result.lse_d > 0


def test_track_crop_is_syncnet_pythons_crop() -> None:
    frames = np.random.default_rng(0).integers(0, 255, (15, 200, 300, 3), dtype=np.uint8)
    box = np.array([100.0, 50.0, 160.0, 130.0])  # 60 x 80: half size 40
    crops = track_crop(frames, np.repeat(box[None], 15, 0))
    bs, cs = 40.0, 0.4
    pad = int(bs * (1 + 2 * cs))
    padded = np.pad(frames[7], ((pad, pad), (pad, pad), (0, 0)), constant_values=110)
    my, mx = 90 + pad, 130 + pad
    face = padded[int(my - bs) : int(my + bs * (1 + 2 * cs)), int(mx - bs * (1 + cs)) : int(mx + bs * (1 + cs))]
    import cv2

    np.testing.assert_array_equal(crops[7], cv2.resize(face, (224, 224)))


def test_the_face_track_streamed_in_chunks_is_the_whole_videos_track() -> None:
    """FaceTrack's crops, pushed in chunks of any size, equal track_crop over the whole video's boxes: the median
    filter's window and zero padding at both ends, the box held over frames without a face (grey frames here), and
    the first box taken back for frames before the first detection."""
    wav = speech("The duck ate too many bees before lunch.")[: int(1.2 * 16000)]
    frames = talking_frames(wav, 30, size=256)
    frames = np.pad(frames, ((0, 0), (10, 30), (80, 0), (0, 0)), constant_values=90)  # off-centre, landscape
    frames[:3] = frames[14:17] = 128  # no face in these frames
    whole = track_crop(frames, _face_boxes(frames, None))
    for size in (1, 7, 30):
        track = FaceTrack(face_detector(None))
        crops = [track.push(frames[i : i + size]) for i in range(0, len(frames), size)] + [track.finish()]
        np.testing.assert_array_equal(np.concatenate(crops), whole)
    with pytest.raises(LSEInputError, match="no face"):
        track = FaceTrack(face_detector(None))
        track.push(np.full_like(frames, 128))
        track.finish()
    with pytest.raises(LSEInputError, match="too few"):
        track = FaceTrack(face_detector(None))
        track.push(frames[3:14])
        track.finish()


@pytest.mark.parametrize(("vshift", "batch_size"), [(15, 20), (25, 8)])
def test_lse_streamed_in_chunks_is_bit_identical_to_the_whole_video(syncnet_file: Path, vshift, batch_size) -> None:
    net = load_syncnet_v2(syncnet_file)
    wav = speech("Children laughed while the duck ate too many bees.")[: int(2.6 * 16000)]
    crops = talking_frames(wav, 68, size=224)[..., ::-1]  # more frames than audio: the audio sets the windows
    whole = lse_frames(net, crops[..., ::-1], wav, vshift=vshift, batch_size=batch_size)
    for size in (1, 13):  # a frame at a time, and chunks that straddle the batches
        stream = SyncStream(net, wav, vshift, batch_size)
        for i in range(0, len(crops), size):
            stream.push(crops[i : i + size])
        result = stream.finish()
        assert np.array_equal(result.mdist, whole.mdist), size
        assert (result.lse_c, result.lse_d, result.offset) == (whole.lse_c, whole.lse_d, whole.offset)
        assert len(stream.sound) <= 2 * stream.reach + 1 and len(stream.frames) < batch_size + 5  # bounded


def test_lse_track_mode_finds_the_face_in_full_frames(syncnet_file: Path) -> None:
    wav = speech("The duck ate too many bees before lunch.")[: int(1.0 * 16000)]
    frames = talking_frames(wav, 25, size=320)
    result = lse_frames(load_syncnet_v2(syncnet_file), frames, wav, crop="track")
    assert np.isfinite(result.lse_c) and np.isfinite(result.lse_d)
    with pytest.raises(LSEInputError, match="no face"):
        lse_frames(load_syncnet_v2(syncnet_file), np.full_like(frames, 128), wav, crop="track")


def test_lse_metric_averages_videos_and_skips_bad_ones(syncnet_file: Path, tmp_path: Path, caplog) -> None:
    good = [
        write_video(tmp_path / f"v{i}.mp4", talking_frames(w, 28, size=224), audio=w)
        for i, w in enumerate(speech(s)[: int(1.1 * 16000)] for s in ("Nobody expected it.", "Children laughed."))
    ]
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    short = write_video(tmp_path / "short.mp4", talking_frames(speech("Hi."), 4, size=224), audio=speech("Hi."))
    silent_track = talking_video(tmp_path / "mute.mp4", audio=False)
    metric = LSE(syncnet_file, crop="frame")
    metric.update([good[0], corrupt, short, silent_track])
    metric.update(good[1])
    out = metric.compute()
    singles = [lse_video(v, syncnet_file) for v in good]
    assert float(out["lse_c"]) == pytest.approx(np.mean([r.lse_c for r in singles]), rel=1e-6)
    assert float(out["lse_d"]) == pytest.approx(np.mean([r.lse_d for r in singles]), rel=1e-6)
    assert int(metric.skipped) == 3 and int(metric.videos) == 2
    assert "corrupt.mp4" in caplog.text and "short.mp4" in caplog.text and "mute.mp4" in caplog.text
