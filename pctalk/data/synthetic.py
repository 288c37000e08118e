"""The offline synthetic corpus in the shard schema, for smoke tests and the quickstart (``pctalk-data synth``).

What is real and what is made up:

- **Real**: the speech (eSpeak NG via ``pctalk.audio.tts``) with its phoneme timings, hence the audio, the mel and
  the timing of every mouth movement; the reference frames (crops of ``skimage.data.astronaut()``, recoloured per
  identity, and ``chelsea()`` for a cat).
- **Made up**: the motion. Phonemes map to three visemes (open, wide, round) smoothed for co-articulation; the lip
  deformation follows LivePortrait's known lip edit directions (the built-in pronunciation vectors); each identity
  has its own canonical keypoints, scale, head motion and speaking style (how wide and how round it articulates);
  emotions are fixed offsets of the lips, eyes and brows at three levels. With ``face_frames``, each clip also
  stores face crops for the emotion classifier: its reference frame, jittered, with an invented emotion cue (a dot
  whose place around the face says the emotion and whose size says the level).

So a model trained on it learns a real audio -> timing relation and an invented motion vocabulary: enough to prove
every training stage runs and learns, not to make a talking face.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pctalk.audio.mel import fit_to_frames, melspectrogram, num_frames
from pctalk.audio.tts import Speech, synthesize
from pctalk.data.schema import EMOTIONS, Clip, ClipMeta, ClipMotion, clip_key
from pctalk.data.styles import write_styles
from pctalk.data.writer import ShardSink, write_index
from pctalk.keypoints.regions import BROWS, EYES, LIPS
from pctalk.weights.io import atomic_write

__all__ = ["MARKER", "SENTENCES", "SyntheticCorpus", "synth", "template_keypoints", "visemes"]

#: The file that marks a folder as a synthetic corpus (written first, with the corpus's settings).
MARKER = "synthetic.json"
#: What ``synth`` writes into its folder (and may remove again when it rewrites a corpus of its own).
_OUTPUTS = (
    "*.tar", "*.tar.tmp", "manifest-j*.jsonl", "sizes.json", "frames.json", "train.txt", "val.txt", "test.txt",
    "styles.json",
)  # fmt: skip

SENTENCES = (
    "The duck ate too many bees before lunch.",
    "Then it flew away over the quiet lake.",
    "Children counted clouds and laughed at the wind.",
    "Nobody expected the old boat to float so well.",
    "Please bring me the blue cup from the kitchen.",
    "We watched the moon rise above the hills.",
    "A cool breeze moved through the open window.",
    "She said the meeting would start at noon.",
    "Fresh bread smells wonderful in the morning.",
    "The train was late again, as usual.",
    "Who knew the answer would be so simple?",
    "My father grew tomatoes behind the house.",
    "Music played softly while we ate dinner.",
    "Keep the door shut, the cat wants to go out.",
    "Every evening the birds return to the tree.",
    "I think we should walk home instead.",
    "The red balloon drifted over the market.",
    "Our teacher read a poem about the sea.",
    "Turn left at the bridge and go straight on.",
    "It rained all week, but today is bright.",
    "He opened the letter with shaking hands.",
    "Two owls were hooting in the dark wood.",
    "You can see the mountains from the roof.",
    "Apples and pears are on the table.",
    "The baby smiled when she heard the song.",
    "Wait here while I fetch the car.",
    "Nothing beats a warm fire in winter.",
    "The museum opens again on Monday.",
    "Look at those boots, they are too big.",
    "We need more chairs for the guests.",
    "How far is it to the nearest village?",
    "The old clock stopped at half past three.",
)

# -- phonemes to visemes ----------------------------------------------------------------------------------------------
# eSpeak NG mnemonics (stress marks stripped) -> (open, wide, round) in [0, 1].
_VISEMES: dict[str, tuple[float, float, float]] = {}
for _symbols, _value in (
    (("a", "a#", "A:", "aI", "aU", "V", "A@", "0", "O:", "O@", "OI"), (1.0, 0.2, 0.1)),
    (("@", "3", "3:", "E", "e@", "@L", "I@", "U@"), (0.6, 0.3, 0.1)),
    (("i", "i:", "I", "I2", "I#", "i@", "eI", "e", "j"), (0.35, 1.0, 0.0)),
    (("u", "u:", "U", "oU", "o@", "w", "W", "r"), (0.35, 0.0, 1.0)),
    (("p", "b", "m"), (0.0, 0.2, 0.2)),
    (("f", "v"), (0.15, 0.3, 0.0)),
    (("T", "D", "s", "z", "t", "d", "n", "l", "S", "Z", "tS", "dZ", "k", "g", "N", "h"), (0.3, 0.3, 0.1)),
):
    for _s in _symbols:
        _VISEMES[_s] = _value
_REST = (0.0, 0.0, 0.0)

# LivePortrait lip edit directions (pctalk's built-in pronunciation vectors): (keypoint, axis) -> weight.
_DIRECTIONS = {
    "open": {(19, 1): 0.001, (19, 2): 0.0001, (17, 1): -0.0001},
    "wide": {(20, 2): -0.001, (20, 1): -0.001, (14, 1): -0.001},
    "round": {(14, 1): 0.001, (17, 2): -0.0005},
}


def _unit(weights: dict[tuple[int, int], float]) -> np.ndarray:
    v = np.zeros((21, 3), np.float32)
    for (k, axis), w in weights.items():
        v[k, axis] = w
    return v / np.linalg.norm(v)


def visemes(speech: Speech, n_frames: int, smoothing: float = 1.2, lead: float = 0.03) -> np.ndarray:
    """``(n_frames, 3)`` open / wide / round weights: the phoneme under each frame (looking ``lead`` seconds ahead,
    as lips anticipate sounds), smoothed by a Gaussian of ``smoothing`` frames (co-articulation)."""
    weights = np.zeros((n_frames, 3), np.float32)
    times = np.arange(n_frames) / 25 + lead
    for p in speech.phonemes:
        symbol = p.symbol.lstrip("',")  # stress marks
        value = _VISEMES.get(symbol) or _VISEMES.get(symbol.rstrip(":")) or _REST
        weights[(times >= p.start) & (times < p.end)] = value
    radius = int(3 * smoothing)
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / smoothing) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(weights, ((radius, radius), (0, 0)), mode="edge")
    return np.stack([np.convolve(padded[:, j], kernel, mode="valid") for j in range(3)], axis=1)


# -- identities and emotions ------------------------------------------------------------------------------------------


def template_keypoints() -> np.ndarray:
    """A face-like arrangement of 21 canonical keypoints in LivePortrait's normalised cube."""
    g = np.random.default_rng(12345)
    kp = g.uniform(-0.6, 0.6, size=(21, 3)).astype(np.float32)
    kp[:, 2] *= 0.3
    kp[list(BROWS), 1] = -0.45 + g.normal(0, 0.03, len(BROWS))
    kp[list(EYES), 1] = -0.25 + g.normal(0, 0.03, len(EYES))
    kp[list(LIPS), 1] = 0.35 + g.normal(0, 0.03, len(LIPS))
    return kp


