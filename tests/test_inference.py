"""Inference: windows, Kalman smoothing, pose, timelines, and ``pctalk generate`` end to end with tiny models."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from skimage import data

from pctalk.cli import main
from pctalk.inference import Controls, EmotionControl, TalkingFacePipeline
from pctalk.inference.kalman import kalman_smooth
from pctalk.inference.pose import PoseTemplate, builtin_template, load_template, ping_pong, relative_pose
from pctalk.inference.timeline import Timeline
from pctalk.keypoints.regions import BROWS, EYES, LIPS
from pctalk.keypoints.transform import rotation_matrix
from pctalk.media import VideoReader
from pctalk.models.windows import Window, predict_windows, window_plan
from raw_media import speech, talking_video

T = 25


# -- windows ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, T - 1, T, 10 * T + 3])
def test_windows_cover_every_frame_once(n: int) -> None:
    plan = window_plan(n, T)
    covered = [f for w in plan for f in range(w.start + w.warm, w.stop)]
    assert covered == list(range(n))
    assert plan[0].warm == 0 and all(w.warm == T // 5 for w in plan[1:])
    assert all(w.stop - w.start <= T for w in plan)
    for a, b in itertools.pairwise(plan):
        assert b.start == a.stop - T // 5


def test_predict_windows_warm_starts_from_the_previous_tail() -> None:
    calls = []

    def generate(audio: torch.Tensor, warm: torch.Tensor | None, window: Window) -> torch.Tensor:
        assert window.stop - window.start == audio.shape[1]
        calls.append(None if warm is None else warm.clone())
        out = audio[..., :1] * 10  # each frame's prediction: its audio value x 10
        if warm is not None:
            out[:, : warm.shape[1]] = warm
        return out

    audio = torch.arange(60.0).view(1, 60, 1)
    out = predict_windows(generate, audio, window=T)
    torch.testing.assert_close(out, audio * 10)
    assert calls[0] is None
    torch.testing.assert_close(calls[1], (audio[:, 20:25] * 10))  # the first window's last 5 frames


# -- Kalman -----------------------------------------------------------------------------------------------------------


def test_kalman_equals_pykalman_as_the_official_release_uses_it() -> None:
    """The official release smooths with pykalman's KalmanFilter (initial state the first frame, transition 1e-5,
    observation 1e-6, every coordinate together) and leaves sequences under three frames alone."""
    from pykalman import KalmanFilter

    rng = np.random.default_rng(0)
    x = (np.cumsum(rng.normal(0, 0.003, (80, 6, 3)), axis=0) + rng.normal(0, 0.001, (80, 6, 3))).astype(np.float32)
    flat = x.reshape(80, -1)
    reference = KalmanFilter(
        initial_state_mean=flat[0], n_dim_obs=18, transition_covariance=1e-5 * np.eye(18),
        observation_covariance=1e-6 * np.eye(18),
    ).smooth(flat)[0].reshape(x.shape)  # fmt: skip
    np.testing.assert_allclose(kalman_smooth(torch.from_numpy(x)).numpy(), reference, atol=1e-7, rtol=0)
    noisy = np.sin(np.linspace(0, 3, 200)) + rng.normal(0, 0.05, 200)
    smooth = kalman_smooth(torch.from_numpy(noisy), 1e-4, 1e-2).numpy()
    assert np.abs(np.diff(smooth)).mean() < 0.3 * np.abs(np.diff(noisy)).mean()
    for n in (1, 2):
        short = torch.randn(n, 6, 3)
        assert torch.equal(kalman_smooth(short), short)


# -- pose and timelines -----------------------------------------------------------------------------------------------


def test_ping_pong() -> None:
    assert ping_pong(np.arange(4), 10).tolist() == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3]
    assert ping_pong(np.arange(1), 3).tolist() == [0, 0, 0]
    assert ping_pong(torch.arange(3), 5).tolist() == [0, 1, 2, 1, 0]


def test_pose_templates(tmp_path: Path) -> None:
    template = builtin_template(100)
    assert len(template) == 100 and template.pitch[0] == 0 and np.abs(template.yaw).max() < 15
    assert np.abs(np.diff(template.yaw)).max() < 1.0  # smooth: under a degree per frame
    path = template.save(tmp_path / "t.npz")
    loaded = load_template(path)
    np.testing.assert_allclose(loaded.yaw, template.yaw)
    assert len(template.extended(250)) == 250
    with pytest.raises(FileNotFoundError, match="builtin"):
        load_template(tmp_path / "missing.npz")


def test_relative_pose_keeps_the_source_pose_for_a_still_template() -> None:
    still = PoseTemplate(np.full(5, 7.0), np.full(5, -3.0), np.zeros(5), np.full((5, 3), 0.2))
    source_R = rotation_matrix(torch.tensor([4.0]), torch.tensor([10.0]), torch.tensor([-2.0]))[0]
    R, t = relative_pose(still, source_R, torch.tensor([0.1, 0.0, 0.3]))
    torch.testing.assert_close(R, source_R.expand(5, 3, 3), atol=1e-6, rtol=0)
    torch.testing.assert_close(t, torch.tensor([[0.1, 0.0, 0.3]]).expand(5, 3))


def test_timeline_interpolation(tmp_path: Path) -> None:
    path = tmp_path / "timeline.json"
    path.write_text(
        json.dumps({"controls": {"lip_scale": [[1.0, 2.0], [0.0, 1.0]], "emotion:happy:lips": [[0.4, 0.5]]}})
    )
    timeline = Timeline.load(path)
    values = timeline.values("lip_scale", 50)  # 2 s at 25 fps
    assert values[0] == 1.0 and values[25] == 2.0 and values[-1] == 2.0  # held after the last keyframe
    assert values[12] == pytest.approx(1.48)  # frame 12 is at 0.48 s
    assert (timeline.values("emotion:happy:lips", 3) == 0.5).all()
    assert timeline.values("style_edit:duck", 3) is None
    with pytest.raises(ValueError, match="unknown control"):
        Timeline({"lipscale": [(0, 1)]})


def test_emotion_control_parsing() -> None:
    assert EmotionControl.parse("happy:lips:0.6") == EmotionControl("happy", "lips", 0.6)
    assert EmotionControl.parse("sad") == EmotionControl("sad", "all", 0.5)
    assert EmotionControl.parse("image:eyes") == EmotionControl("image", "eyes", 0.5)
    with pytest.raises(ValueError, match="bad emotion"):
        EmotionControl.parse("grumpy:lips")
    with pytest.raises(ValueError, match="unknown facial region"):
        EmotionControl.parse("happy:chin")


# -- the pipeline with tiny models ------------------------------------------------------------------------------------


def test_generate_end_to_end(pipeline: TalkingFacePipeline, astronaut_path: Path, tmp_path: Path) -> None:
    wav = speech("The duck ate too many bees.")
    out = tmp_path / "out.mp4"
    driven = pipeline.generate(
        astronaut_path, out, audio=wav, save_motion=tmp_path / "m.npz", keypoint_video=tmp_path / "kp.mp4"
    )
    n = len(wav) * 25 // 16000
    reader = VideoReader(out)
    assert len(reader) == len(driven.keypoints) == n and reader.source_fps == pytest.approx(25)
    assert reader.size == (512, 512)  # pasted back into the photo
    from pctalk.audio import load_audio

    assert abs(len(load_audio(out)) - n * 640) <= 1100  # the audio track, muxed (AAC adds a little padding)
    assert len(VideoReader(tmp_path / "kp.mp4")) == n
    assert set(np.load(tmp_path / "m.npz")) >= {"exp", "keypoints", "lips", "R", "t", "scale"}
    frame = next(reader.chunks(1))[0]
    away = np.abs(frame[450:, :40].astype(int) - data.astronaut()[450:, :40]).mean()
    assert away < 3  # away from the face: the photo itself, up to H.264's loss


def _motion(pipeline: TalkingFacePipeline, source, wav: torch.Tensor, **controls) -> torch.Tensor:
    return pipeline.motion(wav, source, Controls(**controls)).keypoints


def _changed(a: torch.Tensor, b: torch.Tensor) -> set[int]:
    return {int(k) for k in torch.nonzero((a - b).abs().amax(dim=(0, 2)) > 1e-7).flatten()}


def test_every_control_moves_only_its_keypoints(
    pipeline: TalkingFacePipeline, astronaut_path: Path, tmp_path: Path
) -> None:
    source = pipeline.load_source(astronaut_path)
    wav = speech("The duck ate too many bees.")
    base = _motion(pipeline, source, wav)
    lips, upper = set(LIPS), set(EYES + BROWS)
    assert _changed(_motion(pipeline, source, wav, lip_scale=1.5), base) == lips
    assert _changed(_motion(pipeline, source, wav, loudness_scale=True), base) == lips
    # the edit acts after the refiner (as in the official release): only the opening direction's keypoints move
    assert _changed(_motion(pipeline, source, wav, style_edits={"duck": 2.0}), base) == {17, 19}
    assert _changed(_motion(pipeline, source, wav, style_id=1), base) == lips
    assert _changed(_motion(pipeline, source, wav, smooth=False), base) == lips
    assert _changed(_motion(pipeline, source, wav, refine=False), base) == lips
    happy_lips = [EmotionControl("happy", "lips", 0.8)]
    assert _changed(_motion(pipeline, source, wav, emotions=happy_lips), base) <= lips
    assert _changed(_motion(pipeline, source, wav, emotions=[EmotionControl("sad", "upper_face", 0.8)]), base) == upper
    assert _changed(_motion(pipeline, source, wav, emotions=[EmotionControl("neutral", "all", 1.0)]), base) == set()
    image = tmp_path / "reference.png"
    cv2.imwrite(str(image), cv2.flip(data.astronaut(), 1)[..., ::-1])  # another expression estimate: the mirror
    from_image = _motion(
        pipeline, source, wav, emotions=[EmotionControl("image", "eyes", 1.0)], emotion_from_image=str(image)
    )
    assert _changed(from_image, base) == set(EYES)
    moved = _motion(pipeline, source, wav, pose_template=str(builtin_template(10, seed=3).save(tmp_path / "p.npz")))
    assert len(_changed(moved, base)) == 21  # head motion moves every keypoint


def test_timeline_keyframes_a_control(pipeline: TalkingFacePipeline, astronaut_path: Path) -> None:
    source = pipeline.load_source(astronaut_path)
    wav = speech("The duck ate too many bees.")
    n = len(wav) * 25 // 16000
    ramp = Timeline({"lip_scale": [(0.0, 1.0), ((n - 1) / 25, 2.0)]})
    base = pipeline.motion(wav, source, Controls(refine=False))
    ramped = pipeline.motion(wav, source, Controls(refine=False, timeline=ramp))
    torch.testing.assert_close(ramped.lips[0], base.lips[0])
    torch.testing.assert_close(ramped.lips[-1], 2 * base.lips[-1])
    emotion = Timeline({"emotion:happy:lips": [(0.0, 0.0), ((n - 1) / 25, 1.0)]})
    with_emotion = pipeline.motion(wav, source, Controls(refine=False, timeline=emotion))
    torch.testing.assert_close(with_emotion.exp[0], base.exp[0])  # intensity 0 at the start
    assert not torch.allclose(with_emotion.exp[-1], base.exp[-1])


def test_loudness_scale_takes_its_gain_reference_and_bounds(
    pipeline: TalkingFacePipeline, astronaut_path: Path
) -> None:
    """The per-frame lip scale is 1 + gain (loudness - reference) clamped to the bounds; gain 0 leaves the lips as
    predicted bit for bit; a timeline keyframes the gain (and turns the scale on); values out of range are refused."""
    from pctalk.audio.loudness import frame_loudness
    from pctalk.audio.mel import fit_to_frames
    from pctalk.control.lip import loudness_factor

    source = pipeline.load_source(astronaut_path)
    wav = speech("The duck ate too many bees before lunch.")
    n = len(wav) * 25 // 16000
    loud = frame_loudness(fit_to_frames(wav, n), n)
    base = pipeline.motion(wav, source, Controls(refine=False))
    flat = pipeline.motion(wav, source, Controls(refine=False, loudness_scale=True, loudness_gain=0.0))
    assert torch.equal(flat.lips, base.lips)
    controls = Controls(refine=False, loudness_scale=True, loudness_gain=0.05, loudness_reference=-30.0,
                        loudness_bounds=(0.5, 2.0))  # fmt: skip
    factor = loudness_factor(loud, -30.0, 0.05, 0.5, 2.0)
    assert factor.min() < 1 < factor.max()  # speech and pauses: both ends of the scale are used
    torch.testing.assert_close(pipeline.motion(wav, source, controls).lips, base.lips * factor[:, None, None])
    ramp = Timeline({"loudness_gain": [(0.0, 0.0), ((n - 1) / 25, 0.05)]})
    gain = torch.from_numpy(ramp.values("loudness_gain", n))
    ramped = pipeline.motion(wav, source, Controls(refine=False, timeline=ramp))
    torch.testing.assert_close(ramped.lips, base.lips * loudness_factor(loud, -20.0, gain)[:, None, None])
    for bad in ({"loudness_gain": 0.5}, {"loudness_reference": 10.0}, {"loudness_bounds": (1.5, 1.0)}):
        with pytest.raises(ValueError, match="--loudness-"):
            Controls(**bad)


@pytest.mark.parametrize("frames", [1, T - 1, T, 10 * T + 3])
def test_any_audio_length(pipeline: TalkingFacePipeline, astronaut_path: Path, frames: int) -> None:
    source = pipeline.load_source(astronaut_path)
    wav = speech("The duck ate too many bees.").repeat(10)[: frames * 640]
    driven = pipeline.motion(wav, source, Controls(emotions=[EmotionControl("happy")]))
    assert driven.keypoints.shape == (frames, 21, 3) and torch.isfinite(driven.keypoints).all()


def test_video_source_is_ping_ponged(pipeline: TalkingFacePipeline, tmp_path: Path) -> None:
    video = talking_video(tmp_path / "talk.mp4", "Hi there.")
    source = pipeline.load_source(video)
    assert source.is_video
    count = len(source.crops)
    wav = speech("The duck ate too many bees before lunch.")
    driven = pipeline.motion(wav, source)
    n = len(wav) * 25 // 16000
    assert n > count
    assert driven.source_index.tolist() == ping_pong(np.arange(count), n).tolist()
    frames = list(pipeline.render(source, driven))
    assert len(frames) == n and frames[0].shape == (320, 320, 3)


def test_cli_generate_and_its_errors(release: Path, liveportrait_weights: Path, astronaut_path: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    common = ["generate", "--lac", str(release / "lac.pth"), "--no-progress"]
    rendering = ["--weights", str(liveportrait_weights), "--liveportrait-size", "tiny", "--cropper", "opencv"]
    out = tmp_path / "out.mp4"
    timeline = tmp_path / "timeline.json"
    timeline.write_text(json.dumps({"controls": {"lip_scale": [[0, 1], [1, 1.5]]}}))
    assert main([*common, *rendering, "--source", str(astronaut_path), "--text", "Hello there.", "--out", str(out),
                 "--emc", str(release / "emc.pth"), "--emotion", "happy:lips:0.6", "--emotion", "sad:upper_face:0.4",
                 "--style-edit", "duck=1.5", "--loudness-gain", "0.03", "--loudness-bounds", "0.8,1.3",
                 "--controls", str(timeline)]) == 0  # fmt: skip
    assert out.is_file() and len(VideoReader(out)) > 10
    # the motion alone needs no LivePortrait
    assert main([*common, "--text", "Hello.", "--keypoint-video", str(tmp_path / "kp.mp4")]) == 0
    capsys.readouterr()
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((200, 200, 3), 120, np.uint8))
    assert main([*common, *rendering, "--source", str(blank), "--text", "Hi.", "--out", str(tmp_path / "x.mp4")]) == 2
    assert "no face found" in capsys.readouterr().err and not (tmp_path / "x.mp4").exists()
    silent = tmp_path / "silent.wav"
    from pctalk.media import write_audio

    write_audio(silent, np.zeros(16000), 16000)
    assert main([*common, "--audio", str(silent), "--keypoint-video", str(tmp_path / "k.mp4")]) == 2
    assert "silent" in capsys.readouterr().err
    assert main([*common, "--source", str(astronaut_path), "--text", "Hi.", "--out", str(out),
                 "--weights", str(tmp_path / "no_weights")]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "missing pretrained file" in err and "pctalk weights check --root" in err
    assert main([*common, "--text", "Hi."]) == 2
    assert "nothing to write" in capsys.readouterr().err
    assert main([*common, "--text", "Hi.", "--keypoint-video", str(tmp_path / "k.mp4"), "--loudness-bounds", "1"]) == 2
    assert "use LO,HI" in capsys.readouterr().err


def test_every_generate_option_is_documented(capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from pctalk.inference.cli import _parser

    parser = _parser()
    undocumented = [a.option_strings for a in parser._actions if not a.help or a.help == argparse.SUPPRESS]
    assert undocumented == []
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    out = capsys.readouterr().out
    for option in ("--liveportrait-size", "--refiner", "--refine-after-emotion", "--cropper", "static"):
        assert option in out


def test_refining_after_emotion_keeps_the_expression_and_the_keypoints_consistent(
    pipeline: TalkingFacePipeline, astronaut_path: Path
) -> None:
    from pctalk.keypoints.transform import transform_keypoints

    source = pipeline.load_source(astronaut_path)
    wav = speech("The duck ate too many bees.")
    controls = Controls(emotions=[EmotionControl("happy", "lips", 0.6)], refine_after_emotion=True)
    after = pipeline.motion(wav, source, controls)
    frames = pipeline.frames(source, len(after.keypoints), controls)
    torch.testing.assert_close(
        transform_keypoints(frames.kp, after.R, after.exp, after.scale, after.t), after.keypoints, atol=1e-6, rtol=0
    )
    inside = pipeline.motion(wav, source, Controls(emotions=[EmotionControl("happy", "lips", 0.6)]))
    assert not torch.allclose(after.lips, inside.lips)  # the two orders differ, and what is saved says so
