"""``pctalk-eval run``: the paper's benchmark tables as a Lightning ``trainer.test`` loop.

For every test clip (the pieces ``test_clips.json`` lists beside ``splits.json``, which ``pctalk-data build`` cuts;
else the raw clips of the identities ``splits.json`` puts in ``test``) and every method, the generated video is either
made with pctalk's inference pipeline (video or image input; written once to ``<out>/videos/<method>/<clip>.mp4``,
so a re-run resumes) or taken from a folder of another method's videos (``<clip key>.mp4``). Each rank of a DDP run
takes its share of the clips; the metrics' states reduce across ranks at the end. Each clip streams through every
metric in one pass (:mod:`eval.clip_scorer`: memory bounded whatever its length). A clip that cannot be read or
scored (corrupt, too short, no face) is logged and skipped, and listed in the results.

Outputs (written atomically by rank 0): ``<out>/results.json`` (merged across runs, one entry per table block and
method, with the protocols used) and ``<out>/table.md`` (the paper's layout, its numbers beside ours).
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from eval.paper import COLUMNS, LABELS, PAPER
from pctalk.weights.io import atomic_write, file_sha256
from pctalk.weights.registry import resolve

__all__ = ["EvalClip", "EvalTask", "Method", "MetricSettings", "protocol", "render_table", "run_command", "test_clips"]

log = logging.getLogger(__name__)

ALL_METRICS = ("lse", "fid", "niqe", "fvd", "acc_emo", "efid")


@dataclass
class Method:
    """One row of a table: how its videos are obtained.

    Attributes:
        name: the row label.
        videos: a folder of ``<clip key>.mp4`` made by another method (nothing is generated).
        lac: pctalk's ``lac.pth`` (generate with the inference pipeline).
        emc: ``emc.pth``, for emotion rows.
        liveportrait: the LivePortrait weights root (default: the weights root).
        input: ``"video"`` (the test clip drives its own face; pose from the video) or ``"image"`` (its first frame,
            pose from the templates).
        emotion: an emotion control (``happy``, ``angry:lower_face:0.8``); ``"clip"``: each clip's own label (MEAD);
            ``"cycle"``: the eight emotions in turn over the clips (HDTF, which has no labels). Acc_emo scores the
            video against this emotion (against the clip's label for another method's videos).
        liveportrait_size: ``"official"`` or ``"tiny"`` (tests); default: the run's.
        cropper: ``"liveportrait"`` (its ONNX detectors), ``"dlib"`` or ``"opencv"``; default: the run's.
        real: the ground-truth row: the real test clips themselves, scored by the same run (LSE, NIQE and Acc_emo of
            the real videos; FID, FVD and E-FID of one half of the real clips against the other), as the field
            reports "Real videos"; a broken protocol shows at a glance.
    """

    name: str
    videos: Path | None = None
    lac: Path | None = None
    emc: Path | None = None
    liveportrait: Path | None = None
    input: str = "video"
    emotion: str | None = None
    liveportrait_size: str | None = None
    cropper: str | None = None
    real: bool = False

    def __post_init__(self) -> None:
        if self.real:
            if self.videos is not None or self.lac is not None:
                raise ValueError(f"method {self.name!r}: the real-videos row takes neither `videos` nor `lac`")
            return
        if (self.videos is None) == (self.lac is None):
            raise ValueError(f"method {self.name!r}: give either `videos` (a folder) or `lac` (to generate)")
        if self.videos is not None and not Path(self.videos).is_dir():
            raise ValueError(
                f"method {self.name!r}: its videos folder {self.videos} does not exist; give the folder holding that "
                f"method's <clip key>.mp4 files"
            )
        if self.input not in ("video", "image"):
            raise ValueError(f"method {self.name!r}: input must be 'video' or 'image', got {self.input!r}")


#: The ground-truth row's name.
REAL_VIDEOS = "Real videos"


@dataclass
class MetricSettings:
    """Which metrics, their weights files (default: the registry paths under the weights root) and protocols."""

    metrics: list[str] = field(default_factory=lambda: list(ALL_METRICS))
    weights_root: Path | None = None
    syncnet: Path | None = None
    inception: Path | None = None
    i3d: Path | None = None
    emotion_classifier: Path | None = None
    emotion_classes: list[str] | None = None
    deep3dfacerecon: Path | None = None
    lm3d: Path | None = None
    fvd_protocol: str = "stylegan-v"
    lse_crop: str = "track"
    """``track``: detect and crop the face as syncnet_python's pipeline does (any video); ``frame``: the videos are
    face crops (refused for frames that are not square)."""
    frame_stride: int = 1
    """Use every n-th frame for FID, NIQE and E-FID (1: all)."""

    def build(self) -> nn.ModuleDict:
        unknown = set(self.metrics) - set(ALL_METRICS)
        if unknown:
            raise ValueError(f"unknown metrics {sorted(unknown)}; known: {', '.join(ALL_METRICS)}")
        root = self.weights_root

        def path(given: Path | None, name: str) -> Path:
            return given if given is not None else resolve(name, root)

        out = nn.ModuleDict()
        if "lse" in self.metrics:
            from eval.metrics.lse import LSE

            out["lse"] = LSE(path(self.syncnet, "syncnet.syncnet_v2"), crop=self.lse_crop, weights_root=root)
        if "fid" in self.metrics:
            from eval.metrics.fid import FID

            out["fid"] = FID(path(self.inception, "fid.inception"))
        if "niqe" in self.metrics:
            from eval.metrics.niqe import NIQE

            out["niqe"] = NIQE()
        if "fvd" in self.metrics:
            from eval.metrics.fvd import FVD

            out["fvd"] = FVD(path(self.i3d, "fvd.i3d"), protocol=self.fvd_protocol)
        if "acc_emo" in self.metrics:
            from eval.metrics.emotion import EmotionAccuracy

            out["acc_emo"] = EmotionAccuracy(path(self.emotion_classifier, "emotion.emotion_fan"),
                                             classes=self.emotion_classes, weights_root=root)  # fmt: skip
        if "efid" in self.metrics:
            from eval.metrics.efid import ExpressionFID

            ckpt = path(self.deep3dfacerecon, "efid.deep3dfacerecon")
            out["efid"] = ExpressionFID(ckpt, lm3d=self.lm3d, weights_root=root)
        return out


@dataclass(frozen=True)
class EvalClip:
    """One scored clip: frames ``start_frame ...`` (``n_frames`` of them; ``None``: to the end) of a raw ``video`` at
    25 fps and the same stretch of its ``audio`` (``None``: the video's own track). A test piece of
    ``test_clips.json``, or a whole raw clip."""

    key: str
    dataset: str
    identity: str
    emotion: str
    video: Path
    audio: Path | None = None
    start_frame: int = 0
    n_frames: int | None = None

    @property
    def whole(self) -> bool:
        """The whole raw clip (not a piece of it)."""
        return self.start_frame == 0 and self.n_frames is None

    def chunks(self, size: int = 32) -> Iterator[np.ndarray]:
        """``(t, H, W, 3)`` uint8 chunks of this clip's 25 fps frames, decoded as they are asked for (the file is
        opened at once: :class:`pctalk.media.VideoError` for a missing or corrupt one)."""
        from pctalk.media import VideoReader

        stop = None if self.n_frames is None else self.start_frame + self.n_frames
        return VideoReader(self.video).chunks(size, self.start_frame, stop)

    def audio_track(self, n_frames: int | None = None) -> torch.Tensor | None:
        """The clip's 16 kHz audio (``None``: no audio track); a piece's stretch of it, ``n_frames`` long (default:
        the piece's)."""
        from pctalk.audio.io import AudioLoadError, load_audio
        from pctalk.audio.mel import samples_per_frame

        try:
            audio = load_audio(self.audio or self.video)
        except AudioLoadError:
            return None
        if self.whole:
            return audio
        per = samples_per_frame()
        n = self.n_frames if n_frames is None else n_frames
        stop = None if n is None else (self.start_frame + n) * per
        return audio[self.start_frame * per : stop]

    def media(self) -> tuple[np.ndarray, torch.Tensor | None]:
        """``(T, H, W, 3)`` uint8 frames and the 16 kHz audio of this clip (``None``: no audio track), whole: the
        generation's input (scoring streams through :meth:`chunks`)."""
        frames = np.concatenate(list(self.chunks(64)))
        return frames, self.audio_track(len(frames))


def test_clips(
    dataset: str,
    root: Path,
    splits: Path | None,
    emotions: list[str] | None = None,
    test_list: Path | None = None,
) -> tuple[list[EvalClip], dict[str, Any]]:
    """The clips to score, sorted by key, and where they come from (the split files' versions and hashes, for the
    protocol).

    With a test list (``test_list``, else ``test_clips.json`` beside ``splits``, written by ``pctalk-data build``):
    its pieces of ``dataset`` (HDTF's test clips cut into 10 s pieces, the same for every method). Without one: the
    raw clips of ``dataset`` under ``root`` whose identity ``splits`` puts in ``test`` (every clip without splits).
    ``emotions`` keeps only clips with those labels.
    """
    from data_prep.sources import enumerate_clips
    from pctalk.data.splits import TEST_LIST_FILE, content_sha256, read_splits, read_test_list

    root = Path(root)
    source: dict[str, Any] = {}
    if splits is not None:
        mapping = read_splits(splits)
        source.update({"splits": str(splits), "splits_sha256": content_sha256(mapping)})
        if test_list is None and (Path(splits).parent / TEST_LIST_FILE).is_file():
            test_list = Path(splits).parent / TEST_LIST_FILE
    if test_list is not None:
        pieces, header = read_test_list(test_list)
        pieces = [p for p in pieces if p.dataset == dataset or (dataset == "folder" and p.dataset == "folder")]
        if not pieces:
            raise ValueError(f"{test_list} lists no {dataset} test clips; give the test list of {dataset}'s shard "
                             f"folder (test_list:), or build {dataset} with pctalk-data build")  # fmt: skip
        if "splits_sha256" in source and header.get("splits_sha256") not in (None, source["splits_sha256"]):
            raise ValueError(f"{test_list} was cut under other splits than {splits} (their hashes differ); rebuild "
                             f"the shards, or give the splits.json it was written with")  # fmt: skip
        source.update({"test_list": str(test_list), "test_list_sha256": header.get("sha256"),
                       "test_list_version": header.get("version")})  # fmt: skip
        clips = [
            EvalClip(p.key, p.dataset, p.identity, p.emotion, root / p.video, root / p.audio if p.audio else None,
                     p.start_frame, p.n_frames)
            for p in pieces
        ]  # fmt: skip
        for clip in clips[:1]:
            if not clip.video.is_file():
                raise FileNotFoundError(f"{clip.video} (from {test_list}) does not exist: give the raw dataset's "
                                        f"root that pctalk-data build read (root:)")  # fmt: skip
    else:
        raw = enumerate_clips(dataset, root)
        if splits is not None:
            test = {(ds, ident) for ds, ids in mapping.items() for ident, split in ids.items() if split == "test"}
            raw = [c for c in raw if (c.dataset, c.identity) in test]
        clips = [EvalClip(c.key, c.dataset, c.identity, c.emotion, c.video, c.audio) for c in raw]
    if emotions:
        clips = [c for c in clips if c.emotion in emotions]
    if not clips:
        raise ValueError(f"no test clips in {root} (dataset {dataset!r}, splits {splits}, emotions {emotions})")
    source["test clips"] = len(clips)
    return sorted(clips, key=lambda c: c.key), source


test_clips.__test__ = False  # not a pytest test


class _Indices(Dataset):
    """Indices into this rank's clips (every ``world``-th from ``rank``), padded with ``-1`` (no clip) to the same
    length on every rank: a rank with fewer clips, or none (fewer clips than GPUs), still runs every step and the
    metrics' sync at the end, instead of leaving the others waiting in it. No clip is scored twice. The task looks
    the clip up, since Lightning cannot move frozen dataclasses between devices."""

    def __init__(self, n: int, length: int | None = None) -> None:
        self.n, self.length = n, max(n, length or 0)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> int:
        return i if i < self.n else -1


def _video(path: Path) -> EvalClip:
    """A generated video (with its own audio track) as a clip."""
    return EvalClip("", "", "", "", Path(path))


class EvalTask(L.LightningModule):
    """Scores one method's videos: ``test_step`` takes one clip, ``on_test_epoch_end`` computes every metric."""

    def __init__(
        self,
        method: Method,
        settings: MetricSettings,
        out: Path,
        root: Path,
        liveportrait_size: str = "official",
        cropper: str = "liveportrait",
    ) -> None:
        super().__init__()
        self.method, self.settings, self.out, self.root = method, settings, Path(out), Path(root)
        self.liveportrait_size, self.cropper = liveportrait_size, cropper
        self.metrics = settings.build()
        self.skipped: list[dict[str, str]] = []
        self.counts: Counter[str] = Counter()
        self.resolutions: Counter[str] = Counter()  # clips per ``WxH`` of the scored videos
        self.results: dict[str, Any] = {}
        self.clips: list[Any] = []
        self.clips_all: list[str] = []  # every rank's clip keys, for the emotion cycle
        self._pipeline = None

    # -- videos --------------------------------------------------------------------------------------------------
    def generated_path(self, clip: Any) -> Path:
        """Where the method's video of ``clip`` is: for a folder of another method's videos, the raw clip's path
        relative to the dataset root (``B_000.mp4``; MEAD: ``M003/video/front/happy/level_3/001.mp4``; whole clips
        only) or the flat ``<dataset>_<identity>_<clip>.mp4`` (a test piece: ``hdtf_B_000_s001.mp4``); for generated
        ones, ``<out>/videos/<method>/<flat>.mp4``; for the real videos, the raw clip."""
        flat = f"{clip.key.replace('/', '_')}.mp4"
        if self.method.real:
            return Path(clip.video)
        if self.method.videos is not None:
            if clip.whole and Path(clip.video).is_relative_to(self.root):
                mirrored = Path(self.method.videos) / Path(clip.video).relative_to(self.root)
                if mirrored.is_file():
                    return mirrored
            return Path(self.method.videos) / flat
        return self.out / "videos" / self.method.name.replace("/", "_").replace(" ", "_") / flat

    def _generate(self, clip: Any, path: Path) -> None:
        from pctalk.inference.pipeline import Controls, EmotionControl, TalkingFacePipeline

        m = self.method
        if self._pipeline is None:
            self._pipeline = TalkingFacePipeline.from_checkpoints(
                m.lac, m.emc, weights=m.liveportrait or self.settings.weights_root or resolve_root(),
                cropper=m.cropper or self.cropper, liveportrait_size=m.liveportrait_size or self.liveportrait_size,
                device=str(self.device), progress=False,
            )  # fmt: skip
        emotion = self.target_emotion(clip)
        spec = m.emotion if m.emotion not in (None, "clip", "cycle") else emotion
        controls = Controls(emotions=[EmotionControl.parse(spec)] if emotion != "neutral" else [])
        source: Any = clip.video
        audio: Any = clip.audio or clip.video
        if not clip.whole:  # a test piece: its own frames and stretch of audio
            source, audio = clip.media()
            if audio is None:
                from pctalk.audio.io import AudioLoadError

                raise AudioLoadError(f"{clip.audio or clip.video} has no audio track")
        if m.input == "image":
            from pctalk.media import VideoReader

            source = source[0] if isinstance(source, np.ndarray) else next(VideoReader(clip.video).chunks(1))[0]
        partial = path.with_name(f".{path.stem}.partial.mp4")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._pipeline.generate(source, partial, audio=audio, controls=controls)
        os.replace(partial, path)

    def target_emotion(self, clip: Any) -> str:
        """The emotion the method's video of ``clip`` should show."""
        from pctalk.data.schema import EMOTIONS

        m = self.method
        if m.real or m.videos is not None or m.emotion in (None, "clip"):
            return clip.emotion
        if m.emotion == "cycle":
            return EMOTIONS[self.clips_all.index(clip.key) % len(EMOTIONS)]
        return m.emotion.split(":")[0]

    # -- scoring -------------------------------------------------------------------------------------------------
    def test_step(self, index: int, batch_idx: int) -> None:
        from eval.metrics.lse import LSEInputError
        from pctalk.audio.io import AudioLoadError
        from pctalk.data.schema import SchemaError
        from pctalk.keypoints.crop.cropper import FaceNotFoundError
        from pctalk.media import VideoError

        if int(index) < 0:  # padding: this rank has no clip for this step
            return
        clip = self.clips[int(index)]
        path = self.generated_path(clip)
        try:
            if not path.is_file():
                if self.method.videos is not None:
                    raise VideoError(f"no generated video {path}")
                self._generate(clip, path)
            self._score(clip, clip if self.method.real else _video(path))
        except (VideoError, AudioLoadError, LSEInputError, FaceNotFoundError, SchemaError) as err:
            log.warning("eval %s: skipping %s: %s", self.method.name, clip.key, err)
            self.skipped.append({"clip": clip.key, "reason": f"{type(err).__name__}: {err}"})

    def _score(self, clip: EvalClip, video: EvalClip) -> None:
        """Score ``video`` (the method's video of ``clip``, or the real clip itself) in one streamed pass, with the
        real clip as reference for the distribution metrics; the clip counts for every metric or none."""
        from eval.clip_scorer import CHUNK, score_clip

        m = self.metrics
        # the distribution metrics compare generated with real frames; the real-videos row compares one half of the
        # real clips (even places in the test list) with the other
        needs_reference = bool({"fid", "fvd", "efid"} & set(m)) and not self.method.real
        frames = video.chunks(CHUNK)
        score = score_clip(
            m,
            frames,
            video.audio_track() if "lse" in m else None,
            real=self.method.real and self.clips_all.index(clip.key) % 2 == 0,
            reference=clip.chunks(CHUNK) if needs_reference else None,
            stride=self.settings.frame_stride,
            target_emotion=self.target_emotion(clip),
            name=str(self.generated_path(clip)),
        )
        score.commit()
        self.counts["clips"] += 1
        self.counts["frames"] += score.frames
        self.counts["frames per metric (FID, NIQE, E-FID)"] += score.frames_per_metric
        if "fvd" in m:
            self.counts["FVD clips"] += score.fvd_clips
        self.resolutions[score.resolution] += 1

    def on_test_epoch_end(self) -> None:
        results: dict[str, Any] = {}
        for name, metric in self.metrics.items():
            try:
                value = metric.compute()
            except ValueError as err:  # e.g. every clip skipped: nothing to compute a covariance from
                log.warning("eval %s: no %s: %s", self.method.name, name, err)
                value = float("nan")
            if isinstance(value, dict):
                results.update({k: float(v) for k, v in value.items()})
            else:
                results[name] = float(value) * (100.0 if name == "acc_emo" else 1.0)  # the paper prints percent
        parts = [(self.skipped, self.counts, self.resolutions)]
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            parts = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(parts, (self.skipped, self.counts, self.resolutions))
        results["skipped"] = sorted((s for part, _, _ in parts for s in part), key=lambda s: s["clip"])
        self.results = results
        self.counted = dict(sum((counts for _, counts, _ in parts), Counter()))
        self.counted["resolution"] = dict(sorted(sum((r for _, _, r in parts), Counter()).items()))


def resolve_root() -> Path:
    from pctalk.weights.registry import default_root

    return default_root()


def _block(dataset: str, emotions: list[str] | None, table: str) -> str:
    if dataset == "hdtf":
        return "HDTF"
    if dataset == "mead":
        return "MEAD-Neutral" if table == "table1" else "MEAD"
    return dataset


def _fmt(value: float | None) -> str:
    return "–" if value is None or value != value else f"{value:.2f}"


def render_table(table: str, results: dict[str, Any]) -> str:
    """A markdown table in the paper's layout: our rows (from ``results``) then the paper's rows. Metrics the run
    computed beyond the paper's columns (e.g. Acc_emo on Table 1) get columns of their own after them."""
    blocks = {block: list(columns) for block, columns in COLUMNS[table].items()}
    for block, methods in results.get("blocks", {}).items():
        computed = [m for m in LABELS if any(m in values for values in methods.values())]
        blocks.setdefault(block, []).extend(m for m in computed if m not in blocks[block])
    header = ["Method", *[f"{b} {LABELS[c]}" for b, cols in blocks.items() for c in cols]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    ours: dict[str, dict[str, dict[str, float]]] = {}
    for block, methods in results.get("blocks", {}).items():
        for method, values in methods.items():
            ours.setdefault(method, {})[block] = values
    for label, rows in (("", ours), (" (paper)", PAPER[table])):
        for method, per_block in rows.items():
            cells = [_fmt(per_block.get(b, {}).get(c)) for b, cols in blocks.items() for c in cols]
            lines.append(f"| {method}{label} | " + " | ".join(cells) + " |")
    notes = []
    for block, used in (results.get("protocols") or {"": results.get("protocol", {})}).items():
        shown = {k: v for k, v in used.items() if k not in ("networks", "counted", "clips")}
        source = used.get("clips") or {}
        if source:
            shown["test clips"] = source.get("test clips")
            if source.get("test_list_sha256"):
                shown["test list sha256"] = source["test_list_sha256"][:12]
        counted = used.get("counted", {})
        if counted:
            shown["clips scored"] = ", ".join(f"{m} {c.get('clips', 0)}" for m, c in counted.items())
            sizes = sorted({size for c in counted.values() for size in (c.get("resolution") or {})})
            if sizes:
                shown["resolution"] = " / ".join(sizes)
        note = ", ".join(f"{k}: {v}" for k, v in shown.items())
        if note:
            notes.append(f"Protocol{f' ({block})' if block else 's'}: {note}")
    return "\n".join(lines) + ("\n\n" + "\n".join(notes) + "\n" if notes else "\n")


def run_command(
    table: str,
    out: Path,
    dataset: str,
    root: Path,
    methods: list[Method],
    splits: Path | None = None,
    emotions: list[str] | None = None,
    settings: MetricSettings | None = None,
    max_clips: int | None = None,
    accelerator: str = "auto",
    devices: int | str = "auto",
    strategy: str = "auto",
    num_nodes: int = 1,
    ground_truth: bool = True,
    test_list: Path | None = None,
    liveportrait_size: str = "official",
    cropper: str = "liveportrait",
) -> int:
    """Score every method on the test clips and write results.json and table.md.

    Args:
        table: the paper table the numbers go into: table1, table2 or table3.
        out: the output folder (results, table, generated videos).
        dataset: the raw dataset's layout (hdtf, mead, folder), as for pctalk-data build.
        root: the raw dataset folder.
        methods: the table rows.
        splits: data_prep's splits.json; the test pieces listed beside it (test_clips.json) are evaluated, else its
            test identities' raw clips (default: every clip).
        emotions: only clips with these emotion labels (e.g. [neutral] for MEAD-Neutral).
        settings: metrics, weights and protocols.
        max_clips: evaluate only the first N test clips (a quick look).
        accelerator: Lightning accelerator (cpu, gpu, auto).
        devices: devices per node.
        strategy: Lightning strategy (ddp for several devices).
        num_nodes: nodes (SLURM).
        ground_truth: add the "Real videos" row (:attr:`Method.real`), scored first by the same run.
        test_list: the test pieces to score (default: test_clips.json beside splits, written by pctalk-data build;
            without one, the whole raw clips of the test identities).
        liveportrait_size: the LivePortrait sizes of the methods that do not give theirs (official; tiny: tests).
        cropper: the face cropper of the methods that do not give theirs (liveportrait, dlib, opencv).
    """
    if table not in COLUMNS:
        raise ValueError(f"table must be one of {', '.join(COLUMNS)}, got {table!r}")
    settings = settings or MetricSettings()
    out = Path(out)
    clips, source = test_clips(dataset, Path(root), splits, emotions, test_list)
    clips = clips[:max_clips]
    if max_clips is not None:
        source["max clips"] = max_clips
    block = _block(dataset, emotions, table)
    if ground_truth and not any(m.real for m in methods):
        methods = [Method(REAL_VIDEOS, real=True), *methods]
    trainer = L.Trainer(accelerator=accelerator, devices=devices, strategy=strategy, num_nodes=num_nodes,
                        logger=False, enable_checkpointing=False, use_distributed_sampler=False,
                        enable_progress_bar=True, default_root_dir=out)  # fmt: skip
    scored: dict[str, dict[str, Any]] = {}
    counted: dict[str, dict[str, int]] = {}
    for method in methods:
        task = EvalTask(method, settings, out, Path(root), liveportrait_size, cropper)
        rank, world = trainer.global_rank, trainer.world_size
        task.clips, task.clips_all = clips[rank::world], [c.key for c in clips]
        loader = DataLoader(_Indices(len(task.clips), -(-len(clips) // world)), batch_size=None)
        trainer.test(task, loader, verbose=False)
        scored[method.name] = {**task.results, "clips": len(clips)}
        counted[method.name] = dict(task.counted)
    if trainer.global_rank == 0:
        _write(out, table, block, scored, settings, counted, source)
    return 0


def protocol(
    settings: MetricSettings, counted: dict[str, dict[str, int]], source: dict[str, Any] | None = None
) -> dict[str, Any]:
    """What a block's numbers were computed with: the network files (by SHA-256), crop mode and size, FVD protocol,
    frame stride, clips and frames each method's metrics saw, the test clips (split files and their hashes), and the
    pctalk version."""
    import pctalk
    from eval.metrics.fvd import PROTOCOLS

    root = settings.weights_root
    files = {
        "lse": (settings.syncnet, "syncnet.syncnet_v2"), "fid": (settings.inception, "fid.inception"),
        "fvd": (settings.i3d, "fvd.i3d"), "acc_emo": (settings.emotion_classifier, "emotion.emotion_fan"),
        "efid": (settings.deep3dfacerecon, "efid.deep3dfacerecon"),
    }  # fmt: skip
    networks = {}
    for metric, (given, name) in files.items():
        if metric in settings.metrics:
            path = Path(given) if given is not None else resolve(name, root)
            networks[name] = {"file": str(path), "sha256": file_sha256(path) if path.is_file() else None}
    return {
        "FVD": PROTOCOLS[settings.fvd_protocol].name if isinstance(settings.fvd_protocol, str) else "custom",
        "LSE crop": settings.lse_crop,
        "LSE input": "224x224 face track (syncnet_python)" if settings.lse_crop == "track" else "224x224 frames",
        "Acc_emo input": "face crops (square videos as they are, others cut to the face track)",
        "frame stride": settings.frame_stride,
        "networks": networks,
        "counted": {
            name: {**c, "frames per clip": round(c["frames"] / c["clips"], 1) if c.get("clips") else 0}
            for name, c in counted.items()
        },
        "clips": source or {},
        "pctalk": getattr(pctalk, "__version__", "unknown"),
    }


def _write(
    out: Path,
    table: str,
    block: str,
    scored: dict[str, dict[str, Any]],
    settings: MetricSettings,
    counted: dict[str, dict[str, int]] | None = None,
    source: dict[str, Any] | None = None,
) -> None:

    path = out / "results.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    if results.get("table", table) != table:
        raise ValueError(f"{path} holds {results['table']}; use another output folder for {table}")
    results["table"] = table
    results.setdefault("blocks", {}).setdefault(block, {}).update(scored)
    block_protocol = protocol(settings, counted or {}, source)
    results.setdefault("protocols", {})[block] = block_protocol  # each block keeps its own
    results["protocol"] = {k: v for k, v in block_protocol.items() if k not in ("networks", "counted", "clips")}
    results["settings"] = json.loads(json.dumps(asdict(settings), default=str))
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(results, indent=1)))
    atomic_write(out / "table.md", lambda tmp: tmp.write_text(render_table(table, results)))
    log.info("wrote %s and %s", path, out / "table.md")
