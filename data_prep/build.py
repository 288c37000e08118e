"""``pctalk-data build``: raw talking-face clips -> WebDataset shards of LivePortrait motion, audio and mel.

Per clip: decode at 25 fps (by timestamp), read the audio at 16 kHz, track and crop the face, extract the motion
with LivePortrait's motion extractor in batches (on the GPU when there is one), compute the Wav2Lip mel (and the
audio encoder's features when asked), and write the sample to its split's shards. Clips that cannot be used are
skipped with their reason in the manifest; the run ends with a summary table.

Feeding the GPU: with ``--decode-workers N`` (default: the job's CPUs but one) the decode, audio and face crop
run in N worker processes (:mod:`data_prep.parallel`), one clip per worker at a time, while the main process runs
the motion extractor on their crops as they arrive and finishes each clip; the samples are byte-identical to the
in-process path's (``--decode-workers 0``), only their order in the shards follows the order clips finish in.

Scale-out: ``--num-jobs N --job-index I`` (defaults from a SLURM array) gives each job a deterministic slice of the
clips and its own shard names; a rerun resumes from the job's manifest.
"""

from __future__ import annotations

import math
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import torch

from data_prep.sources import ClipSource, enumerate_clips
from data_prep.splits import assign_splits, load_split_file, write_splits, write_test_list
from data_prep.transcripts import load_transcripts, transcript_of
from pctalk.audio.io import AudioLoadError, SilentAudioError, ensure_audible, load_audio
from pctalk.audio.mel import fit_to_frames, frame_windows, melspectrogram, samples_per_frame
from pctalk.data.schema import Clip, ClipMeta, ClipMotion
from pctalk.data.styles import number_styles, read_styles, write_styles
from pctalk.data.writer import ShardSink, read_manifests, write_index
from pctalk.keypoints.crop import FaceCropper, FaceNotFoundError
from pctalk.media import VideoError, VideoReader

__all__ = ["BuildModels", "SkipClip", "build", "crop_chunks", "job_slice", "open_clip", "process_clip"]

#: Audio may end this much before the video before the clip is refused.
AUDIO_TOLERANCE_S = 0.1


class SkipClip(Exception):
    """A clip that cannot be used; the message is the manifest's reason."""


def job_slice(num_jobs: int | None, job_index: int | None) -> tuple[int, int]:
    """``(num_jobs, job_index)``, defaulting to the SLURM array's (``SLURM_ARRAY_TASK_COUNT`` and the task id
    relative to ``SLURM_ARRAY_TASK_MIN``), else a single job."""
    env = os.environ
    if num_jobs is None:
        num_jobs = int(env.get("SLURM_ARRAY_TASK_COUNT", 1))
    if job_index is None:
        job_index = int(env.get("SLURM_ARRAY_TASK_ID", 0)) - int(env.get("SLURM_ARRAY_TASK_MIN", 0))
    if not 0 <= job_index < num_jobs:
        raise ValueError(f"job index {job_index} is outside 0..{num_jobs - 1}")
    return num_jobs, job_index


@dataclass
class BuildModels:
    """The networks a build uses (``weights_root``: where decode workers find the ``liveportrait`` cropper's ONNX
    files; each worker builds its own cropper of ``cropper.backend``)."""

    liveportrait: torch.nn.Module
    cropper: FaceCropper
    audio_encoder: torch.nn.Module | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    batch_size: int = 32
    weights_root: Path | None = None


def _motion(models: BuildModels, crops: np.ndarray | torch.Tensor) -> dict[str, np.ndarray]:
    """Motion of ``crops (N, S, S, 3)`` uint8 (a numpy array, or a tensor, pinned when it comes from a worker)."""
    size = models.liveportrait.config.input_size
    if crops.shape[1] != size:
        crops = np.stack([cv2.resize(c, (size, size), interpolation=cv2.INTER_AREA) for c in np.asarray(crops)])
    batch = torch.as_tensor(crops).to(models.device, non_blocking=True)
    images = batch.permute(0, 3, 1, 2).float().div_(255)
    with torch.no_grad():
        m = models.liveportrait.extract_motion(images)
    return {k: getattr(m, k).float().cpu().numpy() for k in ("kp", "exp", "pitch", "yaw", "roll", "t", "scale")}


