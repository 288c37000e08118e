"""``TalkingFacePipeline``: audio (or text) and a face image or video -> a controllable talking-face video.

Motion stage (no renderer needed), in the paper's and the official release's order: audio features -> LAC lip
deformation over overlapping windows, each refined by the lip refiner -> Kalman smoothing -> lip controls (scale,
loudness, style edits) -> written back into the source expression -> EMC pure emotions composed per region -> the
driven keypoints, with the pose, blink and gaze channels (:mod:`pctalk.inference.channels`): each from the source,
a driving video, a template or the timeline.

Render stage: stitching, LivePortrait's warping module and decoder, paste-back into the source frame, H.264 mp4
with the audio muxed (written atomically).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from pctalk.audio.encoder import encode_windows
from pctalk.audio.io import ensure_audible, load_audio
from pctalk.audio.loudness import frame_loudness
from pctalk.audio.mel import audio_windows, fit_to_frames, num_frames
from pctalk.checkpoints import EMCStage, LACStage, load_emc_stage, load_lac_stage, to_device
from pctalk.control.emotion import EmotionTerm, compose, pure_emotions, replace_region
from pctalk.control.eyes import blink_delta, eye_open_ratio, eye_signals, gaze_delta, natural_blinks, natural_gaze
from pctalk.control.lip import edit_style, loudness_factor, pronunciation, scale_lips
from pctalk.control.ranges import check_range
from pctalk.data.schema import EMOTIONS
from pctalk.inference.channels import CHANNELS, Channel, resolve_channel
from pctalk.inference.kalman import kalman_smooth
from pctalk.inference.pose import PoseTemplate, builtin_template, load_template, ping_pong, relative_pose
from pctalk.inference.timeline import Timeline
from pctalk.keypoints.crop import Crop, FaceCropper, FaceNotFoundError, paste_back
from pctalk.keypoints.liveportrait import LivePortrait, Motion
from pctalk.keypoints.regions import EYES, LIPS, region
from pctalk.keypoints.transform import rotation_matrix, transform_keypoints
from pctalk.models.windows import Window, predict_windows
from pctalk.weights.io import atomic_write

__all__ = [
    "Controls",
    "DrivenMotion",
    "EmotionControl",
    "SourceFace",
    "SourceFrames",
    "TalkingFacePipeline",
    "mix_styles",
]

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
SOURCES = ("audio", "text", "image", "video")


@dataclass
class EmotionControl:
    """One emotion term: ``source`` is an emotion label (``happy``, ...) or a cue given separately (``audio``,
    ``text``, ``image``, ``video``); it acts on ``region`` with ``intensity``."""

    source: str
    region: str = "all"
    intensity: float = 0.5

    @classmethod
    def parse(cls, spec: str) -> EmotionControl:
        """``emotion[:region[:intensity]]``, e.g. ``happy:lips:0.6`` or ``sad:upper_face``."""
        parts = spec.split(":")
        if not 1 <= len(parts) <= 3 or (parts[0] not in EMOTIONS and parts[0] not in SOURCES):
            raise ValueError(
                f"bad emotion {spec!r}: use EMOTION[:REGION[:INTENSITY]] with EMOTION one of {', '.join(EMOTIONS)} "
                f"or a source ({', '.join(SOURCES)})"
            )
        region(parts[1]) if len(parts) > 1 else None  # validates the region name
        try:
            intensity = float(parts[2]) if len(parts) > 2 else 0.5
        except ValueError:
            raise ValueError(f"bad emotion {spec!r}: its intensity {parts[2]!r} is not a number") from None
        return cls(parts[0], parts[1] if len(parts) > 1 else "all", intensity)

    def __post_init__(self) -> None:
        check_range("intensity", self.intensity, f"--emotion {self.source}:{self.region} intensity")


@dataclass
class Controls:
    """Everything a user can control at generation time."""

    style_id: int = -1
    """Speaking style (a training identity's index); -1 is the mean of all styles."""
    style_code: tuple[float, ...] | None = None
    """A soft style code over the training identities instead of ``style_id`` (sums to 1): from a reference clip
    (:meth:`TalkingFacePipeline.style_code_from_clip`), or a mix of styles (:func:`mix_styles`)."""
    lip_scale: float = 1.0
    loudness_scale: bool = False
    """Scale the lips per frame with the audio's loudness: ``1 + gain · (loudness − reference)`` clamped to the
    bounds (:func:`pctalk.control.lip.loudness_factor`)."""
    loudness_gain: float = 0.02
    """Lip scale change per dB (a timeline's ``loudness_gain`` track keyframes it)."""
    loudness_reference: float = -20.0
    """The loudness, in dBFS, that keeps the lips as predicted."""
    loudness_bounds: tuple[float, float] = (0.7, 1.4)
    """The lowest and highest per-frame scale."""
    style_edits: dict[str, float] = field(default_factory=dict)
    """Pronunciation -> beta, e.g. {"duck": 1.5}: a built-in vector, or one of ``pronunciations``."""
    pronunciations: dict[str, tuple[float, ...]] = field(default_factory=dict)
    """The user's own pronunciation vectors (18 values, the six lip keypoints' x y z), by name; they take precedence
    over the built-in ones (:meth:`TalkingFacePipeline.pronunciation_from_clip`)."""
    emotions: list[EmotionControl] = field(default_factory=list)
    emotion_from_audio: str | None = None
    emotion_from_text: str | None = None
    emotion_from_image: str | None = None
    emotion_from_video: str | None = None
    timeline: Timeline | None = None
    smooth: bool = True
    """Kalman smoothing of the lip deformation."""
    smooth_emotion: bool = False
    refine: bool = True
    """Run the LAC lip refiner (when the LAC stage has one) inside each prediction window, as the paper and the
    official release do: before smoothing, the lip controls and EMC."""
    refine_after_emotion: bool = False
    """pctalk 0.1's order instead: refine the final lip keypoints after EMC (it can pull the lip scale back)."""
    pose_template: str = "builtin"
    """Head motion for an image source when ``pose`` is not given: ``builtin``, an ``.npz`` template, or ``static``
    (the image's own pose, as the official release)."""
    pose: str | None = None
    """The head-pose channel: ``source``, ``video:PATH``, ``template[:NAME]`` or ``timeline``
    (:mod:`pctalk.inference.channels`); default: a template for an image, its own for a video."""
    blink: str | None = None
    """The blink channel (the same kinds); default: natural blink timing for an image, its own for a video."""
    gaze: str | None = None
    """The gaze channel (the same kinds); default: the source's own."""
    template_seed: int = 0
    """Seed of the built-in pose, blink and gaze templates."""
    eye_retargeting: bool = True
    """Blink through LivePortrait's eye retargeting MLP when its stitching file was loaded and the cropper found
    LivePortrait's 203 landmarks (its eye-open ratio); else by the blink direction on the lid keypoints."""
    pasteback: bool = True
    window: int | None = None
    """Frames per prediction window (overlap: a fifth); default: each stage's own (the checkpoint's)."""

    def __post_init__(self) -> None:
        check_range("lip_scale", self.lip_scale, "--lip-scale (lip_scale)")
        if self.style_code is not None:
            code = np.asarray(self.style_code, np.float64)
            if code.ndim != 1 or not np.isfinite(code).all() or (code < 0).any() or abs(code.sum() - 1) > 1e-4:
                raise ValueError(f"style_code must be non-negative weights summing to 1, got {list(self.style_code)}")
        check_range("loudness_gain", self.loudness_gain, "--loudness-gain (loudness_gain)")
        check_range("loudness_reference", self.loudness_reference, "--loudness-reference (loudness_reference)")
        lo, hi = self.loudness_bounds
        check_range("loudness_bounds", (lo, hi), "--loudness-bounds (loudness_bounds)")
        if lo > hi:
            raise ValueError(f"--loudness-bounds (loudness_bounds): the lowest scale {lo} is above the highest {hi}")
        for word, beta in self.style_edits.items():
            check_range("beta", beta, f"--style-edit {word}")
        if self.window is not None and self.window < 2:
            raise ValueError(f"--window (window): {self.window} frames is too short; give at least 2")
        for name in CHANNELS:
            if getattr(self, name) is not None:
                Channel.parse(getattr(self, name), name)

    def emotion_terms(self) -> list[EmotionControl]:
        """The emotion terms, with a default one (whole face, 0.5) for each cue given without a term."""
        terms = list(self.emotions)
        for cue in SOURCES:
            if getattr(self, f"emotion_from_{cue}") and not any(t.source == cue for t in terms):
                terms.append(EmotionControl(cue))
        return terms


@dataclass
class SourceFace:
    """The source: original frames ``(N, H, W, 3)``, one crop and one motion per frame, and the crops as network
    input ``(N, 3, S, S)`` (``None`` without LivePortrait)."""

    frames: np.ndarray
    crops: list[Crop | None]
    motion: Motion
    images: torch.Tensor | None
    is_video: bool
    path: str = ""


@dataclass
class DrivenMotion:
    """The motion stage's output, per output frame: driven expression, pose, scale, the final keypoints, the final
    lip deformation ``s * exp[LIPS]`` (after the lip controls and EMC), and which source frame each output frame
    renders from."""

    exp: torch.Tensor  # (T, 21, 3)
    R: torch.Tensor  # (T, 3, 3)
    t: torch.Tensor  # (T, 3)
    scale: torch.Tensor  # (T, 1)
    keypoints: torch.Tensor  # (T, 21, 3)
    lips: torch.Tensor  # (T, 6, 3)
    source_index: np.ndarray  # (T,)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write every array as ``.npz`` (atomically)."""
        arrays = {k: (v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v) for k, v in vars(self).items()}

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)

        return atomic_write(Path(path), write)


