"""``pctalk generate``: the command line of :class:`~pctalk.inference.TalkingFacePipeline`."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["generate_main", "real_time_factor"]

EXAMPLE = """examples:
  pctalk generate --source face.jpg --audio speech.wav --out out.mp4 --lac lac.pth --weights pretrained_weights
  pctalk generate --source talk.mp4 --text "Hello there." --out out.mp4 --lac runs/lac/last.ckpt \\
      --emc emc.pth --emotion happy:lips:0.6 --emotion sad:upper_face:0.4 --style-edit duck=1.5
  pctalk generate --audio speech.wav --lac lac.pth --keypoint-video kp.mp4   # the motion alone, no weights
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pctalk generate",
        description="Audio (or text) plus a face image or video -> a controllable talking-face video.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    io = p.add_argument_group("inputs and outputs")
    io.add_argument("--source", help="a face image (jpg, png) or a talking video (mp4, mov)")
    speech = io.add_mutually_exclusive_group(required=True)
    speech.add_argument("--audio", help="the speech: wav, flac, mp3, m4a, or a video's audio track")
    speech.add_argument("--text", help="text to speak offline with eSpeak NG instead of an audio file")
    io.add_argument("--out", help="the output mp4 (H.264, 25 fps, with the audio)")
    io.add_argument("--save-motion", help="also write the driven motion as .npz")
    io.add_argument("--keypoint-video", help="also write a video of the 21 keypoints (needs no LivePortrait)")
    models = p.add_argument_group("models")
    models.add_argument(
        "--lac",
        required=True,
        help="LAC: a training checkpoint (.ckpt), or a lac.pth of pctalk or the official release",
    )
    models.add_argument(
        "--emc", help="EMC for emotions: a training checkpoint, or an emc.pth of pctalk or the official release"
    )
    models.add_argument("--audio-encoder", help="the audio encoder of a release lac.pth / emc.pth (default: beside it)")
    models.add_argument("--refiner", help="a separate lip refiner file (the official release's {'model_ft': ...})")
    models.add_argument("--weights", help="the weights root with liveportrait/ (and the crop models); needed to render")
    models.add_argument("--cropper", choices=("liveportrait", "dlib", "opencv"), default="liveportrait",
                        help="face detection: LivePortrait's ONNX models; dlib (no files); opencv (Haar)")  # fmt: skip
    models.add_argument("--liveportrait-size", choices=("official", "tiny"), default="official",
                        help="the sizes of the LivePortrait files (tiny: the test suite's random ones)")  # fmt: skip
    models.add_argument("--device", help="cuda, cpu, ... (default: cuda when available)")
    models.add_argument("--backend", choices=("torch", "onnx", "compile"), default="torch",
                        help="LivePortrait's runtime: torch (eager), onnx (ONNX Runtime on the networks `pctalk "
                             "export-onnx` wrote) or compile (torch.compile; CUDA graphs on a GPU)")  # fmt: skip
    models.add_argument("--onnx", metavar="FOLDER", help="the exported networks (default: WEIGHTS/liveportrait_onnx)")
    models.add_argument(
        "--audio-precision",
        choices=("fp32", "bf16"),
        default="fp32",
        help="bf16: the audio encoder about 2.6x faster on CPUs with AVX-512 BF16 (within 0.4%%)",
    )
    lips = p.add_argument_group("lip controls")
    lips.add_argument("--style", metavar="NAME",
                      help="speaking style by its training identity (dataset/identity, or the identity alone; "
                      "`pctalk styles LAC` lists them) or id; default: the mean of every style")  # fmt: skip
    lips.add_argument("--style-id", type=int, default=-1, help="speaking style by id; -1 = the mean")
    lips.add_argument(
        "--style-from",
        metavar="CLIP",
        help="the speaking style of a video of someone speaking (needs --style-encoder and --weights)",
    )
    lips.add_argument(
        "--style-encoder",
        metavar="FILE",
        help="a speaking-style encoder checkpoint (pctalk fit -c experiments/lac/style_encoder.yaml)",
    )
    lips.add_argument("--style-mix", action="append", default=[], metavar="NAME:WEIGHT",
                      help="mix in a style: --style A --style-mix B:0.3 is 0.7 A + 0.3 B; repeatable")  # fmt: skip
    lips.add_argument("--lip-scale", type=float, default=1.0, help="global lip scale")
    lips.add_argument("--loudness-scale", action="store_true", help="scale the lips per frame with the loudness")
    lips.add_argument(
        "--loudness-gain",
        type=float,
        metavar="G",
        help="loudness scale: lip scale change per dB, 0..0.1 (default 0.02; implies --loudness-scale)",
    )
    lips.add_argument(
        "--loudness-reference",
        type=float,
        metavar="DBFS",
        help="loudness scale: the loudness that keeps the lips as predicted (default -20 dBFS)",
    )
    lips.add_argument("--loudness-bounds", metavar="LO,HI",
                      help="loudness scale: the lowest and highest per-frame scale (default 0.7,1.4)")  # fmt: skip
    lips.add_argument("--style-edit", action="append", default=[], metavar="WORD=BETA",
                      help="scale a pronunciation (too/woo/pursing, bee/eee/widening, duck/aaa/opening), "
                      "e.g. duck=1.5; repeatable")  # fmt: skip
    lips.add_argument(
        "--style-edit-from",
        action="append",
        default=[],
        metavar="CLIP:WORD=BETA",
        help="scale your own pronunciation: WORD's lip shape in a video CLIP of someone saying it, e.g. "
        "me.mp4:hello=1.5 (needs --transcript), or me.mp4:hello@1.20-1.55=1.5 (seconds); repeatable",
    )
    lips.add_argument("--transcript", help="what the --style-edit-from clip says (its words are aligned to its audio)")
    emotion = p.add_argument_group("emotion controls (need --emc)")
    emotion.add_argument("--emotion", action="append", default=[], metavar="EMOTION:REGION:INTENSITY",
                         help="e.g. happy:lips:0.6; EMOTION may also be audio, text, image or video (the cues below); "
                         "REGION is lips, eyes, brows, upper_face, lower_face or all; repeatable")  # fmt: skip
    emotion.add_argument("--emotion-from-audio", help="speech whose emotion to use")
    emotion.add_argument("--emotion-from-text", help="a sentence whose emotion to use")
    emotion.add_argument("--emotion-from-image", help="a face image whose expression to use")
    emotion.add_argument("--emotion-from-video", help="a face video whose expression to use")
    head = p.add_argument_group(
        "head and eyes",
        "each of --pose, --blink and --gaze: source (the source's own: an image's held still), video:PATH (a driving "
        "video's), template (built-in natural motion; --pose template:FILE.npz too) or timeline (its tracks in "
        "--controls: pose:pitch|yaw|roll|x|y, blink, gaze:x|y)",
    )
    head.add_argument("--pose", metavar="CHANNEL", help="head pose (default: template for an image, else source)")
    head.add_argument(
        "--blink", metavar="CHANNEL", help="blinks (default: template, natural blink timing, for an image; else source)"
    )
    head.add_argument("--gaze", metavar="CHANNEL", help="eye gaze (default: source)")
    head.add_argument("--pose-template", default="builtin",
                      help="without --pose, head motion for image sources: builtin, a .npz, or static (its own "
                      "pose)")  # fmt: skip
    head.add_argument("--template-seed", type=int, default=0, help="seed of the built-in pose, blink and gaze motion")
    head.add_argument("--eye-retargeting", action=argparse.BooleanOptionalAction, default=True,
                      help="blink through LivePortrait's eye retargeting MLP when its stitching file is there and the "
                      "cropper gives LivePortrait's landmarks (else the lid keypoints move)")  # fmt: skip
    other = p.add_argument_group("other")
    other.add_argument("--controls", help="timeline.json keyframing any control over time")
    other.add_argument("--smooth", action=argparse.BooleanOptionalAction, default=True, help="Kalman-smooth the lips")
    other.add_argument("--smooth-emotion", action="store_true", help="Kalman-smooth the emotional deformation too")
    other.add_argument("--causal-smoothing", action="store_true",
                       help="Kalman-filter (each frame from the past only) instead of smoothing the whole clip: what "
                            "--stream does")  # fmt: skip
    other.add_argument("--refine", action=argparse.BooleanOptionalAction, default=True,
                       help="run the LAC lip refiner inside each window, before the lip controls and EMC (when the LAC "
                       "checkpoint has one)")  # fmt: skip
    other.add_argument(
        "--refine-after-emotion",
        action="store_true",
        help="refine the final lips after EMC instead (pctalk 0.1's order; can undo --lip-scale)",
    )
    other.add_argument("--pasteback", action=argparse.BooleanOptionalAction, default=True,
                       help="paste the face back into the source frame (else the 512x512 render)")  # fmt: skip
    other.add_argument("--window", type=int, help="frames per prediction window (default: each checkpoint's own)")
    other.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="show progress bars")
    live = p.add_argument_group("streaming")
    live.add_argument("--stream", action="store_true",
                      help="write frames as the speech arrives: --audio is a WAV that may still be growing (16 kHz "
                           "mono 16-bit), or - for raw 16 kHz mono 16-bit PCM on stdin; prints the first frame's "
                           "latency and the real-time factor")  # fmt: skip
    live.add_argument("--stream-idle", type=float, default=2.0, metavar="SECONDS",
                      help="a growing WAV has ended when it has not grown for this long")  # fmt: skip
    return p