def _face_crop(image: np.ndarray) -> np.ndarray:
    """The ``256 x 256`` face crop stored for the emotion classifier."""
    if image.shape[:2] == (256, 256):
        return image.copy()
    return cv2.resize(image, (256, 256), interpolation=cv2.INTER_AREA)


def open_clip(src: ClipSource, min_frames: int = 50) -> tuple[VideoReader, torch.Tensor]:
    """The clip's 25 fps video reader and its checked 16 kHz audio: the first step of a clip's CPU half.

    Raises:
        SkipClip: unreadable video, too short, no audio, silent, or audio shorter than the video.
    """
    try:
        reader = VideoReader(src.video)
    except VideoError as err:
        raise SkipClip(f"unreadable video: {err}") from None
    n = len(reader)
    if n < min_frames:
        raise SkipClip(f"too short: {n} frames at 25 fps, fewer than one training window ({min_frames})")
    audio_path = src.audio or src.video
    try:
        wav = ensure_audible(load_audio(audio_path), audio_path)
    except AudioLoadError as err:
        reason = "no audio stream" if "no audio stream" in str(err) else "unreadable audio"
        raise SkipClip(f"{reason}: {err}") from None
    except SilentAudioError as err:
        raise SkipClip(f"silent audio: {err}") from None
    video_s, audio_s = n / 25, len(wav) / 16000
    if audio_s < video_s - AUDIO_TOLERANCE_S:
        raise SkipClip(f"audio shorter than video: {audio_s:.2f} s of audio for {video_s:.2f} s of video")
    return reader, wav


def crop_chunks(reader: VideoReader, cropper: FaceCropper, batch_size: int) -> Iterator[np.ndarray]:
    """``(N, 256, 256, 3)`` uint8 crops of the tracked face, ``batch_size`` frames at a time, in frame order: the
    rest of a clip's CPU half (decode and crop).

    Raises:
        SkipClip: no face, or a frame cannot be decoded.
    """
    pending: list[np.ndarray] = []
    try:
        frames = (frame for chunk in reader.chunks(batch_size) for frame in chunk)
        for crop in cropper.track(frames):
            pending.append(crop.image)
            if len(pending) == batch_size:
                yield np.stack(pending)
                pending.clear()
        if pending:
            yield np.stack(pending)
    except FaceNotFoundError as err:
        raise SkipClip(f"no face: {err}") from None
    except VideoError as err:
        raise SkipClip(f"unreadable video: {err}") from None


class _PendingClip:
    """The main-process half of one clip: motion extraction on its crops as they arrive, in order, keeping the
    motion (small), the first crop and the face crops to store, never the crops themselves. The arguments after
    ``n_frames`` are :func:`process_clip`'s."""

    def __init__(
        self,
        src: ClipSource,
        n_frames: int,
        split: str,
        style_id: int = 0,
        segment_frames: int = 0,
        face_frames: int = 0,
    ) -> None:
        self.src, self.split, self.style_id, self.face_frames = src, split, style_id, face_frames
        self.n = n_frames
        self.pieces = [(0, n_frames, src.clip)]
        if segment_frames and n_frames >= segment_frames:
            self.pieces = [
                (s, s + segment_frames, f"{src.clip}_s{i:03d}")
                for i, s in enumerate(range(0, n_frames - segment_frames + 1, segment_frames))
            ]
        self.wanted = {
            int(i) for start, stop, _ in self.pieces for i in np.linspace(start, stop - 1, face_frames).round()
        }
        self.faces: dict[int, np.ndarray] = {}
        self.parts: dict[str, list[np.ndarray]] = {}
        self.first_crop: np.ndarray | None = None
        self.done = 0

    def add(self, models: BuildModels, crops: np.ndarray | torch.Tensor) -> None:
        """Extract the motion of the clip's next frames, ``crops (N, S, S, 3)`` uint8."""
        for k, v in _motion(models, crops).items():
            self.parts.setdefault(k, []).append(v)
        images = crops.numpy() if isinstance(crops, torch.Tensor) else crops
        if self.first_crop is None:
            self.first_crop = images[0].copy()
        for i in sorted(self.wanted & set(range(self.done, self.done + len(images)))):
            self.faces[i] = _face_crop(images[i - self.done])
        self.done += len(images)

    def motion(self) -> dict[str, np.ndarray]:
        """Every frame's motion.

        Raises:
            SkipClip: fewer frames were cropped than the clip has.
        """
        if self.done != self.n:
            raise SkipClip(f"unreadable video: decoded {self.done} of {self.n} frames")
        return {k: np.concatenate(v) for k, v in self.parts.items()}