@dataclass
class SourceFrames:
    """The source's motion per output frame, before LAC and EMC: ``kp``, ``exp (T, 21, 3)``, ``scale (T, 1)``, the
    pose channel's ``R (T, 3, 3)`` and ``t (T, 3)``, which source frame each output frame renders from, and the eye
    channels: ``closure (T,)`` (blink, 0 open .. 1 closed) and ``gaze (T, 2)``, ``None`` where the source's own;
    the source's own pose ``source_R``, ``source_t`` (what the lip refiner's reference keypoints use, so that the pose
    channel leaves the lips alone), its keypoints ``x_source (T, 21, 3)`` and eye-open ratios ``eye_ratios (T, 2)``
    (from LivePortrait's 203 landmarks, else ``None``) for the eye retargeting MLP."""

    kp: torch.Tensor
    exp: torch.Tensor
    scale: torch.Tensor
    R: torch.Tensor
    t: torch.Tensor
    index: np.ndarray
    closure: torch.Tensor | None = None
    gaze: torch.Tensor | None = None
    x_source: torch.Tensor | None = None
    eye_ratios: torch.Tensor | None = None
    source_R: torch.Tensor | None = None
    source_t: torch.Tensor | None = None


def mix_styles(n_styles: int, base: int | Sequence[float], others: Sequence[tuple[int, float]]) -> tuple[float, ...]:
    """A soft style code: ``base`` (a style id, -1 for the mean, or a code) weighted ``1 − Σw`` plus each of ``others``
    (``(style id, weight)``) weighted ``w``, e.g. ``mix_styles(4, 0, [(2, 0.3)])`` = 0.7 · style 0 + 0.3 · style 2.

    Raises:
        ValueError: weights outside [0, 1] or summing above 1, or a style that does not exist.
    """

    def one_hot(k: int) -> np.ndarray:
        if not -1 <= k < n_styles:
            raise ValueError(f"style {k} does not exist: the model has styles 0..{n_styles - 1}")
        return np.full(n_styles, 1.0 / n_styles) if k < 0 else np.eye(n_styles)[k]

    code = one_hot(base) if isinstance(base, int) else np.asarray(base, np.float64)
    total = sum(w for _, w in others)
    if any(not 0 <= w <= 1 for _, w in others) or total > 1 + 1e-9:
        raise ValueError(f"--style-mix weights must lie in [0, 1] and sum to at most 1, got {[w for _, w in others]}")
    code = (1 - total) * code + sum(w * one_hot(k) for k, w in others)
    return tuple(float(v) for v in code)