def real_time_factor(clock: dict[str, float], frames: int) -> float:
    """``--stream``'s real-time factor: wall time from the first frame to the end over the audio those frames
    cover (25 fps), less the part after the first frame of the wait that tells the speech has ended (a growing WAV's
    ``--stream-idle``: from ``clock["resumed"]``, when the last chunk's work was done, to ``clock["end of audio"]``)."""
    later = (frames - 1) / 25
    if later <= 0:
        return float("nan")
    idle = min(clock["end of audio"], clock["end"]) - max(clock["resumed"], clock["first"])
    return (clock["end"] - clock["first"] - max(0.0, idle)) / later


def _stream(pipeline: Any, controls: Any, args: argparse.Namespace) -> Any:
    """``--stream``: frames written as the audio arrives; returns the motion."""
    import time

    import torch

    from pctalk.audio.mel import fit_to_frames
    from pctalk.audio.streaming import live_pcm
    from pctalk.inference.pipeline import DrivenMotion
    from pctalk.media import write_video

    source = pipeline.load_source(args.source)
    received: list[torch.Tensor] = []
    blocks: list[Any] = []
    clock: dict[str, float] = {}

    def chunks() -> Any:
        for chunk in live_pcm(sys.stdin.buffer if args.audio == "-" else args.audio, idle=args.stream_idle):
            clock.setdefault("start", time.monotonic())
            received.append(chunk)
            yield chunk
            clock["resumed"] = time.monotonic()  # the chunk's work is done: from here on, waiting for more audio
        clock["end of audio"] = time.monotonic()  # a growing WAV ends --stream-idle s after its last growth
        if not received:
            raise ValueError(f"no audio came from {'stdin' if args.audio == '-' else args.audio}")

    def frames() -> Any:
        for i, frame in enumerate(pipeline.stream(chunks(), source, controls, controls.pasteback, blocks.append)):
            if i == 0:
                clock["first"] = time.monotonic()
            yield frame
        clock["end"] = time.monotonic()

    n = lambda: sum(len(b.keypoints) for b in blocks)  # noqa: E731
    write_video(args.out, frames(), audio=lambda: fit_to_frames(torch.cat(received), n()))
    rtf = real_time_factor(clock, n())
    print(f"first frame after {1000 * (clock['first'] - clock['start']):.0f} ms of streaming; real-time factor "
          f"{rtf:.2f} after it (the end-of-stream wait left out; about 1 on speech arriving live keeps up with it, "
          f"above 1 falls behind)")  # fmt: skip
    return DrivenMotion.cat(blocks)