def _emotion_offsets() -> dict[str, np.ndarray]:
    """Per emotion, a ``(21, 3)`` expression offset at level 1 on the lips, eyes and brows (neutral is zero)."""
    g = np.random.default_rng(2024)
    out = {"neutral": np.zeros((21, 3), np.float32)}
    for emotion in EMOTIONS[1:]:
        offset = np.zeros((21, 3), np.float32)
        for region, scale in ((LIPS, 0.012), (EYES, 0.008), (BROWS, 0.010)):
            offset[list(region)] = g.normal(0, scale, (len(region), 3))
        out[emotion] = offset
    return out


def _reference_faces() -> tuple[np.ndarray, np.ndarray]:
    """256x256 crops of the astronaut's face (found with the OpenCV cropper) and of the cat."""
    from skimage import data

    from pctalk.keypoints.crop import FaceCropper

    human = FaceCropper("opencv").crop(data.astronaut()).image
    cat = data.chelsea()[20:270, 100:350]
    return human, cv2.resize(cat, (256, 256), interpolation=cv2.INTER_AREA)


def _recolour(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV).astype(np.int16)
    hsv[..., 0] = (hsv[..., 0] + rng.integers(-12, 12)) % 180
    hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.7, 1.3), 0, 255)
    hsv[..., 2] = np.clip(hsv[..., 2] * rng.uniform(0.8, 1.2), 0, 255)
    out = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)
    return out[:, ::-1].copy() if rng.random() < 0.5 else out


