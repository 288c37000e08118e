"""Streaming generation: audio in chunks of any size -> the same frames as offline generation, bit for bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pctalk.audio.mel import audio_windows
from pctalk.audio.streaming import AudioStream, live_pcm
from pctalk.inference import Controls, EmotionControl, TalkingFacePipeline
from pctalk.inference.kalman import KalmanFilter, kalman_smooth
from pctalk.inference.timeline import Timeline
from pctalk.keypoints.regions import region
from pctalk.models.windows import WindowStream, window_plan
from raw_media import speech

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")

MS = 16  # samples per millisecond at 16 kHz


def _chunks(wav: torch.Tensor, sizes: list[int]) -> list[torch.Tensor]:
    """``wav`` cut at the given sizes (repeated), the rest in one piece."""
    out, pos, i = [], 0, 0
    while pos < len(wav):
        out.append(wav[pos : pos + sizes[i % len(sizes)]])
        pos, i = pos + sizes[i % len(sizes)], i + 1
    return out


def test_audio_stream_windows_equal_the_whole_clips() -> None:
    rng = np.random.default_rng(0)
    for n in (640, 700, 5000, 3 * 16000 + 123):
        wav = torch.from_numpy(rng.normal(0, 0.1, n).astype(np.float32))
        whole = audio_windows(wav)
        for sizes in ([n], [40 * MS], [1, 7, 3000], [640 * MS]):
            audio, got = AudioStream(), []
            for chunk in _chunks(wav, sizes):
                done = sum(len(g) for g in got)
                audio.push(chunk)
                got.append(audio.windows(done, audio.ready))
                assert audio.ready <= audio.frames
            audio.close()
            got.append(audio.windows(sum(len(g) for g in got), audio.ready))
            assert torch.equal(torch.cat(got), whole), (n, sizes)
    audio = AudioStream()
    audio.push(torch.zeros(16000))
    assert 0 < audio.ready < 25  # the last frames wait for their mel lookahead
    with pytest.raises(ValueError, match=r"only \d+ are final"):
        audio.windows(0, 25)
    with pytest.raises(ValueError, match="int16 PCM: divide by 32768"):
        audio.push(np.zeros(640, np.int16))

    class Pipe:  # a pipe whose reads come back short and odd-sized
        def __init__(self, data: bytes) -> None:
            self.data = data

        def read(self, n: int) -> bytes:
            out, self.data = self.data[:3], self.data[3:]
            return out

    pcm = (np.arange(-500, 500, dtype="<i2") * 7).tobytes()
    samples = torch.cat(list(live_pcm(Pipe(pcm))))
    assert torch.equal(samples, torch.from_numpy(np.frombuffer(pcm, "<i2").astype(np.float32) / 32768))


def test_window_stream_runs_the_offline_plan_and_the_kalman_filter_carries_over() -> None:
    for n, size in ((1, 25), (24, 25), (25, 25), (26, 25), (101, 25), (46, 5)):
        stream, seen = WindowStream(lambda a, warm, w: a, size), []
        for known in range(1, n + 1):  # the frames arrive one by one
            while (w := stream.next(known, closed=known == n)) is not None:
                seen.append(w)
                stream.run(w, torch.zeros(1, w.stop - w.start, 1))
        assert seen == window_plan(n, size)
    from pykalman import KalmanFilter as Reference

    x = np.random.default_rng(1).normal(0, 0.01, (40, 6))
    reference = Reference(initial_state_mean=x[0], transition_matrices=np.eye(6), observation_matrices=np.eye(6),
                          transition_covariance=1e-5 * np.eye(6), observation_covariance=1e-6 * np.eye(6))  # fmt: skip
    whole = KalmanFilter()(torch.from_numpy(x))
    np.testing.assert_allclose(whole.numpy(), reference.filter(x)[0], atol=1e-12, rtol=0)
    f = KalmanFilter()
    assert torch.equal(torch.cat([f(torch.from_numpy(p)) for p in np.split(x, [1, 7, 8])]), whole)
    assert not torch.equal(whole, kalman_smooth(torch.from_numpy(x)))  # the filter sees no future


def _streamed_motion(pipeline: TalkingFacePipeline, source, wav: torch.Tensor, controls: Controls, sizes: list[int]):
    from pctalk.inference.pipeline import DrivenMotion

    engine = pipeline.motion_stream(source, controls)
    blocks = [b for chunk in _chunks(wav, sizes) for b in engine.push(chunk)]
    return DrivenMotion.cat([*blocks, *engine.close()]), blocks


def test_streamed_motion_equals_offline_for_every_chunk_size(
    pipeline: TalkingFacePipeline, astronaut_path: Path
) -> None:
    source = pipeline.load_source(astronaut_path)
    wav = speech("The duck ate too many bees, then it flew away over the lake.")  # about 3.5 s
    timeline = Timeline({"lip_scale": [[0, 1.0], [2, 1.3]], "emotion:happy:lips": [[0, 0.2], [3, 0.9]]})
    cases = {
        "plain": Controls(causal_smoothing=True),
        "emotions": Controls(
            causal_smoothing=True,
            emotions=[EmotionControl("sad", "upper_face", 0.7)],
            timeline=timeline,
            loudness_scale=True,
            smooth_emotion=True,
            style_edits={"duck": 1.5},
        ),
    }
    offline = {}
    for name, controls in cases.items():
        offline[name] = pipeline.motion(wav, source, controls)
        assert len(offline[name].keypoints) == len(wav) // 640
        for sizes in ([40 * MS], [200 * MS], [640 * MS], [13, 1000, 9000]):
            streamed, blocks = _streamed_motion(pipeline, source, wav, controls, sizes)
            for key in ("keypoints", "exp", "lips", "R", "t"):
                assert torch.equal(getattr(streamed, key), getattr(offline[name], key)), (name, sizes, key)
            assert np.array_equal(streamed.source_index, offline[name].source_index)
            assert blocks and len(blocks[0].keypoints) == 25  # the first window is final before the speech ends
    upper = list(region("upper_face"))
    assert not torch.equal(offline["emotions"].exp[:, upper], offline["plain"].exp[:, upper])  # the emotion acts
    smoothed = pipeline.motion(wav, source, Controls())  # offline default: the RTS smoother over the whole clip
    assert not torch.equal(smoothed.lips, pipeline.motion(wav, source, Controls(causal_smoothing=True)).lips)
    engine = pipeline.motion_stream(source, Controls())
    engine.push(wav)
    engine.close()
    with pytest.raises(ValueError, match="already closed"):
        engine.close()
    with pytest.raises(ValueError, match="cannot stream"):
        next(pipeline.stream([wav], source, Controls(refine_after_emotion=True)))


def test_a_silent_stream_is_warned_of_at_its_end(pipeline: TalkingFacePipeline, astronaut_path: Path) -> None:
    """Offline generation refuses a silent file (SilentAudioError); a live stream may start in silence, so it runs,
    and only a stream that was silent throughout is warned of, when it closes."""
    import warnings

    source = pipeline.load_source(astronaut_path)
    quiet = torch.zeros(16000)
    quiet[8000:] = 1e-4  # -80 dBFS: a muted microphone's noise floor
    engine = pipeline.motion_stream(source, Controls(causal_smoothing=True))
    blocks = engine.push(quiet[:8000]) + engine.push(quiet[8000:])
    with pytest.warns(UserWarning, match=r"speech was silent throughout \(peak -80.0 dBFS"):
        blocks += engine.close()
    assert sum(len(b.keypoints) for b in blocks) == 25
    wav = speech("Bees hum all day.")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # speech after a silent start: no warning
        engine = pipeline.motion_stream(source, Controls(causal_smoothing=True))
        engine.push(torch.zeros(8000))
        engine.push(wav)
        engine.close()


def test_streamed_frames_equal_the_offline_render(pipeline: TalkingFacePipeline, tmp_path: Path) -> None:
    from raw_media import scene_video

    video = tmp_path / "portrait.mp4"
    scene_video(video, "Bees hum all day.", width=216, height=384, seed=3)  # a portrait video, the face moving
    source = pipeline.load_source(video)
    wav = speech("Clouds drift by slowly over the quiet hills.")
    controls = Controls(causal_smoothing=True, emotions=[EmotionControl("happy", "lips", 0.6)])
    offline = list(pipeline.render(source, pipeline.motion(wav, source, controls)))
    seen = []
    streamed = list(pipeline.stream(_chunks(wav, [120 * MS]), source, controls, on_motion=seen.append))
    assert len(streamed) == len(offline) == len(wav) // 640 and sum(len(b.keypoints) for b in seen) == len(offline)
    assert all(np.array_equal(a, b) for a, b in zip(streamed, offline))
    assert streamed[0].shape == (384, 216, 3)  # pasted back into the portrait frame


def _wav_header(n_bytes: int, rate: int = 16000, channels: int = 1) -> bytes:
    import struct

    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * 2 * channels, 2 * channels, 16)
    return b"RIFF" + struct.pack("<I", 36 + n_bytes) + b"WAVEfmt " + struct.pack("<I", 16) + fmt + b"data" + \
        struct.pack("<I", n_bytes)  # fmt: skip


def test_generate_stream_from_a_growing_wav_and_from_stdin(
    release: Path, liveportrait_weights: Path, astronaut_path: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    import io
    import sys
    import threading
    import time

    from pctalk.cli import main
    from pctalk.media import VideoReader

    pcm = (speech("Bees hum all day, then they rest.").numpy() * 32767).astype("<i2").tobytes()
    (tmp_path / "speech.wav").write_bytes(_wav_header(len(pcm)) + pcm)
    growing = tmp_path / "recording.wav"

    def record() -> None:  # a recorder: the header first (its size not yet known), then 100 ms every 20 ms
        with open(growing, "wb") as fh:
            fh.write(_wav_header(0))
            for i in range(0, len(pcm), 3200):
                fh.write(pcm[i : i + 3200])
                fh.flush()
                time.sleep(0.02)

    common = ["--source", str(astronaut_path), "--lac", str(release / "lac.pth"), "--emc", str(release / "emc.pth"),
              "--emotion", "happy:lips:0.6", "--weights", str(liveportrait_weights), "--cropper", "opencv",
              "--liveportrait-size", "tiny", "--no-progress"]  # fmt: skip
    assert main(["generate", "--audio", str(tmp_path / "speech.wav"), "--out", str(tmp_path / "offline.mp4"),
                 "--causal-smoothing", *common]) == 0  # fmt: skip
    growing.write_bytes(b"")  # the recorder has opened it
    recorder = threading.Thread(target=record)
    recorder.start()
    assert main(["generate", "--stream", "--audio", str(growing), "--stream-idle", "1", "--out",
                 str(tmp_path / "live.mp4"), *common]) == 0  # fmt: skip
    recorder.join()
    printed = capsys.readouterr().out
    assert "first frame after" in printed and "real-time factor" in printed
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(pcm)))
    assert main(["generate", "--stream", "--audio", "-", "--out", str(tmp_path / "stdin.mp4"), *common]) == 0

    def frames(name: str) -> np.ndarray:
        return np.concatenate(list(VideoReader(tmp_path / name).chunks(64)))

    offline = frames("offline.mp4")
    assert len(offline) == len(pcm) // 1280
    assert np.array_equal(frames("live.mp4"), offline) and np.array_equal(frames("stdin.mp4"), offline)

    stereo = tmp_path / "stereo.wav"
    stereo.write_bytes(_wav_header(len(pcm), rate=44100, channels=2) + pcm)
    assert main(["generate", "--stream", "--audio", str(stereo), "--out", str(tmp_path / "x.mp4"), *common]) == 2
    assert "16 kHz mono 16-bit" in capsys.readouterr().err and not (tmp_path / "x.mp4").exists()


def test_the_printed_real_time_factor_leaves_out_the_end_of_stream_wait() -> None:
    """Wall time after the first frame over the audio it covers, less only the wait that tells a growing WAV has
    ended; never negative when every frame comes after the stream ended (an utterance shorter than a window)."""
    from pctalk.inference.cli import real_time_factor

    live = {"first": 1.0, "resumed": 4.0, "end of audio": 5.5, "end": 5.6}  # 1.5 s of --stream-idle, then 0.1 s
    assert real_time_factor(live, 76) == pytest.approx((4.6 - 1.5) / 3)
    stdin = {"first": 1.0, "resumed": 4.0, "end of audio": 4.0, "end": 4.3}  # EOF at once: nothing left out
    assert real_time_factor(stdin, 76) == pytest.approx(3.3 / 3)
    short = {"first": 2.0, "resumed": 0.9, "end of audio": 1.9, "end": 2.1}  # frames only after the end
    assert real_time_factor(short, 26) == pytest.approx(0.1)
    assert np.isnan(real_time_factor(short, 1))