def _check_outputs(args: argparse.Namespace) -> None:
    """Every output can be written, checked before any work (rendering takes minutes)."""
    for option, value in (("--out", args.out), ("--keypoint-video", args.keypoint_video),
                          ("--save-motion", args.save_motion)):  # fmt: skip
        if not value:
            continue
        path = Path(value)
        if path.is_dir():
            raise ValueError(f"{option} {path} is a folder; give a file name, e.g. {path / 'out.mp4'}")
        folder = path.parent
        while not folder.exists():  # the folders it would create: the first existing one must be writable
            folder = folder.parent
        if not folder.is_dir():
            raise ValueError(f"{option} {path}: cannot write into {folder}, which is a file; write elsewhere")
        if not os.access(folder, os.W_OK):
            raise ValueError(
                f"{option} {path}: cannot write into {folder} (read-only or no permission); write elsewhere"
            )


def _parse_edit_from(item: str) -> tuple[str, tuple[float, float] | None, float, str]:
    """``CLIP:WORD=BETA`` or ``CLIP:WORD@START-END=BETA`` -> word, span (seconds) or ``None``, beta, clip."""
    clip, _, edit = item.rpartition(":")
    word, _, beta = edit.partition("=")
    word, _, times = word.partition("@")
    try:
        span = tuple(float(t) for t in times.split("-")) if times else None
        if not clip or not word or (span is not None and len(span) != 2):
            raise ValueError
        return word, span, float(beta), clip  # type: ignore[return-value]
    except ValueError:
        raise ValueError(f"bad --style-edit-from {item!r}: use CLIP:WORD=BETA (with --transcript) or "
                         f"CLIP:WORD@START-END=BETA, e.g. me.mp4:hello=1.5") from None  # fmt: skip