class _Identity:
    def __init__(self, index: int, rng: np.random.Generator, template: np.ndarray, refs: tuple[np.ndarray, np.ndarray]):
        self.name = f"synth{index:03d}" if index else "cat000"
        self.kp = template + rng.normal(0, 0.02, template.shape).astype(np.float32)
        self.scale = float(rng.uniform(1.5, 1.9))
        self.exp = rng.normal(0, 0.0015, (21, 3)).astype(np.float32)  # the speaker's resting expression
        self.pose = rng.normal(0, [4.0, 6.0, 2.0])
        self.style = np.array([rng.uniform(0.03, 0.06), rng.uniform(0.01, 0.035), rng.uniform(0.01, 0.035)], np.float32)
        self.rate = int(rng.integers(150, 195))
        self.ref = _recolour(refs[1] if index == 0 else refs[0], rng)


def _head_motion(n: int, rng: np.random.Generator, base: np.ndarray) -> np.ndarray:
    t = np.arange(n) / 25
    out = np.tile(base, (n, 1)).astype(np.float32)
    for axis, amplitude in enumerate((2.5, 4.0, 1.5)):
        for _ in range(3):
            f, phase = rng.uniform(0.08, 0.5), rng.uniform(0, 2 * math.pi)
            out[:, axis] += amplitude / 3 * np.sin(2 * math.pi * f * t + phase)
    return out


def _smooth_noise(n: int, rng: np.random.Generator, sigma: float) -> np.ndarray:
    noise = rng.normal(0, sigma, (n + 8, 21, 3)).astype(np.float32)
    kernel = np.ones(9, np.float32) / 9
    return np.apply_along_axis(lambda x: np.convolve(x, kernel, mode="valid"), 0, noise)


def _emotion_faces(ref: np.ndarray, emotion: str, level: int, k: int, seed: int) -> np.ndarray:
    """``(k, 256, 256, 3)`` jittered copies of ``ref`` with the invented emotion cue (none for neutral)."""
    rng = np.random.default_rng(seed)
    index = EMOTIONS.index(emotion)
    out = np.empty((k, 256, 256, 3), np.uint8)
    for j in range(k):
        face = np.roll(ref, tuple(int(v) for v in rng.integers(-6, 7, 2)), axis=(0, 1)).copy()
        if index:
            angle = 2 * math.pi * index / len(EMOTIONS)
            centre = (int(128 + 100 * math.cos(angle)), int(128 + 100 * math.sin(angle)))
            cv2.circle(face, centre, 6 + 4 * max(level, 1), (255, 40, 40), -1)
        out[j] = face
    return out


def _claim(out: Path, settings: dict[str, Any]) -> None:
    """Make ``out`` this corpus's folder: a new or empty one, or one holding a synthetic corpus already (whose files
    are removed first, so a rewrite never mixes two corpora). A folder holding anything else is refused: the
    synthetic corpus is never written into real data."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file, not a folder for the synthetic corpus")
    if out.is_dir() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise ValueError(
                f"{out} already holds other files and is not a synthetic corpus (no {MARKER}): the synthetic corpus "
                f"is only written into a new or empty folder, never beside real data. Give it a folder of its own."
            )
        for pattern in _OUTPUTS:
            for path in out.glob(pattern):
                path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / MARKER, lambda tmp: tmp.write_text(json.dumps({"synthetic": True, **settings}, indent=1)))


@dataclass(frozen=True)
class SyntheticCorpus:
    """The offline synthetic corpus a data module writes when asked (the quickstart and the ``_debug`` configs).

    It is written into ``folder`` only, and only when the data module's ``root`` names that very folder and it has
    no ``train.txt`` yet; a folder holding anything but a synthetic corpus is refused. A mistyped ``root`` therefore
    fails with "train.txt not found" instead of training on invented data.
    """

    folder: str
    """The corpus's own folder (a new or empty one the first time)."""
    clips: int = 64
    """Clips to write."""
    identities: int = 8
    """Speakers (at least 3: the last is test, the one before val, the rest train)."""
    face_frames: int = 0
    """Face crops stored per clip (for the emotion classifier)."""

    def ensure(self, roots: Sequence[str | os.PathLike[str]]) -> None:
        """Write the corpus if one of ``roots`` is its folder and it is not there yet."""
        folder = Path(self.folder).resolve()
        if any(Path(r).resolve() == folder for r in roots) and not (folder / "train.txt").is_file():
            synth(folder, self.clips, self.identities, progress=False, face_frames=self.face_frames)


