"""The shard schema: one WebDataset sample per clip, shared by the writer (:mod:`pctalk.data.writer`) and readers.

A sample's key is ``<dataset>/<identity>/<clip>`` and its members are:

=================  ==============================================================================================
``motion.npz``     per frame ``exp (T, 21, 3)``, ``pitch``/``yaw``/``roll (T,)`` degrees, ``t (T, 3)``,
                   ``scale (T, 1)``; per clip the canonical keypoints ``kp (21, 3)``; all float32
``mel.npy``        ``(80, M)`` float32 Wav2Lip mel of ``audio.npy`` (``M = 3.2 T + 1``)
``audio.npy``      ``(T * 640,)`` float32 16 kHz mono, fitted to the frames by the length rule
``audio_feat.npy`` optional ``(T, 512)`` float32 audio encoder features
``ref.jpg``        a ``256 x 256`` RGB reference crop (for rendering in the lip-refiner stage)
``faces.npz``      optional ``K`` face crops ``256 x 256`` RGB at evenly spaced frames, JPEG-encoded (``f000`` …),
                   for training the emotion classifier (``pctalk-data build --face-frames K``)
``meta.json``      :class:`ClipMeta`
=================  ==============================================================================================

Writers stamp :data:`SCHEMA_VERSION` into ``meta.json``; readers refuse any other version with a message that says
how to rebuild.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import unicodedata
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

__all__ = [
    "EMOTIONS",
    "SCHEMA_VERSION",
    "SPLITS",
    "Clip",
    "ClipMeta",
    "ClipMotion",
    "SchemaError",
    "clip_key",
    "decode_sample",
    "encode_sample",
]

#: Bump when a member's meaning or layout changes; readers refuse other versions.
SCHEMA_VERSION = 1
#: MEAD's emotions, in the index order pctalk uses everywhere.
EMOTIONS = ("neutral", "happy", "sad", "angry", "fear", "disgusted", "surprised", "contempt")
SPLITS = ("train", "val", "test")
NUM_KP = 21


class SchemaError(ValueError):
    """A sample does not follow this schema (wrong version, missing member, wrong shape)."""


def _safe(part: str) -> str:
    """A key component of ASCII letters, digits, ``_`` and ``-`` only (WebDataset splits member names at the first
    dot). A name that is already such is kept; any other (spaces, punctuation, other scripts) becomes its closest
    ASCII form plus a hash of the original, so two different names never share a component (``talk 1`` and ``talk_1``,
    two names in Cyrillic) and the same name always gives the same one (a resumed build finds its clips)."""
    part = str(part)
    if re.fullmatch(r"[A-Za-z0-9_\-]+", part):
        return part
    ascii_form = unicodedata.normalize("NFKD", part).encode("ascii", "ignore").decode()
    stem = re.sub(r"[^A-Za-z0-9_\-]+", "_", ascii_form).strip("_")[:40]
    digest = hashlib.sha1(part.encode("utf-8")).hexdigest()[:8]
    return f"{stem}-{digest}" if stem else f"u{digest}"


def clip_key(dataset: str, identity: str, clip: str) -> str:
    """``<dataset>/<identity>/<clip>`` with each part made safe for a tar member name, unique for any names."""
    return "/".join(_safe(p) for p in (dataset, identity, clip))


@dataclass
class ClipMeta:
    """Per-clip metadata (``meta.json``)."""

    dataset: str
    identity: str
    clip: str
    split: str
    n_frames: int
    style_id: int = 0
    """Speaking style: the identity's index among the dataset's *training* identities (the one-hot style code of
    the predictors); -1 for identities outside the training split, which have no style of their own."""
    emotion: str = "neutral"
    level: int = 0
    """MEAD intensity level 1-3; 0 for unlabelled data."""
    fps: int = 25
    source: str = ""
    """Where the clip came from (a path, or a description for generated data)."""
    schema_version: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise SchemaError(f"split must be one of {SPLITS}, got {self.split!r}")
        if self.emotion not in EMOTIONS:
            raise SchemaError(f"emotion must be one of {EMOTIONS}, got {self.emotion!r}")

    @property
    def emotion_id(self) -> int:
        return EMOTIONS.index(self.emotion)


@dataclass
class ClipMotion:
    """Per-frame LivePortrait motion of a clip (``motion.npz``)."""

    exp: np.ndarray  # (T, 21, 3)
    pitch: np.ndarray  # (T,)
    yaw: np.ndarray  # (T,)
    roll: np.ndarray  # (T,)
    t: np.ndarray  # (T, 3)
    scale: np.ndarray  # (T, 1)
    kp: np.ndarray  # (21, 3)

    def __post_init__(self) -> None:
        for f in fields(self):
            setattr(self, f.name, np.ascontiguousarray(getattr(self, f.name), dtype=np.float32))
        n = len(self.exp)
        shapes = {
            "exp": (n, NUM_KP, 3),
            "pitch": (n,),
            "yaw": (n,),
            "roll": (n,),
            "t": (n, 3),
            "scale": (n, 1),
            "kp": (NUM_KP, 3),
        }
        for name, shape in shapes.items():
            if getattr(self, name).shape != shape:
                raise SchemaError(f"motion.{name} must have shape {shape}, got {getattr(self, name).shape}")

    def __len__(self) -> int:
        return len(self.exp)


@dataclass
class Clip:
    """One decoded sample."""

    key: str
    motion: ClipMotion
    mel: np.ndarray  # (80, M) float32
    audio: np.ndarray  # (T * 640,) float32
    ref: np.ndarray  # (256, 256, 3) uint8
    meta: ClipMeta
    audio_feat: np.ndarray | None = None  # (T, 512) float32
    faces: np.ndarray | None = None  # (K, 256, 256, 3) uint8

    def __post_init__(self) -> None:
        n = len(self.motion)
        if self.meta.n_frames != n:
            raise SchemaError(f"{self.key}: meta.n_frames is {self.meta.n_frames} but the motion has {n} frames")
        if self.audio.shape != (n * 640,):
            raise SchemaError(f"{self.key}: audio must have {n * 640} samples (640 per frame), got {self.audio.shape}")
        if self.mel.ndim != 2 or self.mel.shape[0] != 80:
            raise SchemaError(f"{self.key}: mel must be (80, M), got {self.mel.shape}")
        if self.ref.shape != (256, 256, 3) or self.ref.dtype != np.uint8:
            raise SchemaError(
                f"{self.key}: ref must be a (256, 256, 3) uint8 image, got {self.ref.shape} {self.ref.dtype}"
            )
        if self.audio_feat is not None and self.audio_feat.shape != (n, 512):
            raise SchemaError(f"{self.key}: audio_feat must be ({n}, 512), got {self.audio_feat.shape}")
        if self.faces is not None and (self.faces.ndim != 4 or self.faces.shape[1:] != (256, 256, 3)):
            raise SchemaError(f"{self.key}: faces must be (K, 256, 256, 3), got {self.faces.shape}")


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _jpg(image: np.ndarray, quality: int = 95) -> bytes:
    import cv2

    ok, data = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise SchemaError("could not encode the reference image as JPEG")
    return data.tobytes()


def encode_sample(clip: Clip) -> dict[str, Any]:
    """A WebDataset sample (``__key__`` and member bytes) for ``clip``."""
    motion = io.BytesIO()
    np.savez(motion, **{f.name: getattr(clip.motion, f.name) for f in fields(clip.motion)})
    meta = asdict(clip.meta)
    meta["schema_version"] = SCHEMA_VERSION
    sample = {
        "__key__": clip.key,
        "motion.npz": motion.getvalue(),
        "mel.npy": _npy(clip.mel.astype(np.float32)),
        "audio.npy": _npy(clip.audio.astype(np.float32)),
        "ref.jpg": _jpg(clip.ref),
        "meta.json": json.dumps(meta).encode(),
    }
    if clip.audio_feat is not None:
        sample["audio_feat.npy"] = _npy(clip.audio_feat.astype(np.float32))
    if clip.faces is not None:
        faces = io.BytesIO()
        np.savez(faces, **{f"f{i:03d}": np.frombuffer(_jpg(face), np.uint8) for i, face in enumerate(clip.faces)})
        sample["faces.npz"] = faces.getvalue()
    return sample


def _npy_view(data: bytes) -> np.ndarray:
    """A ``.npy`` member as a read-only array *viewing* ``data`` (no copy: a training example then copies only its
    window of a long clip's audio, mel and features)."""
    buf = io.BytesIO(data)
    version = np.lib.format.read_magic(buf)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read_header(buf)
    if dtype.hasobject:
        raise SchemaError("a .npy member holds Python objects; shards hold plain arrays only")
    count = int(np.prod(shape, dtype=np.int64))
    array = np.frombuffer(data, dtype=dtype, count=count, offset=buf.tell())
    return array.reshape(shape[::-1]).T if fortran else array.reshape(shape)


def decode_meta(data: bytes, key: str = "?") -> ClipMeta:
    """``meta.json`` bytes -> :class:`ClipMeta`, refusing another schema version."""
    meta = json.loads(data)
    version = meta.get("schema_version")
    if version != SCHEMA_VERSION:
        raise SchemaError(
            f"sample {key} has shard schema version {version}, this pctalk reads version {SCHEMA_VERSION}; "
            f"rebuild the shards with this version's `pctalk-data build` (or use the pctalk that wrote them)."
        )
    return ClipMeta(**meta)


def decode_sample(sample: dict[str, Any], faces: bool = True) -> Clip:
    """A raw WebDataset sample (member bytes by extension) -> :class:`Clip`.

    The ``.npy`` members (audio, mel, features) are read-only views into the sample's bytes; ``faces=False`` leaves
    the face crops undecoded (``None``) for readers that do not use them.

    Raises:
        SchemaError: wrong schema version, a missing member, or members of the wrong shape.
    """
    import cv2

    key = sample.get("__key__", "?")
    missing = [m for m in ("motion.npz", "mel.npy", "audio.npy", "ref.jpg", "meta.json") if m not in sample]
    if missing:
        raise SchemaError(f"sample {key} lacks {', '.join(missing)} (from {sample.get('__url__', 'an unknown shard')})")
    meta = decode_meta(sample["meta.json"], key)
    with np.load(io.BytesIO(sample["motion.npz"]), allow_pickle=False) as npz:
        motion = ClipMotion(**{f.name: npz[f.name] for f in fields(ClipMotion)})
    ref = cv2.imdecode(np.frombuffer(sample["ref.jpg"], np.uint8), cv2.IMREAD_COLOR)
    if ref is None:
        raise SchemaError(f"sample {key}: ref.jpg does not decode")
    feat = sample.get("audio_feat.npy")
    crops = None
    if faces and "faces.npz" in sample:
        with np.load(io.BytesIO(sample["faces.npz"]), allow_pickle=False) as npz:
            decoded = [cv2.imdecode(npz[name], cv2.IMREAD_COLOR) for name in sorted(npz.files)]
        if any(f is None for f in decoded):
            raise SchemaError(f"sample {key}: faces.npz holds an image that does not decode")
        crops = np.ascontiguousarray(np.stack(decoded)[..., ::-1])
    return Clip(
        key=key,
        motion=motion,
        mel=_npy_view(sample["mel.npy"]),
        audio=_npy_view(sample["audio.npy"]),
        ref=np.ascontiguousarray(ref[..., ::-1]),
        meta=meta,
        audio_feat=None if feat is None else _npy_view(feat),
        faces=crops,
    )