def _set_style(pipeline: Any, controls: Any, args: argparse.Namespace) -> None:
    """The speaking style the options name: ``--style`` / ``--style-id``, or a reference clip's code, with
    ``--style-mix`` terms mixed in."""
    from pctalk.inference.pipeline import mix_styles

    info = pipeline.lac.info
    given = [o for o, v in (("--style", args.style), ("--style-id", args.style_id != -1),
                            ("--style-from", args.style_from)) if v]  # fmt: skip
    if len(given) > 1:
        raise ValueError(f"give one of --style, --style-id and --style-from, not {' and '.join(given)}")
    if args.style is not None:
        controls.style_id = info.style_id(args.style)
    base: Any = controls.style_id
    if args.style_from:
        from pctalk.checkpoints.style_encoder import load_style_encoder  # (generate_main checked --style-encoder)

        encoder, _ = load_style_encoder(args.style_encoder)
        base = pipeline.style_code_from_clip(encoder, args.style_from)
    others = []
    for item in args.style_mix:
        name, _, weight = item.rpartition(":")
        try:
            others.append((info.style_id(name), float(weight)))
        except ValueError as err:
            if not name:
                raise ValueError(f"bad --style-mix {item!r}: use NAME:WEIGHT, e.g. WDA_KamalaHarris:0.3") from None
            raise ValueError(f"--style-mix {item}: {err}") from None
    if others or args.style_from:
        controls.style_code = mix_styles(info.n_styles, base, others)
        controls.__post_init__()