def synth(
    out: str | os.PathLike[str],
    clips: int = 64,
    identities: int = 8,
    seed: int = 0,
    neutral_fraction: float = 0.5,
    progress: bool = True,
    face_frames: int = 0,
) -> int:
    """Write a synthetic corpus of ``clips`` clips over ``identities`` identities (one of them a cat).

    Args:
        out: the shard folder.
        clips: number of clips.
        identities: number of identities (at least 3: the last is test, the one before val, the rest train).
        seed: random seed (the corpus is deterministic given it).
        neutral_fraction: share of neutral clips; the rest cycle through the other emotions at levels 1-3.
        progress: show a progress bar.
        face_frames: also store this many face crops per clip (for the emotion classifier; see the module doc).
    """
    from rich.progress import Progress

    if identities < 3:
        raise ValueError(f"need at least 3 identities (train, val, test), got {identities}")
    _claim(Path(out), {"clips": clips, "identities": identities, "seed": seed, "face_frames": face_frames})
    rng = np.random.default_rng(seed)
    refs = _reference_faces()
    template = template_keypoints()
    people = [_Identity(i, rng, template, refs) for i in range(identities)]
    split_of = {p.name: "train" for p in people}
    split_of[people[-1].name], split_of[people[-2].name] = "test", "val"
    trained = [p.name for p in people if split_of[p.name] == "train"]
    style_of = {p.name: trained.index(p.name) if p.name in trained else -1 for p in people}
    offsets = _emotion_offsets()
    directions = np.stack([_unit(_DIRECTIONS[k]) for k in ("open", "wide", "round")])  # (3, 21, 3)
    started = time.perf_counter()
    emotional = [e for e in EMOTIONS if e != "neutral"]
    with ShardSink(out, job=0, maxcount=max(1, clips // 16)) as sink, Progress(disable=not progress) as bar:
        task = bar.add_task("synthesising clips", total=clips)
        for i in range(clips):
            person = people[i % identities]
            sentence = SENTENCES[(i * 7 + i // identities) % len(SENTENCES)]
            if rng.random() < neutral_fraction:
                emotion, level = "neutral", 0
            else:
                emotion, level = emotional[i % len(emotional)], int(rng.integers(1, 4))
            speech = synthesize(sentence, rate=person.rate)
            n = num_frames(len(speech.wav))
            wav = fit_to_frames(speech.wav, n)
            weights = visemes(speech, n)  # (n, 3)
            lips = np.einsum("nv,v,vkc->nkc", weights, person.style, directions)
            exp = person.exp + lips + offsets[emotion] * level + _smooth_noise(n, rng, 0.0015)
            pose = _head_motion(n, rng, person.pose)
            motion = ClipMotion(
                exp=exp,
                pitch=pose[:, 0],
                yaw=pose[:, 1],
                roll=pose[:, 2],
                t=np.tile(rng.normal(0, 0.01, 3), (n, 1)) + rng.normal(0, 0.001, (n, 3)).cumsum(0) * 0.1,
                scale=np.full((n, 1), person.scale, np.float32),
                kp=person.kp,
            )
            name = f"{i:05d}"
            meta = ClipMeta(
                dataset="synth",
                identity=person.name,
                clip=name,
                split=split_of[person.name],
                n_frames=n,
                style_id=style_of[person.name],
                emotion=emotion,
                level=level,
                source=f"pctalk-data synth (seed {seed}): eSpeak NG {sentence!r}",
                extra={"text": sentence, "words": [(w.text, w.start, w.end) for w in speech.words]},
            )
            faces = _emotion_faces(person.ref, emotion, level, face_frames, seed * 100_003 + i) if face_frames else None
            key = clip_key("synth", person.name, name)
            clip = Clip(key, motion, melspectrogram(wav).numpy(), wav.numpy(), person.ref, meta, faces=faces)
            sink.write(clip, source="synth")
            bar.update(task, advance=1)
    write_index(out)
    write_styles(out, "synth", style_of)
    print(f"wrote {clips} synthetic clips of {identities} identities to {out} in {time.perf_counter() - started:.1f} s")
    return 0