def process_clip(
    src: ClipSource,
    split: str,
    models: BuildModels,
    style_id: int = 0,
    min_frames: int = 50,
    segment_frames: int = 0,
    face_frames: int = 0,
) -> list[Clip]:
    """Turn one raw clip into samples (several when ``segment_frames`` cuts it into pieces), each with
    ``face_frames`` face crops at evenly spaced frames when asked (for the emotion classifier), in this process.

    Raises:
        SkipClip: the clip cannot be used; the message says why.
    """
    reader, wav = open_clip(src, min_frames)
    clip = _PendingClip(src, len(reader), split, style_id, segment_frames, face_frames)
    for crops in crop_chunks(reader, models.cropper, models.batch_size):
        clip.add(models, crops)
    return _samples(models, clip, wav, reader.source_fps)


def _sha256_of(encoder: torch.nn.Module) -> str:
    """The audio encoder's weights hash (:func:`pctalk.checkpoints.info.state_sha256`), computed once."""
    if getattr(encoder, "_pctalk_sha256", None) is None:
        from pctalk.checkpoints.info import state_sha256

        encoder._pctalk_sha256 = state_sha256(encoder.state_dict())
    return encoder._pctalk_sha256


def _samples(models: BuildModels, clip: _PendingClip, wav: torch.Tensor, source_fps: float) -> list[Clip]:
    """The samples of a clip whose crops have all been through :meth:`_PendingClip.add`: the one place where
    samples (and their :class:`ClipMeta`) are made, for both the in-process and the worker path.

    Raises:
        SkipClip: fewer frames were cropped than the clip has.
    """
    motion = clip.motion()
    src, split, style_id, face_frames = clip.src, clip.split, clip.style_id, clip.face_frames
    n, pieces, faces, first_crop = clip.n, clip.pieces, clip.faces, clip.first_crop
    wav = fit_to_frames(wav, n)
    clips = []
    for start, stop, name in pieces:
        length = stop - start
        audio = wav[start * samples_per_frame() : stop * samples_per_frame()]
        mel = melspectrogram(audio)
        feat = None
        if models.audio_encoder is not None:
            windows = frame_windows(mel, length).to(models.device)
            feat = models.audio_encoder.encode(windows).cpu().numpy()
        meta = ClipMeta(
            dataset=src.dataset,
            identity=src.identity,
            clip=name,
            split=split,
            n_frames=length,
            style_id=style_id,
            emotion=src.emotion,
            level=src.level,
            source=str(src.video),
            extra={"source_fps": source_fps, "start_frame": start},
        )
        if feat is not None:  # which encoder made them: training checks its own against it
            meta.extra["audio_feat_sha256"] = _sha256_of(models.audio_encoder)
        clip_motion = ClipMotion(
            exp=motion["exp"][start:stop],
            pitch=motion["pitch"][start:stop],
            yaw=motion["yaw"][start:stop],
            roll=motion["roll"][start:stop],
            t=motion["t"][start:stop],
            scale=motion["scale"][start:stop],
            kp=motion["kp"].mean(0),
        )
        key = ClipSource(src.dataset, src.identity, name, src.video).key
        own = None
        if face_frames:
            own = np.stack([faces[int(i)] for i in np.linspace(start, stop - 1, face_frames).round()])
        clips.append(Clip(key, clip_motion, mel.numpy(), audio.numpy(), first_crop, meta, feat, own))
    return clips