def generate_main(argv: Sequence[str]) -> int:
    """Run ``pctalk generate``; returns the exit status."""
    from pctalk.commands import _user_errors
    from pctalk.control.ranges import check_range
    from pctalk.inference.channels import Channel
    from pctalk.inference.pipeline import Controls, EmotionControl, TalkingFacePipeline
    from pctalk.inference.timeline import Timeline
    from pctalk.weights import MissingWeightsError

    args = _parser().parse_args(list(argv))
    try:
        if not (args.out or args.keypoint_video or args.save_motion):
            raise ValueError("nothing to write: give --out, --keypoint-video or --save-motion")
        _check_outputs(args)
        if args.out and not args.source:
            raise ValueError("--out renders a face: give --source (an image or a video)")
        if args.stream and (not (args.audio and args.out) or args.keypoint_video):
            raise ValueError("--stream renders speech as it arrives: give --audio (a WAV, or - for stdin) and --out, "
                             "and no --keypoint-video")  # fmt: skip
        if args.stream and args.refine_after_emotion:
            raise ValueError("--refine-after-emotion refines the whole clip at once; it cannot --stream")
        edits = {}
        for item in args.style_edit:
            word, _, beta = item.partition("=")
            if not beta:
                raise ValueError(f"bad --style-edit {item!r}: use WORD=BETA, e.g. duck=1.5")
            edits[word] = float(beta)
        loudness: dict[str, Any] = {}
        if args.loudness_gain is not None:
            loudness["loudness_gain"] = args.loudness_gain
        if args.loudness_reference is not None:
            loudness["loudness_reference"] = args.loudness_reference
        if args.loudness_bounds is not None:
            try:
                lo, hi = (float(v) for v in args.loudness_bounds.split(","))
            except ValueError:
                raise ValueError(f"bad --loudness-bounds {args.loudness_bounds!r}: use LO,HI, e.g. 0.7,1.4") from None
            loudness["loudness_bounds"] = (lo, hi)
        controls = Controls(
            style_id=args.style_id,
            lip_scale=args.lip_scale,
            loudness_scale=args.loudness_scale or bool(loudness),
            **loudness,
            style_edits=edits,
            emotions=[EmotionControl.parse(e) for e in args.emotion],
            emotion_from_audio=args.emotion_from_audio,
            emotion_from_text=args.emotion_from_text,
            emotion_from_image=args.emotion_from_image,
            emotion_from_video=args.emotion_from_video,
            timeline=Timeline.load(args.controls) if args.controls else None,
            smooth=args.smooth,
            smooth_emotion=args.smooth_emotion,
            causal_smoothing=args.causal_smoothing or args.stream,
            refine=args.refine,
            refine_after_emotion=args.refine_after_emotion,
            pose_template=args.pose_template,
            pose=args.pose,
            blink=args.blink,
            gaze=args.gaze,
            template_seed=args.template_seed,
            eye_retargeting=args.eye_retargeting,
            pasteback=args.pasteback,
            window=args.window,
        )
        edits_from = [_parse_edit_from(item) for item in args.style_edit_from]  # before loading anything
        for name in ("pose", "blink", "gaze"):
            if getattr(args, name) is not None:
                Channel.parse(getattr(args, name), name).check(name)
        for name, span, beta, clip in edits_from:
            check_range("beta", beta, f"--style-edit-from {clip}:{name}")
            if span is None and not args.transcript:
                raise ValueError(f"--style-edit-from {clip}:{name}: say where {name!r} is spoken in {clip}: give the "
                                 f"clip's transcript (--transcript), or WORD@START-END")  # fmt: skip
        if args.style_from and not args.style_encoder:
            raise ValueError(
                "--style-from needs --style-encoder FILE (train one: pctalk fit -c experiments/lac/style_encoder.yaml)"
            )
        driving = [n for n in ("pose", "blink", "gaze") if str(getattr(args, n)).startswith("video:")]
        needs_weights = (args.out or args.emotion_from_image or args.emotion_from_video or args.style_from
                         or args.style_edit_from or driving)  # fmt: skip
        if needs_weights and not args.weights:
            why = f"--{driving[0]} video" if driving and not args.out else "rendering"
            raise ValueError(f"{why} needs LivePortrait's weights: give --weights (see `pctalk weights check`)")
        pipeline = TalkingFacePipeline.from_checkpoints(
            args.lac,
            args.emc,
            weights=args.weights if (needs_weights or args.source) else None,
            audio_encoder=args.audio_encoder,
            refiner=args.refiner,
            cropper=args.cropper,
            liveportrait_size=args.liveportrait_size,
            device=args.device,
            progress=args.progress,
            audio_precision=args.audio_precision,
            backend=args.backend,
            onnx=args.onnx,
        )
        _set_style(pipeline, controls, args)
        for name, span, beta, clip in edits_from:
            controls.pronunciations[name] = pipeline.pronunciation_from_clip(clip, name, args.transcript, span)
            controls.style_edits[name] = beta
        controls.__post_init__()
        if args.stream:
            driven = _stream(pipeline, controls, args)
            if args.save_motion:
                driven.save(args.save_motion)
        else:
            driven = pipeline.generate(
                args.source, args.out, audio=args.audio, text=args.text, controls=controls,
                save_motion=args.save_motion, keypoint_video=args.keypoint_video,
            )  # fmt: skip
    except (*_user_errors(), OSError) as err:  # OSError: a disk that filled up while writing, ...
        if os.environ.get("PCTALK_DEBUG"):
            raise
        print(f"pctalk generate: error: {err}", file=sys.stderr)
        if isinstance(err, MissingWeightsError):
            print(
                f"  see every file: pctalk weights check --root {args.weights or 'pretrained_weights'}", file=sys.stderr
            )
        return 2
    written = [p for p in (args.out, args.keypoint_video, args.save_motion) if p]
    print(f"{len(driven.keypoints)} frames ({len(driven.keypoints) / 25:.2f} s) -> {', '.join(written)}")
    return 0