def _default_motion(device: torch.device) -> Motion:
    """A neutral frontal face (the synthetic corpus's template keypoints) for running without LivePortrait."""
    from pctalk.data.synthetic import template_keypoints

    zero = torch.zeros(1, device=device)
    return Motion(
        kp=torch.from_numpy(template_keypoints()).to(device)[None],
        exp=torch.zeros(1, 21, 3, device=device),
        pitch=zero,
        yaw=zero,
        roll=zero,
        t=torch.zeros(1, 3, device=device),
        scale=torch.full((1, 1), 1.7, device=device),
        R=rotation_matrix(zero, zero, zero),
    )


class TalkingFacePipeline:
    """PC-Talk inference.

    Args:
        lac: the LAC stage (:func:`load_lac_stage`).
        emc: the EMC stage, for emotions (optional).
        liveportrait: the frozen LivePortrait (optional: without it only the motion stage runs).
        cropper: the face cropper (needed with ``liveportrait``).
        device: where the networks run (default: CUDA when available).
        batch_size: frames rendered per batch.
        audio_precision: ``fp32`` (exact) or ``bf16`` (the audio encoder about 2.6x faster on CPUs with AVX-512
            BF16, features within about 0.4%).
    """

    def __init__(
        self,
        lac: LACStage,
        emc: EMCStage | None = None,
        liveportrait: LivePortrait | None = None,
        cropper: FaceCropper | None = None,
        device: str | torch.device | None = None,
        batch_size: int = 8,
        progress: bool = True,
        audio_precision: str = "fp32",
    ) -> None:
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.lac, self.emc = lac, emc
        to_device(lac, self.device)
        if emc is not None:
            to_device(emc, self.device)
        self.liveportrait = None if liveportrait is None else liveportrait.to(self.device)
        self.cropper = cropper
        self.batch_size, self.progress, self.audio_precision = batch_size, progress, audio_precision

    @classmethod
    def from_checkpoints(
        cls,
        lac: str | os.PathLike[str],
        emc: str | os.PathLike[str] | None = None,
        weights: str | os.PathLike[str] | None = None,
        audio_encoder: str | os.PathLike[str] | None = None,
        cropper: str = "liveportrait",
        liveportrait_size: str = "official",
        device: str | None = None,
        refiner: str | os.PathLike[str] | None = None,
        **kwargs,
    ) -> TalkingFacePipeline:
        """Load the stages (any format :mod:`pctalk.checkpoints` reads); ``weights`` (the LivePortrait root) is
        optional: without it only the motion runs. ``refiner``: a separate lip refiner file (the official release's
        ``{"model_ft": ...}``)."""
        from pctalk.keypoints.config import LivePortraitConfig
        from pctalk.keypoints.liveportrait import load_liveportrait

        lac_stage = load_lac_stage(lac, audio_encoder, refiner)
        emc_stage = None if emc is None else load_emc_stage(emc, audio_encoder)
        lp = crop = None
        if weights is not None:
            config = LivePortraitConfig.tiny() if liveportrait_size == "tiny" else LivePortraitConfig()
            lp = load_liveportrait(weights, config=config, require_stitching=False)
            crop = FaceCropper(cropper, weights_root=weights)
        return cls(lac_stage, emc_stage, lp, crop, device, **kwargs)

    # -- source -------------------------------------------------------------------------------------------------
    def load_source(self, path: str | os.PathLike[str] | np.ndarray, max_frames: int | None = None) -> SourceFace:
        """Crop the face of an image or of every frame of a video and extract its motion. ``path``: an image or video
        file, an ``(H, W, 3)`` uint8 RGB image, or ``(T, H, W, 3)`` frames of a video at 25 fps.

        Raises:
            FaceNotFoundError: no face in the source; the message names the file and what to do.
        """
        name = "the source image" if isinstance(path, np.ndarray) else str(path)
        if isinstance(path, np.ndarray) and path.ndim == 4:  # (T, H, W, 3) frames of a video
            frames, is_video, name = path[:max_frames], True, "the source frames"
        elif isinstance(path, np.ndarray):
            frames, is_video = path[None], False
        elif Path(path).suffix.lower() in IMAGE_EXTS:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise FileNotFoundError(f"cannot read the source image {path}")
            frames, is_video = image[None, ..., ::-1].copy(), False
        else:
            from pctalk.media import VideoReader

            reader = VideoReader(path)
            frames = np.concatenate(list(reader.chunks(64)))[:max_frames]
            is_video = True
        if self.liveportrait is None or self.cropper is None:
            return SourceFace(frames, [None] * len(frames), _default_motion(self.device), None, is_video, name)
        try:
            crops = self.cropper.crop_video(list(frames)) if is_video else [self.cropper.crop(frames[0])]
        except FaceNotFoundError as err:
            raise FaceNotFoundError(
                f"no face found in {name} ({err}); use a photo or video with one clearly visible, roughly frontal "
                f"face, or try the other cropper (--cropper opencv / liveportrait)"
            ) from None
        size = self.liveportrait.config.input_size
        images = np.stack([cv2.resize(c.image, (size, size), interpolation=cv2.INTER_AREA) for c in crops])
        tensor = torch.from_numpy(images).to(self.device).permute(0, 3, 1, 2).float() / 255
        with torch.no_grad():
            parts = [self.liveportrait.extract_motion(chunk) for chunk in tensor.split(self.batch_size)]
        fields = ("kp", "exp", "pitch", "yaw", "roll", "t", "scale", "R")
        motion = Motion(**{k: torch.cat([getattr(p, k) for p in parts]) for k in fields})
        return SourceFace(frames, crops, motion, tensor, is_video, name)

    # -- motion ---------------------------------------------------------------------------------------------------
    def _audio(self, audio: str | os.PathLike[str] | torch.Tensor | None, text: str | None) -> torch.Tensor:
        if text is not None:
            from pctalk.audio.tts import synthesize

            return synthesize(text).wav
        if audio is None:
            raise ValueError("give the speech: an audio file (--audio) or a text to speak (--text)")
        if isinstance(audio, torch.Tensor):
            return ensure_audible(audio, "the given audio")
        return ensure_audible(load_audio(audio), audio)

    def _features(self, encoder: torch.nn.Module, windows: torch.Tensor) -> torch.Tensor:
        return encode_windows(encoder, windows, precision=self.audio_precision)[None]  # (1, T, A)

    def _style(self, n_styles: int, style_id: int, code: Sequence[float] | None = None) -> torch.Tensor:
        """``(1,)`` style index, or ``(1, n_styles)`` soft code."""
        if code is not None:
            if len(code) != n_styles:
                raise ValueError(f"the style code has {len(code)} entries but the model has {n_styles} styles: it "
                                 f"comes from another model's styles")  # fmt: skip
            return torch.tensor([list(code)], dtype=torch.float32, device=self.device)
        if style_id >= n_styles:
            raise ValueError(
                f"style {style_id} does not exist: the model has {n_styles} styles (0..{n_styles - 1}; -1 = mean)"
            )
        return torch.tensor([style_id], device=self.device)

    @torch.no_grad()
    def pronunciation_from_clip(
        self,
        clip: str | os.PathLike[str],
        word: str,
        transcript: str | None = None,
        span: tuple[float, float] | None = None,
    ) -> tuple[float, ...]:
        """A pronunciation vector from a video of someone speaking: the mean lip deformation ``s · exp[LIPS]``
        (LivePortrait's motion) over the frames where ``word`` is spoken, minus the clip's median deformation (its
        rest shape), normalised (:func:`pctalk.control.lip.pronunciation_vector`). The frames come from ``span``
        (seconds), or from every occurrence of ``word`` in the clip's ``transcript``, aligned to its audio
        (:func:`pctalk.audio.alignment.align_words`).

        Returns:
            18 values (the six lip keypoints' x, y, z), for ``Controls.pronunciations``.

        Raises:
            ValueError: neither a transcript nor a span, ``word`` not in the transcript, or no frames in the span.
        """
        from pctalk.control.lip import pronunciation_vector
        from pctalk.media import VideoReader

        if Path(clip).suffix.lower() in IMAGE_EXTS:
            raise ValueError(f"{clip}: a pronunciation comes from a video of someone speaking, not an image")
        n = len(VideoReader(clip))  # the frames' times first: a word that is not there fails before any cropping
        if span is not None:
            spans = [span]
        elif transcript:
            from pctalk.audio.alignment import align_words

            words = align_words(load_audio(clip), transcript)
            key = word.strip().lower()
            spans = [(w.start, w.end) for w in words if w.text.strip(".,;:!?\"'").lower() == key]
            if not spans:
                raise ValueError(f"{word!r} is not in the transcript of {clip} ({' '.join(w.text for w in words)})")
        else:
            raise ValueError(f"say where {word!r} is spoken in {clip}: give the clip's transcript, or WORD@START-END")
        times = np.arange(n) / 25
        frames = [i for i in range(n) if any(a <= times[i] < b for a, b in spans)]
        if not frames:
            raise ValueError(f"no frame of {clip} lies in {spans} s (the clip is {n / 25:.2f} s long)")
        face = self.load_source(clip)
        m = face.motion
        lips = m.scale[:, :, None] * m.exp[:, list(LIPS)]  # (T, 6, 3)
        vector = pronunciation_vector(lips - lips.median(dim=0).values, frames)
        return tuple(float(v) for v in vector.reshape(-1))

    @torch.no_grad()
    def style_code_from_clip(
        self, encoder: torch.nn.Module, clip: str | os.PathLike[str] | np.ndarray, max_frames: int | None = None
    ) -> tuple[float, ...]:
        """The soft style code of a reference clip of someone speaking: its lip deformations ``s · exp[LIPS]``
        (LivePortrait's motion of every frame) through a :class:`~pctalk.models.style_encoder.SpeakingStyleEncoder`.

        Raises:
            ValueError: the encoder was trained for another number of styles than this LAC's.
            FaceNotFoundError: no face in the clip.
        """
        n_styles = self.lac.predictor.n_styles
        if encoder.n_styles != n_styles:
            raise ValueError(f"the style encoder knows {encoder.n_styles} styles but the LAC has {n_styles}: train it "
                             f"on the LAC's shards with --model.init_args.n_styles {n_styles}")  # fmt: skip
        face = self.load_source(clip, max_frames)
        if not face.is_video:
            raise ValueError(f"{face.path}: a speaking style comes from a video of someone speaking, not an image")
        m = face.motion
        lips = (m.scale[:, :, None] * m.exp[:, list(LIPS)])[None]  # (1, T, 6, 3)
        encoder = encoder.to(self.device).eval()
        return tuple(float(v) for v in encoder.code(lips)[0])

    def _emotion_embedding(self, control: EmotionControl, controls: Controls) -> torch.Tensor | None:
        """The emotion embedding of a label or of a learned source's cue (``None`` for the image / mean-video kind)."""
        emc = self.emc
        if control.source in EMOTIONS:
            return emc.predictor.embed(torch.tensor([EMOTIONS.index(control.source)], device=self.device))
        cue = getattr(controls, f"emotion_from_{control.source}")
        if control.source == "audio":
            if "audio" not in emc.sources:
                raise ValueError("this EMC checkpoint has no audio emotion source (train one with sources: [audio])")
            return emc.sources["audio"](load_audio(cue).to(self.device)[None])
        if control.source == "text":
            if "text" not in emc.sources:
                raise ValueError("this EMC checkpoint has no text emotion source (train one with sources: [text])")
            return emc.sources["text"]([cue])
        if control.source == "video" and "video" in emc.sources:
            reference = self.load_source(cue, max_frames=250)
            return emc.sources["video"](reference.motion.exp[None])
        return None

    def frames(self, source: SourceFace, n: int, controls: Controls) -> SourceFrames:
        """The source's motion for each of ``n`` output frames (a video's own frames, ping-ponged; an image's, held),
        with the pose, blink and gaze of their channels (:mod:`pctalk.inference.channels`)."""
        count = len(source.motion.kp)
        index = ping_pong(np.arange(count), n) if source.is_video else np.zeros(n, dtype=np.int64)
        idx = torch.from_numpy(index).to(self.device)
        m = source.motion
        timeline = controls.timeline or Timeline()
        channels = {c: resolve_channel(c, getattr(controls, c), source.is_video, list(timeline.tracks),
                                       controls.pose_template) for c in CHANNELS}  # fmt: skip
        driving: dict[str, SourceFace] = {}

        def video(channel: str) -> SourceFace:
            path = channels[channel].arg
            if path not in driving:
                if self.liveportrait is None or self.cropper is None:
                    raise ValueError(f"--{channel} video:{path} reads the video's motion with LivePortrait: give "
                                     f"--weights")  # fmt: skip
                driving[path] = self.load_source(path)
                if not driving[path].is_video:
                    raise ValueError(f"--{channel} video:{path} is an image; give a video of a face")
            return driving[path]

        R, t = self._pose(channels["pose"], m, idx, n, timeline, controls.template_seed, video)
        closure, gaze = self._eyes(channels, n, timeline, controls.template_seed, video)
        ratios = None
        if closure is not None and all(c is not None and c.landmarks is not None and len(c.landmarks) == 203
                                       for c in source.crops):  # fmt: skip
            ratios = torch.tensor(np.stack([eye_open_ratio(c.landmarks) for c in source.crops]), dtype=torch.float32)
            ratios = ratios.to(self.device)[idx]
        x_source = m.keypoints()[idx]
        return SourceFrames(m.kp[idx], m.exp[idx].clone(), m.scale[idx], R, t, index, closure, gaze, x_source, ratios,
                            m.R[idx], m.t[idx])  # fmt: skip

    def _pose(
        self,
        channel: Channel,
        m: Motion,
        idx: torch.Tensor,
        n: int,
        timeline: Timeline,
        seed: int,
        video: Callable[[str], SourceFace],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``R (n, 3, 3)`` and ``t (n, 3)`` of the pose channel."""
        if channel.kind == "source":
            return m.R[idx], m.t[idx]
        if channel.kind == "timeline":
            values = {k: timeline.values(f"pose:{k}", n) for k in ("pitch", "yaw", "roll", "x", "y")}
            values = {k: np.zeros(n, np.float32) if v is None else v for k, v in values.items()}
            shift = np.stack([values["x"], values["y"], np.zeros(n, np.float32)], axis=1)
            offsets = PoseTemplate(values["pitch"], values["yaw"], values["roll"], shift, name="timeline")
            return relative_pose(offsets, m.R[idx], m.t[idx], relative=False)
        if channel.kind == "video":
            d = video("pose").motion
            arrays = [v.detach().cpu().numpy().reshape(len(d.kp), -1) for v in (d.pitch, d.yaw, d.roll, d.t)]
            template = PoseTemplate(arrays[0][:, 0], arrays[1][:, 0], arrays[2][:, 0], arrays[3], name="video")
        else:
            template = builtin_template(seed=seed) if channel.arg == "builtin" else load_template(channel.arg)
        return relative_pose(template.extended(n), m.R[0], m.t[0])

    def _eyes(
        self,
        channels: dict[str, Channel],
        n: int,
        timeline: Timeline,
        seed: int,
        video: Callable[[str], SourceFace],
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The blink channel's closure ``(n,)`` and the gaze channel's ``(n, 2)``; ``None`` for the source's own."""

        def stretched(values: torch.Tensor) -> torch.Tensor:
            return ping_pong(values, n).to(self.device)

        closure = gaze = None
        blink = channels["blink"]
        if blink.kind == "template":
            closure = torch.from_numpy(natural_blinks(n, seed=seed)).to(self.device)
        elif blink.kind == "timeline":
            closure = torch.from_numpy(timeline.values("blink", n)).to(self.device)
        elif blink.kind == "video":
            d = video("blink")
            if all(c is not None and c.landmarks is not None for c in d.crops):  # the lids' own opening
                ratio = torch.tensor([eye_open_ratio(c.landmarks).mean() for c in d.crops], dtype=torch.float32)
                opened = torch.quantile(ratio, 0.9) if len(ratio) > 1 else ratio.max()
                closure = stretched((1 - ratio / opened.clamp_min(1e-6)).clamp(0, 1))
            else:
                closure = stretched(eye_signals(d.motion.exp)[0].cpu())
        look = channels["gaze"]
        if look.kind == "template":
            gaze = torch.from_numpy(natural_gaze(n, seed=seed)).to(self.device)
        elif look.kind == "timeline":
            axes = [timeline.values(f"gaze:{a}", n) for a in "xy"]
            gaze = torch.from_numpy(np.stack([np.zeros(n, np.float32) if v is None else v for v in axes], 1))
            gaze = gaze.to(self.device)
        elif look.kind == "video":
            gaze = stretched(eye_signals(video("gaze").motion.exp)[1].cpu())
        return closure, gaze

    def motion(self, wav: torch.Tensor, source: SourceFace, controls: Controls | None = None) -> DrivenMotion:
        """The driven motion for 16 kHz speech ``wav (N,)`` and ``source`` under ``controls``."""
        controls = controls or Controls()
        n = num_frames(len(wav))
        if n < 1:
            raise ValueError(f"the audio is {len(wav) / 16000:.3f} s long, shorter than one video frame (40 ms)")
        windows = audio_windows(wav, n).to(self.device)
        feat = self._features(self.lac.audio_encoder, windows)
        emc_feat = None
        if self.emc is not None and self._terms(controls, controls.timeline or Timeline()):
            hashes = {stage.info.audio_encoder.get("sha256") for stage in (self.lac, self.emc)}
            shared = (len(hashes) == 1 and None not in hashes) or self.emc.audio_encoder is self.lac.audio_encoder
            emc_feat = feat if shared else self._features(self.emc.audio_encoder, windows)
        wants_loudness = controls.loudness_scale or (controls.timeline and controls.timeline.names("loudness_gain"))
        loudness = frame_loudness(fit_to_frames(wav, n), n).to(self.device) if wants_loudness else None
        return self.drive(feat, self.frames(source, n, controls), controls, emc_feat, loudness)

    def drive(
        self,
        feat: torch.Tensor,
        frames: SourceFrames,
        controls: Controls | None = None,
        emc_feat: torch.Tensor | None = None,
        loudness: torch.Tensor | None = None,
    ) -> DrivenMotion:
        """The motion stage from audio features, in the paper's and the official release's order: LAC predicts the
        deformation ``D`` window by window, its lip refiner refines each window (``refined = R(a, ref + D) - ref``,
        ``ref`` the frames' undeformed lip keypoints) before the window's tail warm-starts the next; then Kalman
        smoothing, lip scale (global, timeline, loudness), style edits, write-back ``exp[kp] = D / s``; then EMC
        adds the pure emotions per region.

        Args:
            feat: ``(1, T, A)`` LAC's audio features.
            frames: the source's motion per output frame (:meth:`frames`).
            emc_feat: ``(1, T, A')`` EMC's audio features (default: ``feat``).
            loudness: ``(T,)`` frame loudness in dBFS, for ``controls.loudness_scale``.
        """
        controls = controls or Controls()
        timeline = controls.timeline or Timeline()
        lac, n = self.lac, feat.shape[1]
        info = lac.info
        idx = list(info.keypoints)
        style = self._style(lac.predictor.n_styles, controls.style_id, controls.style_code)
        refine = controls.refine and lac.refiner is not None and not controls.refine_after_emotion
        if refine:  # the frames' undeformed keypoints in the source's own pose: the pose channel leaves the lips alone
            zero = torch.zeros_like(frames.exp)
            own_R = frames.R if frames.source_R is None else frames.source_R
            own_t = frames.t if frames.source_t is None else frames.source_t
            ref = transform_keypoints(frames.kp, own_R, zero, frames.scale, own_t)[:, idx].reshape(1, n, -1)

        def predict(audio: torch.Tensor, warm: torch.Tensor | None, w: Window) -> torch.Tensor:
            D = lac.predictor.generate(audio, style, warm)
            if refine:
                with torch.no_grad():
                    D = lac.refiner(ref[:, w.start : w.stop] + D, audio) - ref[:, w.start : w.stop]
            return D

        D = predict_windows(predict, feat, controls.window or info.window)[0].view(n, len(idx), 3)
        if controls.smooth:
            D = kalman_smooth(D)
        factor = torch.full((n,), float(controls.lip_scale), device=self.device)
        if (track := timeline.values("lip_scale", n)) is not None:
            factor = factor * torch.from_numpy(track).to(self.device)
        if loudness is not None:
            gain = timeline.values("loudness_gain", n)
            gain = torch.from_numpy(gain).to(self.device) if gain is not None else controls.loudness_gain
            lo, hi = controls.loudness_bounds
            factor = factor * loudness_factor(loudness, controls.loudness_reference, gain, lo, hi).to(self.device)
        D = scale_lips(D, factor)
        edits = dict(controls.style_edits)
        edits.update({name.split(":")[1]: None for name in timeline.names("style_edit:")})
        lip_rows = [idx.index(k) for k in LIPS]
        for word, beta in edits.items():
            track = timeline.values(f"style_edit:{word}", n)
            beta_t = torch.from_numpy(track).to(self.device) if track is not None else float(beta)
            own = controls.pronunciations.get(word)
            vector = torch.tensor(own, dtype=D.dtype).view(len(LIPS), 3) if own is not None else pronunciation(word)
            D[:, lip_rows] = edit_style(D[:, lip_rows], vector.to(self.device), beta_t)

        exp, scale = frames.exp.clone(), frames.scale
        exp[:, idx] = D / scale[:, :, None]  # write back: exp[kp] = D / s
        exp = self._emotions(exp, scale, feat if emc_feat is None else emc_feat, controls, timeline)
        eyes = list(EYES)  # the eye channels move these keypoints only
        if frames.gaze is not None:
            exp[:, eyes] += gaze_delta(frames.gaze[:, 0], frames.gaze[:, 1])[:, eyes]
        retarget = frames.closure is not None and self._retargets_eyes(frames, controls)
        if frames.closure is not None and not retarget:
            exp[:, eyes] += blink_delta(frames.closure)[:, eyes]
        keypoints = transform_keypoints(frames.kp, frames.R, exp, scale, frames.t)
        if retarget:
            keypoints[:, eyes] += self._eye_retargeting(frames)[:, eyes]
        if controls.refine_after_emotion and controls.refine and lac.refiner is not None:
            with torch.no_grad():  # pctalk 0.1's order, kept as an option: it can pull the lip scale back
                refined = lac.refiner(keypoints[:, list(LIPS)].reshape(1, n, -1), feat).view(n, len(LIPS), 3)
            keypoints[:, list(LIPS)] = refined
            shift = torch.zeros_like(refined[:, :1])
            shift[..., :2] = frames.t[:, None, :2]  # x = s * (kp R + exp) + t, t_z = 0: exp from the refined x
            exp[:, list(LIPS)] = (refined - shift) / scale[:, :, None] - (frames.kp @ frames.R)[:, list(LIPS)]
        lips = exp[:, list(LIPS)] * scale[:, :, None]
        return DrivenMotion(exp, frames.R, frames.t, scale, keypoints, lips, frames.index)

    def _retargets_eyes(self, frames: SourceFrames, controls: Controls) -> bool:
        lp = self.liveportrait
        return controls.eye_retargeting and lp is not None and lp.has_stitching and frames.eye_ratios is not None

    def _eye_retargeting(self, frames: SourceFrames) -> torch.Tensor:
        """LivePortrait's eye retargeting for the blink closures: the MLP's deltas ``(T, 21, 3)`` at the target ratio
        ``open · (1 − closure)`` (``open`` the source's mean eye-open ratio) minus those at ``open``, so that open
        eyes (closure 0) leave the keypoints exactly as they are."""
        ratios = frames.eye_ratios
        opened = ratios.mean(dim=1, keepdim=True)
        target = opened * (1 - frames.closure[:, None])
        with torch.no_grad():
            closed = self.liveportrait.retarget_eyes(frames.x_source, torch.cat([ratios, target], dim=1))
            still = self.liveportrait.retarget_eyes(frames.x_source, torch.cat([ratios, opened], dim=1))
        return closed - still

    def _terms(self, controls: Controls, timeline: Timeline) -> list[EmotionControl]:
        """The emotion terms: the controls' and those only the timeline names (at intensity 0 where not keyed)."""
        terms = controls.emotion_terms()
        for name in timeline.names("emotion:"):
            _, source, area = name.split(":")
            if not any(t.source == source and t.region == area for t in terms):
                terms.append(EmotionControl(source, area, 0.0))
        return terms

    def _emotions(
        self, exp: torch.Tensor, scale: torch.Tensor, feat: torch.Tensor, controls: Controls, timeline: Timeline
    ) -> torch.Tensor:
        terms = self._terms(controls, timeline)
        if not terms:
            return exp
        if self.emc is None:
            raise ValueError("emotion controls need an EMC checkpoint (--emc)")
        emc, n = self.emc, exp.shape[0]
        code = controls.style_code
        if code is not None and len(code) != emc.predictor.decoder.n_styles:
            code = None  # a code over the LAC's identities: EMC (trained on its own) takes the mean style
            warnings.warn("the style code is over the LAC's training identities; EMC, trained on others, uses the "
                          "mean of its styles", stacklevel=2)  # fmt: skip
        style = self._style(emc.predictor.decoder.n_styles, controls.style_id if code is None else -1, code)
        learned: list[tuple[EmotionControl, torch.Tensor | float, torch.Tensor]] = []
        for control in terms:
            track = timeline.values(f"emotion:{control.source}:{control.region}", n)
            intensity = torch.from_numpy(track).to(self.device) if track is not None else control.intensity
            if control.source == "neutral":
                continue  # neutral minus neutral: nothing to add
            embedding = self._emotion_embedding(control, controls)
            if embedding is None:  # image (or a video without a learned source): its expression replaces the region
                cue = getattr(controls, f"emotion_from_{control.source}")
                reference = self.load_source(cue, max_frames=250).motion.exp.mean(0)
                blend = torch.as_tensor(intensity, dtype=exp.dtype, device=self.device)
                blend = blend[:, None, None] if blend.ndim else blend
                exp = exp + blend * (replace_region(exp, reference, control.region) - exp)
            else:
                learned.append((control, intensity, embedding))
        if not learned:
            return exp
        embeddings = torch.cat([e for _, _, e in learned])
        window = controls.window or emc.info.window
        deformations = pure_emotions(emc.predictor, feat, embeddings, style, window)  # one batched pass
        additive = []
        for (control, intensity, _), deformation in zip(learned, deformations):
            if controls.smooth_emotion:
                deformation = kalman_smooth(deformation)
            additive.append(EmotionTerm(deformation, control.region, intensity))
        return compose(exp, scale, additive)

    # -- render ---------------------------------------------------------------------------------------------------
    def render(self, source: SourceFace, driven: DrivenMotion, pasteback: bool = True) -> Iterator[np.ndarray]:
        """Output frames, ``(H, W, 3)`` uint8 each: renders pasted into the source frames, or the 512 renders."""
        lp = self.liveportrait
        if lp is None or source.images is None:
            raise ValueError(
                "rendering needs LivePortrait's weights (--weights; `pctalk weights check` lists the files); "
                "without them, use --keypoint-video and --save-motion for the motion alone"
            )
        m = source.motion
        x_source_all = m.keypoints()
        features: dict[int, torch.Tensor] = {}
        n = len(driven.keypoints)
        for start in range(0, n, self.batch_size):
            idx = driven.source_index[start : start + self.batch_size]
            for i in set(idx.tolist()) - set(features):
                features[i] = lp.appearance(source.images[i : i + 1])
            if not source.is_video and len(features) > 1:
                features = {0: features[0]}
            feature = torch.cat([features[int(i)] for i in idx])
            x_s = x_source_all[torch.from_numpy(idx).to(self.device)]
            x_d = driven.keypoints[start : start + len(idx)]
            with torch.no_grad():
                x_d = lp.stitch(x_s, x_d)  # a no-op when the stitching file was not there
                render = lp.warp_decode(feature, x_s, x_d)
            images = (render.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
            for j, image in zip(idx, images):
                frame = paste_back(image, source.crops[j], source.frames[j]) if pasteback else image
                yield frame[: frame.shape[0] // 2 * 2, : frame.shape[1] // 2 * 2]  # H.264 needs even sizes
            if source.is_video:  # keep only what the next batch may reuse
                features = {i: f for i, f in features.items() if i >= int(idx.max())}

    def generate(
        self,
        source: str | os.PathLike[str] | np.ndarray | None,
        out: str | os.PathLike[str] | None,
        audio: str | os.PathLike[str] | torch.Tensor | None = None,
        text: str | None = None,
        controls: Controls | None = None,
        save_motion: str | os.PathLike[str] | None = None,
        keypoint_video: str | os.PathLike[str] | None = None,
    ) -> DrivenMotion:
        """Everything: the motion, then the outputs asked for (the video ``out``, a keypoint video, the motion)."""
        from rich.progress import Progress

        from pctalk.inference.keypoint_video import draw_keypoints
        from pctalk.media import write_video

        controls = controls or Controls()
        wav = self._audio(audio, text)
        with Progress(disable=not self.progress, transient=True) as bar:
            task = bar.add_task("motion", total=None)
            face = self.load_source(source) if source is not None else SourceFace(
                np.zeros((1, 256, 256, 3), np.uint8), [None], _default_motion(self.device), None, False
            )  # fmt: skip
            driven = self.motion(wav, face, controls)
            bar.update(task, total=1, completed=1)
            n = len(driven.keypoints)
            if save_motion is not None:
                driven.save(save_motion)
            if keypoint_video is not None:
                write_video(keypoint_video, draw_keypoints(driven.keypoints), audio=fit_to_frames(wav, n))
            if out is not None:
                frames = self.render(face, driven, controls.pasteback)
                render_task = bar.add_task("rendering", total=n)

                def counted(frames=frames):
                    for frame in frames:
                        bar.update(render_task, advance=1)
                        yield frame

                write_video(out, counted(), audio=fit_to_frames(wav, n))
        return driven
