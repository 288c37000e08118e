"""Pose, blink and gaze channels: LivePortrait's eye edits and eye retargeting, natural blink timing, each channel from
the source, a driving video, a template or the timeline, and each leaving every other keypoint bit-identical."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pctalk.cli import main
from pctalk.control.eyes import (
    BLINK,
    blink_delta,
    eye_open_ratio,
    eye_signals,
    gaze_delta,
    natural_blinks,
    natural_gaze,
)
from pctalk.inference import Controls, TalkingFacePipeline
from pctalk.inference.channels import Channel, resolve_channel
from pctalk.inference.pose import PoseTemplate, ping_pong, relative_pose
from pctalk.inference.timeline import Timeline
from pctalk.keypoints.regions import EYES
from pctalk.keypoints.transform import rotation_matrix
from raw_media import speech, talking_video

OTHERS = [k for k in range(21) if k not in EYES]
WAV_TEXT = "The duck ate too many bees before lunch."


def _entries(delta: torch.Tensor) -> dict[tuple[int, int], float]:
    return {(int(k), int(a)): round(float(delta[k, a]), 7) for k, a in torch.nonzero(delta).tolist()}


def test_eye_directions_are_liveportraits_edits() -> None:
    """The blink is LivePortrait's wink edit at its slider's maximum (39) on both eyes; the gaze its eyeball-direction
    edit (x: the near eye 0.001 per unit, the far one 0.0007; y: -0.001 per unit plus the coupled blink -y/2)."""
    assert _entries(blink_delta(torch.ones(1))[0]) == {(11, 1): 0.039, (15, 1): 0.039, (13, 1): -0.0117,
                                                       (16, 1): -0.0117}  # fmt: skip
    assert _entries(gaze_delta(torch.tensor([10.0]), torch.zeros(1))[0]) == {(11, 0): 0.007, (15, 0): 0.01}
    assert _entries(gaze_delta(torch.tensor([-10.0]), torch.zeros(1))[0]) == {(11, 0): -0.01, (15, 0): -0.007}
    # y = 20: lids 11 and 15 by 20 * -0.001 + (-10) * -0.001; 13 and 16 by (-10) * 0.0003
    up = {(11, 1): -0.01, (15, 1): -0.01, (13, 1): -0.003, (16, 1): -0.003}
    assert _entries(gaze_delta(torch.zeros(1), torch.tensor([20.0]))[0]) == up
    assert set(k for k, _ in _entries(BLINK)) <= set(EYES)


def test_eye_signals_read_back_blinks_and_gaze() -> None:
    torch.manual_seed(0)
    n = 50
    reference = torch.randn(21, 3) * 0.02
    closure = torch.rand(n)
    closure[::5] = 0  # open eyes on a fifth of the frames: the 10th percentile is open
    gaze = torch.stack([torch.empty(n).uniform_(-20, 20), torch.empty(n).uniform_(-40, 40)], dim=1)
    exp = reference + blink_delta(closure) + gaze_delta(gaze[:, 0], gaze[:, 1])
    exp[:, OTHERS] += torch.randn(n, len(OTHERS), 3) * 0.01  # the rest of the face moves too: it does not count
    got_closure, got_gaze = eye_signals(exp, reference)
    torch.testing.assert_close(got_closure, closure, atol=1e-4, rtol=0)
    torch.testing.assert_close(got_gaze, gaze, atol=1e-3, rtol=0)


def test_natural_blink_timing() -> None:
    closure = natural_blinks(25 * 60, seed=3)  # a minute at 25 fps
    starts = np.flatnonzero((closure[1:] > 0) & (closure[:-1] == 0)) + 1
    assert 12 <= len(starts) <= 30  # 15-25 blinks a minute in conversation
    assert closure.min() == 0 and closure.max() == 1 and closure[: 25 // 2].max() == 0
    lengths = [int(np.argmax(closure[s:] == 0)) for s in starts[:-1]]
    assert set(lengths) == {7}  # 3 frames closing, 1 closed, 4 opening (the last one back at 0)
    assert np.diff(starts).min() >= 25  # at least a second apart
    np.testing.assert_array_equal(natural_blinks(100, seed=3), closure[:100])
    assert not np.array_equal(natural_blinks(25 * 20, seed=4), closure[: 25 * 20])
    gaze = natural_gaze(25 * 20, seed=3)
    assert np.abs(gaze[:, 0]).max() <= 12 and np.abs(gaze[:, 1]).max() <= 10 and (gaze[0] == 0).all()
    moving = np.flatnonzero(np.abs(np.diff(gaze, axis=0)).sum(1) > 0)
    assert 0 < len(moving) < len(gaze) / 4  # fixations, joined by short saccades


def test_eye_open_ratio_on_both_landmark_layouts() -> None:
    lm = np.zeros((203, 2))
    lm[0], lm[12], lm[6], lm[18] = (0, 0), (30, 0), (15, -3), (15, 3)  # left eye: 6 tall, 30 wide
    lm[24], lm[36], lm[30], lm[42] = (50, 0), (90, 0), (70, -4), (70, 4)  # right eye: 8 tall, 40 wide
    np.testing.assert_allclose(eye_open_ratio(lm), [0.2, 0.2], rtol=1e-6)
    ibug = np.zeros((68, 2))
    ibug[36], ibug[39], ibug[37], ibug[41], ibug[38], ibug[40] = (0, 0), (30, 0), (10, -2), (10, 2), (20, -4), (20, 4)
    ibug[42], ibug[45], ibug[43], ibug[47], ibug[44], ibug[46] = (50, 0), (70, 0), (55, -1), (55, 1), (65, -1), (65, 1)
    np.testing.assert_allclose(eye_open_ratio(ibug), [0.2, 0.1], rtol=1e-6)
    with pytest.raises(ValueError, match="203 or dlib's 68"):
        eye_open_ratio(np.zeros((5, 2)))


def test_channel_specs_and_defaults() -> None:
    assert Channel.parse("video:drive.mp4", "pose") == Channel("video", "drive.mp4")
    assert Channel.parse("template", "pose") == Channel("template", "builtin")
    assert Channel.parse("template:tpl.npz", "pose") == Channel("template", "tpl.npz")
    assert Channel.parse("template", "blink") == Channel("template")
    for spec, channel, message in (("wobble", "pose", "bad --pose"), ("video", "blink", "needs the driving video"),
                                   ("template:x.npz", "gaze", "one built-in template"),
                                   ("source:x", "pose", "takes no argument")):  # fmt: skip
        with pytest.raises(ValueError, match=message):
            Channel.parse(spec, channel)
    defaults = {c: (str(resolve_channel(c, None, False, [])), str(resolve_channel(c, None, True, [])))
                for c in ("pose", "blink", "gaze")}  # fmt: skip
    assert defaults == {"pose": ("template:builtin", "source"), "blink": ("template", "source"),
                        "gaze": ("source", "source")}  # fmt: skip
    assert resolve_channel("pose", None, False, [], pose_template="static") == Channel("source")
    assert resolve_channel("blink", None, True, ["blink", "lip_scale"]) == Channel("timeline")
    with pytest.raises(ValueError, match="the timeline keys blink but --blink is template"):
        resolve_channel("blink", "template", False, ["blink"])
    with pytest.raises(ValueError, match="has none of gaze:x, gaze:y"):
        resolve_channel("gaze", "timeline", False, ["blink"])
    with pytest.raises(ValueError, match="--gaze"):
        Controls(gaze="sideways")
    with pytest.raises(ValueError, match=r"timeline control 'gaze:x': 45.0 is outside its range \[-30, 30\]"):
        Timeline({"gaze:x": [[0, 45]]})


def _drive(pipeline: TalkingFacePipeline, source, wav: torch.Tensor, **controls):
    still = {"pose": "source", "blink": "source", "gaze": "source"}
    return pipeline.motion(wav, source, Controls(**{**still, **controls}))


def test_each_channel_leaves_every_other_keypoint_bit_identical(
    pipeline: TalkingFacePipeline, astronaut_path: Path
) -> None:
    source = pipeline.load_source(astronaut_path)
    wav = speech(WAV_TEXT)
    base = _drive(pipeline, source, wav)
    n = len(base.keypoints)
    # pose: the expression, scale and lips stay; only R and t change
    posed = _drive(pipeline, source, wav, pose="template")
    for name in ("exp", "scale", "lips"):
        assert torch.equal(getattr(posed, name), getattr(base, name)), name
    assert not torch.equal(posed.R, base.R) and (posed.keypoints - base.keypoints).abs().amax(dim=(0, 2)).min() > 0
    # blink and gaze: the eye keypoints only, and the pose not at all
    closure = torch.from_numpy(natural_blinks(n))
    for channel in ("blink", "gaze"):
        moved = _drive(pipeline, source, wav, **{channel: "template"})
        assert torch.equal(moved.keypoints[:, OTHERS], base.keypoints[:, OTHERS]), channel
        assert torch.equal(moved.R, base.R) and torch.equal(moved.t, base.t)
        assert not torch.equal(moved.keypoints[:, list(EYES)], base.keypoints[:, list(EYES)]), channel
    blinked = _drive(pipeline, source, wav, blink="template")
    frames_moved = (blinked.keypoints - base.keypoints).abs().amax(dim=(1, 2)) > 0
    assert torch.equal(frames_moved, closure > 0)  # the eyes move in the blinks, and only then
    torch.testing.assert_close(blinked.exp - base.exp, blink_delta(closure), atol=1e-7, rtol=0)
    # without a LivePortrait landmark (OpenCV cropper) the eye MLP is not used, whatever the option says
    assert torch.equal(_drive(pipeline, source, wav, blink="template", eye_retargeting=False).keypoints,
                       blinked.keypoints)  # fmt: skip


def test_the_timeline_keys_each_channel(pipeline: TalkingFacePipeline, astronaut_path: Path) -> None:
    source = pipeline.load_source(astronaut_path)
    wav = speech(WAV_TEXT)
    base = _drive(pipeline, source, wav)
    n = len(base.keypoints)
    end = (n - 1) / 25
    timeline = Timeline({"pose:yaw": [[0, 0], [end, 20]], "pose:x": [[0, 0], [end, 0.1]], "blink": [[0, 0], [end, 1]],
                         "gaze:x": [[0, -10], [end, 10]]})  # fmt: skip
    keyed = pipeline.motion(wav, source, Controls(timeline=timeline))  # a keyed channel is the timeline's
    yaw = torch.linspace(0, 20, n)
    expected_R = rotation_matrix(torch.zeros(n), yaw, torch.zeros(n)) @ source.motion.R[0]
    torch.testing.assert_close(keyed.R, expected_R, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(keyed.t[:, 0] - source.motion.t[0, 0], torch.linspace(0, 0.1, n), atol=1e-6, rtol=0)
    torch.testing.assert_close(keyed.t[:, 2], source.motion.t[:, 2].expand(n))  # t_z stays the source's
    eyes = blink_delta(torch.linspace(0, 1, n)) + gaze_delta(torch.linspace(-10, 10, n), torch.zeros(n))
    torch.testing.assert_close(keyed.exp - base.exp, eyes, atol=1e-6, rtol=0)
    # keyframes at 0 leave the channel as the source's, bit for bit
    zero = Timeline({"pose:roll": [[0, 0]], "blink": [[0, 0]], "gaze:y": [[0, 0]]})
    assert torch.equal(pipeline.motion(wav, source, Controls(timeline=zero)).keypoints, base.keypoints)


def test_channels_from_a_driving_video(pipeline: TalkingFacePipeline, astronaut_path: Path, tmp_path: Path) -> None:
    driving_path = talking_video(tmp_path / "driving.mp4", "Hi there.")
    driving = pipeline.load_source(driving_path)
    source = pipeline.load_source(astronaut_path)
    wav = speech(WAV_TEXT)
    base = _drive(pipeline, source, wav)
    n = len(base.keypoints)
    d = driving.motion
    spec = f"video:{driving_path}"
    posed = _drive(pipeline, source, wav, pose=spec)
    template = PoseTemplate(*(v.numpy().reshape(len(d.kp), -1)[:, 0] for v in (d.pitch, d.yaw, d.roll)), d.t.numpy())
    R, t = relative_pose(template.extended(n), source.motion.R[0], source.motion.t[0])
    assert torch.equal(posed.R, R) and torch.equal(posed.t, t) and torch.equal(posed.exp, base.exp)
    eyed = _drive(pipeline, source, wav, blink=spec, gaze=spec)
    closure, gaze = (ping_pong(v, n) for v in eye_signals(d.exp))  # no landmarks: both read from the eye keypoints
    torch.testing.assert_close(eyed.exp - base.exp, blink_delta(closure) + gaze_delta(gaze[:, 0], gaze[:, 1]),
                               atol=1e-7, rtol=0)  # fmt: skip
    assert torch.equal(eyed.keypoints[:, OTHERS], base.keypoints[:, OTHERS])
    pipeline.liveportrait = None
    with pytest.raises(ValueError, match="give --weights"):
        _drive(pipeline, source, wav, gaze=spec)


def test_blinks_through_liveportraits_eye_retargeting(pipeline: TalkingFacePipeline, astronaut_path: Path) -> None:
    """With LivePortrait's 203 landmarks and its stitching file, a blink is the eye MLP's delta at the target ratio
    open · (1 − closure), minus its delta at the open ratio, on the eye keypoints only."""
    source = pipeline.load_source(astronaut_path)
    landmarks = np.zeros((203, 2))
    landmarks[[0, 12, 6, 18]] = [(0, 0), (30, 0), (15, -3), (15, 3)]  # left eye open 0.2
    landmarks[[24, 36, 30, 42]] = [(50, 0), (90, 0), (70, -5), (70, 5)]  # right eye open 0.25
    source.crops = [dataclasses.replace(c, landmarks=landmarks) for c in source.crops]
    wav = speech(WAV_TEXT)
    base = _drive(pipeline, source, wav)
    n = len(base.keypoints)
    blinked = _drive(pipeline, source, wav, blink="template")
    lp = pipeline.liveportrait
    assert lp.has_stitching
    closure = torch.from_numpy(natural_blinks(n))
    x_s = source.motion.keypoints().expand(n, -1, -1)
    ratios = torch.tensor([[0.2, 0.25]]).expand(n, -1)
    opened = ratios.mean(1, keepdim=True)
    with torch.no_grad():
        delta = lp.stitching.eye(torch.cat([x_s.reshape(n, -1), ratios, opened * (1 - closure[:, None])], 1))
        delta = delta - lp.stitching.eye(torch.cat([x_s.reshape(n, -1), ratios, opened], 1))
    delta = delta.view(n, 21, 3)
    torch.testing.assert_close(blinked.keypoints - base.keypoints, delta * torch.isin(torch.arange(21),
                               torch.tensor(EYES))[None, :, None], atol=1e-6, rtol=0)  # fmt: skip
    assert torch.equal(blinked.keypoints[:, OTHERS], base.keypoints[:, OTHERS])
    assert torch.equal(blinked.keypoints[closure == 0], base.keypoints[closure == 0])  # open: exactly unchanged
    assert torch.equal(blinked.exp, base.exp)  # the MLP acts on the keypoints
    lids = _drive(pipeline, source, wav, blink="template", eye_retargeting=False)
    torch.testing.assert_close(lids.exp - base.exp, blink_delta(closure), atol=1e-7, rtol=0)


def test_cli_channels(release: Path, liveportrait_weights: Path, astronaut_path: Path, tmp_path: Path,
                      capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    common = ["generate", "--lac", str(release / "lac.pth"), "--no-progress", "--text", "Hello there."]
    rendering = ["--weights", str(liveportrait_weights), "--liveportrait-size", "tiny", "--cropper", "opencv"]
    timeline = tmp_path / "timeline.json"
    timeline.write_text(json.dumps({"controls": {"pose:pitch": [[0, 0], [1, 10]], "gaze:y": [[0, 0], [1, 20]]}}))
    driving = talking_video(tmp_path / "driving.mp4", "Hi.")
    motion = tmp_path / "m.npz"
    assert main([*common, *rendering, "--source", str(astronaut_path), "--out", str(tmp_path / "out.mp4"),
                 "--controls", str(timeline), "--blink", f"video:{driving}",
                 "--save-motion", str(motion)]) == 0  # fmt: skip
    saved = np.load(motion)
    assert not np.allclose(saved["R"][0], saved["R"][-1])  # the timeline's pitch
    assert main([*common, "--keypoint-video", str(tmp_path / "kp.mp4"), "--blink", "template", "--gaze", "template",
                 "--template-seed", "5"]) == 0  # fmt: skip
    capsys.readouterr()
    for options, message in (
        (["--pose", f"video:{tmp_path / 'missing.mp4'}"], "missing.mp4: no such video"),
        (["--gaze", "video"], "needs the driving video"),
        (["--blink", f"video:{driving}"], "--blink video needs LivePortrait's weights"),
        (["--pose", "template:none.npz"], "no such pose template"),
    ):
        assert main([*common, "--keypoint-video", str(tmp_path / "k.mp4"), *options]) == 2, options
        assert message in capsys.readouterr().err, options
