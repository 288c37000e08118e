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
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
import torch

from pctalk.audio.encoder import encode_windows
from pctalk.audio.io import ensure_audible, load_audio
from pctalk.audio.mel import fit_to_frames, num_frames
from pctalk.checkpoints import EMCStage, LACStage, load_emc_stage, load_lac_stage, to_device
from pctalk.control.eyes import eye_open_ratio, eye_signals, natural_blinks, natural_gaze
from pctalk.control.ranges import check_range
from pctalk.data.schema import EMOTIONS
from pctalk.inference.channels import CHANNELS, Channel, resolve_channel
from pctalk.inference.pose import PoseTemplate, builtin_template, load_template, ping_pong, relative_pose
from pctalk.inference.prefetch import prefetch
from pctalk.inference.streaming import MotionStream
from pctalk.inference.timeline import Timeline
from pctalk.keypoints.crop import Crop, FaceCropper, FaceNotFoundError, paste_back
from pctalk.keypoints.liveportrait import LivePortrait, Motion
from pctalk.keypoints.regions import LIPS, region
from pctalk.keypoints.transform import rotation_matrix
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
    causal_smoothing: bool = False
    """Kalman-filter the deformations (each frame from the frames up to it) instead of smoothing them over the whole
    clip: what :meth:`TalkingFacePipeline.stream` does, so that offline and streamed frames are equal."""
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

    def slice(self, start: int, stop: int) -> DrivenMotion:
        """Frames ``start .. stop - 1``."""
        return DrivenMotion(**{k: v[start:stop] for k, v in vars(self).items()})

    @classmethod
    def cat(cls, parts: Sequence[DrivenMotion]) -> DrivenMotion:
        """Consecutive blocks as one."""
        if len(parts) == 1:
            return parts[0]
        fields = {k: [getattr(p, k) for p in parts] for k in vars(parts[0])}
        return cls(**{k: np.concatenate(v) if k == "source_index" else torch.cat(v) for k, v in fields.items()})

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

    def slice(self, start: int, stop: int) -> SourceFrames:
        """Output frames ``start .. stop - 1``."""
        return SourceFrames(**{k: None if v is None else v[start:stop] for k, v in vars(self).items()})


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
        backend: str = "torch",
        onnx: str | os.PathLike[str] | None = None,
        **kwargs,
    ) -> TalkingFacePipeline:
        """Load the stages (any format :mod:`pctalk.checkpoints` reads); ``weights`` (the LivePortrait root) is
        optional: without it only the motion runs. ``refiner``: a separate lip refiner file (the official release's
        ``{"model_ft": ...}``). ``backend``: LivePortrait's ``torch`` (eager), ``onnx`` (the networks exported by
        ``pctalk export-onnx`` into ``onnx``, default ``WEIGHTS/liveportrait_onnx``) or ``compile``
        (:mod:`pctalk.keypoints.backends`)."""
        from pctalk.keypoints.config import LivePortraitConfig
        from pctalk.keypoints.liveportrait import load_liveportrait

        lac_stage = load_lac_stage(lac, audio_encoder, refiner)
        emc_stage = None if emc is None else load_emc_stage(emc, audio_encoder)
        lp = crop = None
        if weights is not None:
            config = LivePortraitConfig.tiny() if liveportrait_size == "tiny" else LivePortraitConfig()
            lp = load_liveportrait(weights, config=config, require_stitching=False)
            crop = FaceCropper(cropper, weights_root=weights)
            if backend != "torch":
                from pctalk.keypoints.backends import default_onnx_folder, use_backend

                use_backend(lp, backend, onnx or default_onnx_folder(weights, liveportrait_size))
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

    def frames(
        self, source: SourceFace, n: int, controls: Controls, driving: dict[str, SourceFace] | None = None
    ) -> SourceFrames:
        """The source's motion for each of ``n`` output frames (a video's own frames, ping-ponged; an image's, held),
        with the pose, blink and gaze of their channels (:mod:`pctalk.inference.channels`); ``driving`` caches the
        driving videos' motion between calls. The first frames do not depend on ``n``."""
        count = len(source.motion.kp)
        index = ping_pong(np.arange(count), n) if source.is_video else np.zeros(n, dtype=np.int64)
        idx = torch.from_numpy(index).to(self.device)
        m = source.motion
        timeline = controls.timeline or Timeline()
        channels = {c: resolve_channel(c, getattr(controls, c), source.is_video, list(timeline.tracks),
                                       controls.pose_template) for c in CHANNELS}  # fmt: skip
        driving = {} if driving is None else driving

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
        """The driven motion for 16 kHz speech ``wav (N,)`` and ``source`` under ``controls``: the streaming engine
        (:class:`~pctalk.inference.streaming.MotionStream`) fed the whole audio at once, so that a stream of the same
        audio gives the same frames (with ``causal_smoothing``)."""
        controls = controls or Controls()
        if num_frames(len(wav)) < 1:
            raise ValueError(f"the audio is {len(wav) / 16000:.3f} s long, shorter than one video frame (40 ms)")
        engine = self.motion_stream(source, controls, causal=controls.causal_smoothing, length=num_frames(len(wav)))
        return self._whole(engine, [*engine.push(wav), *engine.close()])

    def motion_stream(
        self, source: SourceFace, controls: Controls | None = None, causal: bool = True, length: int = 0
    ) -> MotionStream:
        """The motion stage as a stream over ``source`` (:meth:`load_source`'s): push 16 kHz float chunks, get
        :class:`DrivenMotion` blocks. ``causal`` (default): each block as soon as it is final, Kalman-filtered (what
        :meth:`motion` gives with ``controls.causal_smoothing``); ``False``: everything at ``close()``, smoothed
        over the whole clip. ``length``: the frames expected, if known."""
        controls = controls or Controls()
        timeline = controls.timeline or Timeline()
        shared = True
        if self.emc is not None and self._terms(controls, timeline):
            hashes = {stage.info.audio_encoder.get("sha256") for stage in (self.lac, self.emc)}
            shared = (len(hashes) == 1 and None not in hashes) or self.emc.audio_encoder is self.lac.audio_encoder
        wants_loudness = bool(controls.loudness_scale or timeline.names("loudness_gain"))
        driving: dict[str, SourceFace] = {}
        horizon = length

        def frames(k: int) -> SourceFrames:  # a horizon that doubles: the channels are the same on every prefix
            nonlocal horizon
            if k > horizon:
                horizon = max(k, 2 * horizon)
            return self.frames(source, horizon, controls, driving)

        return MotionStream(self, frames, controls, causal, emc_features=not shared, loudness=wants_loudness)

    def stream(
        self,
        audio_chunks: Iterable[torch.Tensor | np.ndarray],
        source: SourceFace,
        controls: Controls | None = None,
        pasteback: bool = True,
        on_motion: Callable[[DrivenMotion], None] | None = None,
    ) -> Iterator[np.ndarray]:
        """Output frames ``(H, W, 3)`` uint8 as the speech arrives: 16 kHz chunks of any size in, frames out once
        their prediction window's audio has come (about a window, 1 s by default, plus 170 ms), rendered in the
        offline batches. The Kalman smoothing is the causal filter, so the frames equal :meth:`generate`'s with
        ``causal_smoothing=True``, bit for bit, whatever the chunk sizes. ``on_motion`` sees each motion block."""
        controls = replace(controls or Controls(), causal_smoothing=True)
        if controls.refine_after_emotion:
            raise ValueError("refine_after_emotion refines the whole clip at once; it cannot stream")
        engine = self.motion_stream(source, controls, causal=True)
        pending: list[DrivenMotion] = []

        def render(blocks: list[DrivenMotion], final: bool) -> Iterator[np.ndarray]:
            for block in blocks:
                if on_motion is not None:
                    on_motion(block)
            pending.extend(blocks)
            have = sum(len(b.keypoints) for b in pending)
            cut = have if final else have // self.batch_size * self.batch_size  # the offline render's batches
            if cut:
                driven = DrivenMotion.cat(pending)
                pending[:] = [driven.slice(cut, have)] if cut < have else []
                yield from self.render(source, driven.slice(0, cut), pasteback)

        for chunk in audio_chunks:
            yield from render(engine.push(chunk), final=False)
        yield from render(engine.close(), final=True)

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
        adds the pure emotions per region (:class:`~pctalk.inference.streaming.MotionStream`).

        Args:
            feat: ``(1, T, A)`` LAC's audio features.
            frames: the source's motion per output frame (:meth:`frames`).
            emc_feat: ``(1, T, A')`` EMC's audio features (default: ``feat``).
            loudness: ``(T,)`` frame loudness in dBFS, for ``controls.loudness_scale``.
        """
        controls = controls or Controls()
        engine = MotionStream(self, lambda k: frames, controls, causal=controls.causal_smoothing)
        return self._whole(engine, [*engine.push_features(feat, emc_feat, loudness), *engine.close()])

    @staticmethod
    def _whole(engine: MotionStream, blocks: list[DrivenMotion]) -> DrivenMotion:
        """The blocks as one clip (pctalk 0.1's ``refine_after_emotion`` refines it here)."""
        return engine.refine_after_emotion(DrivenMotion.cat(blocks))

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

    # -- render ---------------------------------------------------------------------------------------------------
    def render(self, source: SourceFace, driven: DrivenMotion, pasteback: bool = True) -> Iterator[np.ndarray]:
        """Output frames, ``(H, W, 3)`` uint8 each: renders pasted into the source frames, or the 512 renders. The
        networks run a batch ahead in a worker thread while this one pastes back (and its consumer encodes)."""
        lp = self.liveportrait
        if lp is None or source.images is None:
            raise ValueError(
                "rendering needs LivePortrait's weights (--weights; `pctalk weights check` lists the files); "
                "without them, use --keypoint-video and --save-motion for the motion alone"
            )
        batches = self._render_batches(source, driven)
        if getattr(lp.runner, "thread_safe", lambda device: True)(self.device):  # not with CUDA graphs
            batches = prefetch(batches)
        for idx, images in batches:
            for j, image in zip(idx, images):
                frame = paste_back(image, source.crops[j], source.frames[j]) if pasteback else image
                yield frame[: frame.shape[0] // 2 * 2, : frame.shape[1] // 2 * 2]  # H.264 needs even sizes

    def _render_batches(self, source: SourceFace, driven: DrivenMotion) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(source frame indices (b,), renders (b, S, S, 3) uint8)`` per batch of ``batch_size`` frames."""
        lp = self.liveportrait
        x_source_all = source.motion.keypoints()
        features: dict[int, torch.Tensor] = {}
        n = len(driven.keypoints)
        for start in range(0, n, self.batch_size):
            idx = driven.source_index[start : start + self.batch_size]
            with torch.no_grad():
                for i in set(idx.tolist()) - set(features):
                    features[i] = lp.appearance(source.images[i : i + 1])
                if not source.is_video and len(features) > 1:
                    features = {0: features[0]}
                feature = torch.cat([features[int(i)] for i in idx])
                x_s = x_source_all[torch.from_numpy(idx).to(self.device)]
                x_d = lp.stitch(x_s, driven.keypoints[start : start + len(idx)])  # a no-op without the stitching file
                render = lp.warp_decode(feature, x_s, x_d)
            yield idx, (render.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
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