def _outcomes(
    todo: list[ClipSource],
    models: BuildModels,
    min_frames: int,
    decode_workers: int,
    cpus: int,
    options: Callable[[ClipSource], dict[str, Any]],
) -> Iterator[tuple[ClipSource, list[Clip] | SkipClip]]:
    """Each clip of ``todo`` with its samples or the reason it is skipped, as clips finish (in ``todo``'s order
    in this process; in the order the workers finish them with ``decode_workers``). ``options(src)`` gives
    :func:`process_clip`'s arguments for the clip."""
    if not decode_workers:
        for src in todo:
            try:
                result = process_clip(src, models=models, min_frames=min_frames, **options(src))
            except SkipClip as err:
                result = err
            yield src, result
        return
    from data_prep.parallel import CropChunk, CropStream, crop_loader

    threads = max(1, (cpus - 1) // decode_workers)  # one CPU for this process
    stream = CropStream(todo, models.cropper.backend, models.weights_root, models.batch_size, min_frames, threads)
    pending: dict[int, _PendingClip] = {}  # clips with crops in flight: at most one per worker
    for item in crop_loader(stream, decode_workers, pin_memory=models.device.type == "cuda"):
        src = todo[item.index]
        if isinstance(item, CropChunk):
            if item.index not in pending:
                pending[item.index] = _PendingClip(src, item.n_frames, **options(src))
            clip = pending[item.index]
            if item.start != clip.done:
                raise RuntimeError(f"{src.key}: crops from frame {item.start} arrived after frame {clip.done}")
            clip.add(models, item.crops)
            continue
        clip = pending.pop(item.index, None)
        if item.skip is not None:
            yield src, SkipClip(item.skip)
            continue
        if clip is None:  # a clip of no frames (min_frames 0)
            clip = _PendingClip(src, item.n_frames, **options(src))
        try:
            result = _samples(models, clip, item.wav, item.source_fps)
        except SkipClip as err:
            result = err
        yield src, result


def _where(src: ClipSource, root: Path, clip: Clip) -> dict[str, Any]:
    """Where a sample comes from, for its manifest record (and so for ``test_clips.json``): its raw video and audio
    relative to the dataset root, its first frame, its raw identity, clip name and labels."""

    def relative(path: Path | None) -> str | None:
        return None if path is None else Path(os.path.relpath(path, root)).as_posix()

    meta = clip.meta
    return {"video": relative(src.video), "audio": relative(src.audio), "start_frame": int(meta.extra["start_frame"]),
            "identity": meta.identity, "clip_name": meta.clip, "emotion": meta.emotion,
            "level": meta.level}  # fmt: skip


def _samples_per_shard(n_clips: int, gpus: int, workers: int, cap: int = 512) -> int:
    """Enough shards for every (GPU, worker) pair to get at least four: ``n_clips / (4 * gpus * workers)``."""
    return max(1, min(cap, math.floor(n_clips / (4 * gpus * workers))))


def _augment_records(root: Path) -> dict[str, dict]:
    """``pctalk-data augment``'s kept clips under ``root``, by clip key."""
    out = {}
    for record in read_manifests(root, prefix="augment"):
        if record.get("status") == "kept" and "/" in record.get("key", ""):
            identity, clip = record["key"].split("/", 1)
            out[ClipSource("aug", identity, clip, Path()).key] = record
    return out


def _driver_styles(root: Path, clips: list[ClipSource], console) -> dict[str, int]:
    """Clip key -> its driver's style id (an augmented clip speaks with its driver's audio, so with its style), from
    the augment manifests; -1 (no style: the predictor's average) for clips augment did not record one for."""
    records = _augment_records(root)
    styles = {c.key: int(records.get(c.key, {}).get("driver_style", -1)) for c in clips}
    unknown = sum(s < 0 for s in styles.values())
    if unknown:
        console.print(
            f"[yellow]warning[/yellow]: {unknown} of {len(clips)} augmented clips under {root} have no driver style in "
            f"augment-j*.jsonl (made by an older `pctalk-data augment`, or by another tool); they train with style -1 "
            f"(the average style). Rerun `pctalk-data augment` into a new folder to record them."
        )
    return styles


def _driver_names(root: Path) -> dict[str, dict[str, int]]:
    """The drivers' styles by dataset (``{dataset: {identity: style id}}``) for ``styles.json``: an augmented clip's
    style is its driver's, under the driver's name."""
    out: dict[str, dict[str, int]] = {}
    for record in _augment_records(root).values():
        if record.get("driver_style", -1) >= 0 and record.get("driver_identity"):
            dataset, identity = record["driver_identity"].split("/", 1)
            out.setdefault(dataset, {})[identity] = int(record["driver_style"])
    return out


def build(
    dataset: str,
    root: str | os.PathLike[str],
    out: str | os.PathLike[str],
    models: BuildModels,
    split_file: str | os.PathLike[str] | None = None,
    num_jobs: int | None = None,
    job_index: int | None = None,
    min_frames: int = 50,
    test_seconds: float | None = None,
    gpus: int = 8,
    workers: int = 4,
    progress: bool = True,
    face_frames: int = 0,
    decode_workers: int | None = 0,
    styles_from: str | None = None,
    transcripts: str | os.PathLike[str] | None = None,
) -> int:
    """Build (or resume) this job's shards; returns the exit status (1 only when nothing was written).

    Args:
        test_seconds: cut test-split clips into pieces of this many seconds (default 10 for HDTF, whole clips
            otherwise).
        gpus, workers: the training setup the shards are sized for (at least 4 shards per GPU and loader worker).
        decode_workers: processes that decode, read the audio and crop the faces while this one extracts the
            motion (0, the default here: all in this process, and no worker start-up cost; ``None``: one per CPU of
            the job but one, see :func:`data_prep.parallel.default_decode_workers`, which ``pctalk-data build``
            uses). The samples are the same for any number. A script that uses workers needs an ``if __name__ ==
            "__main__":`` guard (they start from a fork server).
        styles_from: shard folders, separated by commas, whose speaking styles this dataset's continue after
            (unique ids across datasets trained together).
        transcripts: clip id -> text (:mod:`data_prep.transcripts`), stored as each clip's ``text``.
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.table import Table

    from data_prep.parallel import available_cpus, default_decode_workers

    num_jobs, job_index = job_slice(num_jobs, job_index)
    cpus = available_cpus()
    decode_workers = default_decode_workers(cpus) if decode_workers is None else decode_workers
    if decode_workers < 0:
        raise ValueError(f"decode_workers must be 0 or more, got {decode_workers}")
    torch.set_num_threads(min(torch.get_num_threads(), cpus))  # torch counts the node's cores, not the job's
    cv2.setNumThreads(min(cv2.getNumThreads(), cpus))
    out = Path(out)
    clips = enumerate_clips(dataset, root)
    adapter_dataset = clips[0].dataset
    identities = sorted({c.identity for c in clips})
    fixed = load_split_file(split_file, adapter_dataset) if split_file else None
    splits = assign_splits(identities, adapter_dataset, fixed)
    write_splits(out, adapter_dataset, splits)
    train_identities = [i for i in identities if splits[i] == "train"]
    console = Console(stderr=True)
    after: dict[str, str] = {}
    for folder in [f.strip() for f in (styles_from or "").split(",") if f.strip()]:
        if not (Path(folder) / "styles.json").is_file() and not (Path(folder) / "splits.json").is_file():
            raise FileNotFoundError(
                f"--styles-from {folder}: no styles.json there (a shard folder of pctalk-data build)"
            )
        after.update(read_styles(folder))
    style_ids = number_styles(adapter_dataset, train_identities, identities, after)
    if adapter_dataset == "aug":
        style_of = _driver_styles(Path(root), clips, console)
        for dataset, names in _driver_names(Path(root)).items():
            write_styles(out, dataset, names)
    else:
        style_of = {c.key: style_ids[c.identity] for c in clips}
        write_styles(out, adapter_dataset, style_ids)
    texts = load_transcripts(transcripts) if transcripts else {}
    if transcripts:
        missing = sum(transcript_of(c, root, texts) is None for c in clips)
        if missing:
            console.print(f"[yellow]warning[/yellow]: {missing} of {len(clips)} clips have no line in {transcripts}")
    if test_seconds is None:
        test_seconds = 10.0 if dataset == "hdtf" else 0.0
    mine = clips[job_index::num_jobs]
    empty = [split for split in ("train", "val", "test") if split not in splits.values()]
    if empty and adapter_dataset != "aug":  # augmented identities only ever train
        console.print(
            f"[yellow]warning[/yellow]: no identity of {dataset} went to the {' / '.join(empty)} split; training then "
            f"runs without validation (or evaluation has no clips). Give --split-file FILE with 'identity split' lines "
            f"(e.g. 'M012 val') to choose them."
        )
    started = time.perf_counter()
    with ShardSink(out, job_index, _samples_per_shard(len(clips), gpus, workers)) as sink:
        todo = [c for c in mine if c.key not in sink.done]
        console.print(
            f"[bold]pctalk-data build[/bold] {dataset} from {root}: {len(clips)} clips, job {job_index + 1}/{num_jobs} "
            f"has {len(mine)}, {len(mine) - len(todo)} already done"
        )
        skipped = Counter()
        columns = [
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
        ]
        columns += [TimeElapsedColumn(), TimeRemainingColumn()]
        with Progress(*columns, console=console, disable=not progress) as bar:
            task = bar.add_task("clips", total=len(todo), status="")

            def options(src: ClipSource) -> dict:  # process_clip's arguments for one clip
                split = splits[src.identity]
                segment = int(test_seconds * 25) if split == "test" else 0
                return {"split": split, "style_id": style_of[src.key], "segment_frames": segment,
                        "face_frames": face_frames}  # fmt: skip

            for src, result in _outcomes(todo, models, min_frames, decode_workers, cpus, options):
                if isinstance(result, SkipClip):
                    sink.skip(src.key, str(result), source=str(src.video))
                    skipped[str(result).split(":")[0]] += 1
                else:
                    text = transcript_of(src, root, texts) if texts else None
                    for clip in result:
                        if text is not None:
                            clip.meta.extra["text"] = text
                        sink.write(clip, source=str(src.video), **_where(src, Path(root), clip))
                bar.update(task, advance=1, status=f"written {sink.written}, skipped {sum(skipped.values())}")
    total_written = sink.written  # after the last shards were closed and renamed
    sizes = write_index(out)
    write_test_list(out)
    table = Table(title=f"job {job_index + 1}/{num_jobs} done in {time.perf_counter() - started:.0f} s")
    table.add_column("outcome")
    table.add_column("clips", justify="right")
    table.add_row("written (samples, this job, all runs)", str(total_written))
    for reason, count in skipped.most_common():
        table.add_row(f"skipped: {reason}", str(count))
    table.add_row("shards in the folder (all jobs)", str(len(sizes)))
    console.print(table)
    if total_written == 0 and mine:
        console.print(f"[red]nothing was written[/red]; the reasons are in {sink.manifest}")
        return 1
    return 0


def load_models(
    weights: str | os.PathLike[str] | None,
    cropper: str = "liveportrait",
    audio_features: bool = False,
    liveportrait_size: str = "official",
    batch_size: int = 32,
    device: str | None = None,
) -> BuildModels:
    """The build's networks from the weights root (the motion extractor on the GPU when there is one)."""
    from pctalk.audio.encoder import load_audio_encoder
    from pctalk.keypoints.config import LivePortraitConfig
    from pctalk.keypoints.liveportrait import load_liveportrait
    from pctalk.weights.registry import default_root, resolve

    root = Path(weights) if weights is not None else default_root()
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    config = LivePortraitConfig.tiny() if liveportrait_size == "tiny" else LivePortraitConfig()
    lp = load_liveportrait(root, device=dev, config=config, require_stitching=False)
    encoder = load_audio_encoder(resolve("audio.audio_visual_encoder", root), device=dev) if audio_features else None
    return BuildModels(lp, FaceCropper(cropper, weights_root=root), encoder, dev, batch_size, weights_root=root)


def build_command(
    dataset: Literal["hdtf", "mead", "faces", "folder"],
    root: Path,
    out: Path,
    weights: Path | None = None,
    split_file: Path | None = None,
    num_jobs: int | None = None,
    job_index: int | None = None,
    cropper: Literal["liveportrait", "dlib", "opencv"] = "liveportrait",
    audio_features: bool = False,
    min_frames: int = 50,
    test_seconds: float | None = None,
    gpus: int = 8,
    workers: int = 4,
    batch_size: int = 32,
    liveportrait_size: Literal["official", "tiny"] = "official",
    progress: bool = True,
    face_frames: int = 0,
    decode_workers: int | None = None,
    styles_from: str | None = None,
    transcripts: Path | None = None,
) -> int:
    """Build WebDataset shards (motion, audio, mel, reference crop) from raw clips; resumable, SLURM-array aware.

    Args:
        dataset: the raw layout: hdtf, mead, faces (augmented identities from `pctalk-data augment`) or folder.
        root: the raw dataset folder.
        out: the shard folder (shards, manifests, sizes.json, <split>.txt, splits.json, and test_clips.json: the
            test pieces pctalk-eval scores).
        weights: the weights root (default: $PCTALK_WEIGHTS, else ./pretrained_weights).
        split_file: identity -> split: JSON, `identity split` lines, or a published one-column list of test
            identities or clip names (test.txt; the split is the one its file name says), which then makes the whole
            test set. Default: MEAD's test identities (M003, M030, W009, W015), else a stable hash.
        num_jobs: jobs splitting the clips (default: $SLURM_ARRAY_TASK_COUNT, else 1).
        job_index: this job (default: the SLURM array task, else 0).
        cropper: liveportrait (its ONNX models), dlib (face detector and 68 landmarks installed from PyPI; no files
            needed) or opencv (the Haar cascade inside OpenCV, no landmarks).
        audio_features: also store the audio encoder's features (needs audio/audio_visual_encoder.pth).
        min_frames: skip clips shorter than this many frames at 25 fps (one training window).
        test_seconds: cut test clips into pieces this long (default: 10 for hdtf, whole clips otherwise).
        gpus: GPUs the shards will be trained on (shards are sized to give each GPU and worker at least four).
        workers: data loader workers per GPU.
        batch_size: frames per motion-extraction batch.
        liveportrait_size: network sizes of the weights (tiny is for tests).
        progress: show a progress bar.
        face_frames: also store this many face crops per clip, evenly spaced (to train the emotion classifier
            with experiments/eval/emotion_classifier.yaml; 16 is plenty).
        decode_workers: processes that decode the videos, read the audio and crop the faces while the main one runs
            the motion extractor (on the GPU) on their crops; 0 does everything in one process. Default: the job's
            CPUs ($SLURM_CPUS_PER_TASK, else the CPUs this process may use) minus one, at most 32. The shards hold
            the same samples for any number.
        styles_from: shard folders (e.g. HDTF's; several separated by commas) whose speaking styles this dataset's
            continue after, so that datasets trained together never share a style id (training refuses folders
            that do).
        transcripts: clip id -> text, as JSON or 'id<TAB>text' lines (the text emotion source needs them); an id is
            the clip's key, its video's path under root without the extension, or the file name without it.
    """
    models = load_models(weights, cropper, audio_features, liveportrait_size, batch_size)
    return build(
        dataset, root, out, models, split_file, num_jobs, job_index, min_frames, test_seconds, gpus, workers, progress,
        face_frames, decode_workers, styles_from, transcripts,
    )  # fmt: skip
