"""``pctalk-data build``: raw talking-face clips -> WebDataset shards of LivePortrait motion, audio and mel.

Per clip: decode at 25 fps (by timestamp), read the audio at 16 kHz, track and crop the face, extract the motion
with LivePortrait's motion extractor in batches (on the GPU when there is one), compute the Wav2Lip mel (and the
audio encoder's features when asked), and write the sample to its split's shards. Clips that cannot be used are
skipped with their reason in the manifest; the run ends with a summary table.

Scale-out: ``--num-jobs N --job-index I`` (defaults from a SLURM array) gives each job a deterministic slice of the
clips and its own shard names; a rerun resumes from the job's manifest.
"""

from __future__ import annotations

import math
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import torch

from data_prep.sources import ClipSource, enumerate_clips
from data_prep.splits import assign_splits, load_split_file, write_splits
from pctalk.audio.io import AudioLoadError, SilentAudioError, ensure_audible, load_audio
from pctalk.audio.mel import fit_to_frames, frame_windows, melspectrogram, samples_per_frame
from pctalk.data.schema import Clip, ClipMeta, ClipMotion
from pctalk.data.styles import write_styles
from pctalk.data.writer import ShardSink, write_index
from pctalk.keypoints.crop import FaceCropper, FaceNotFoundError
from pctalk.media import VideoError, VideoReader

__all__ = ["BuildModels", "SkipClip", "build", "job_slice", "process_clip"]

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
    """The networks a build uses."""

    liveportrait: torch.nn.Module
    cropper: FaceCropper
    audio_encoder: torch.nn.Module | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    batch_size: int = 32


def _motion(models: BuildModels, crops: list[np.ndarray]) -> dict[str, np.ndarray]:
    size = models.liveportrait.config.input_size
    batch = np.stack(
        [c if c.shape[0] == size else cv2.resize(c, (size, size), interpolation=cv2.INTER_AREA) for c in crops]
    )
    images = torch.from_numpy(batch).to(models.device).permute(0, 3, 1, 2).float().div_(255)
    with torch.no_grad():
        m = models.liveportrait.extract_motion(images)
    return {k: getattr(m, k).float().cpu().numpy() for k in ("kp", "exp", "pitch", "yaw", "roll", "t", "scale")}


def _face_crop(image: np.ndarray) -> np.ndarray:
    """The ``256 x 256`` face crop stored for the emotion classifier."""
    if image.shape[:2] == (256, 256):
        return image.copy()
    return cv2.resize(image, (256, 256), interpolation=cv2.INTER_AREA)


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
    ``face_frames`` face crops at evenly spaced frames when asked (for the emotion classifier).

    Raises:
        SkipClip: the clip cannot be used; the message says why.
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

    pieces = [(0, n, src.clip)]
    if segment_frames and n >= segment_frames:
        pieces = [
            (s, s + segment_frames, f"{src.clip}_s{i:03d}")
            for i, s in enumerate(range(0, n - segment_frames + 1, segment_frames))
        ]
    wanted = {int(i) for start, stop, _ in pieces for i in np.linspace(start, stop - 1, face_frames).round()}
    faces: dict[int, np.ndarray] = {}
    parts: dict[str, list[np.ndarray]] = {}
    first_crop: np.ndarray | None = None
    pending: list[np.ndarray] = []

    def flush() -> None:
        for k, v in _motion(models, pending).items():
            parts.setdefault(k, []).append(v)
        pending.clear()

    try:
        frames = (frame for chunk in reader.chunks(models.batch_size) for frame in chunk)
        for index, crop in enumerate(models.cropper.track(frames)):
            first_crop = crop.image if first_crop is None else first_crop
            if index in wanted:
                faces[index] = _face_crop(crop.image)
            pending.append(crop.image)
            if len(pending) == models.batch_size:
                flush()
        if pending:
            flush()
    except FaceNotFoundError as err:
        raise SkipClip(f"no face: {err}") from None
    except VideoError as err:
        raise SkipClip(f"unreadable video: {err}") from None
    motion = {k: np.concatenate(v) for k, v in parts.items()}
    if len(motion["exp"]) != n:
        raise SkipClip(f"unreadable video: decoded {len(motion['exp'])} of {n} frames")

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
            extra={"source_fps": reader.source_fps, "start_frame": start},
        )
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


def _samples_per_shard(n_clips: int, gpus: int, workers: int, cap: int = 512) -> int:
    """Enough shards for every (GPU, worker) pair to get at least four: ``n_clips / (4 * gpus * workers)``."""
    return max(1, min(cap, math.floor(n_clips / (4 * gpus * workers))))


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
) -> int:
    """Build (or resume) this job's shards; returns the exit status (1 only when nothing was written).

    Args:
        test_seconds: cut test-split clips into pieces of this many seconds (default 10 for HDTF, whole clips
            otherwise).
        gpus, workers: the training setup the shards are sized for (at least 4 shards per GPU and loader worker).
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

    num_jobs, job_index = job_slice(num_jobs, job_index)
    out = Path(out)
    clips = enumerate_clips(dataset, root)
    adapter_dataset = clips[0].dataset
    identities = sorted({c.identity for c in clips})
    fixed = load_split_file(split_file) if split_file else None
    splits = assign_splits(identities, adapter_dataset, fixed)
    write_splits(out, adapter_dataset, splits)
    train_identities = [i for i in identities if splits[i] == "train"]
    style_ids = {
        identity: train_identities.index(identity) if identity in train_identities else -1 for identity in identities
    }
    write_styles(out, adapter_dataset, style_ids)
    if test_seconds is None:
        test_seconds = 10.0 if dataset == "hdtf" else 0.0
    mine = clips[job_index::num_jobs]
    console = Console(stderr=True)
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
            for src in todo:
                split = splits[src.identity]
                try:
                    segment = int(test_seconds * 25) if split == "test" else 0
                    for clip in process_clip(
                        src, split, models, style_ids[src.identity], min_frames, segment, face_frames
                    ):
                        sink.write(clip, source=str(src.video))
                except SkipClip as err:
                    sink.skip(src.key, str(err), source=str(src.video))
                    skipped[str(err).split(":")[0]] += 1
                bar.update(task, advance=1, status=f"written {sink.written}, skipped {sum(skipped.values())}")
    total_written = sink.written  # after the last shards were closed and renamed
    sizes = write_index(out)
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
    return BuildModels(lp, FaceCropper(cropper, weights_root=root), encoder, dev, batch_size)


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
) -> int:
    """Build WebDataset shards (motion, audio, mel, reference crop) from raw clips; resumable, SLURM-array aware.

    Args:
        dataset: the raw layout: hdtf, mead, faces (augmented identities from `pctalk-data augment`) or folder.
        root: the raw dataset folder.
        out: the shard folder (shards, manifests, sizes.json, <split>.txt, splits.json).
        weights: the weights root (default: $PCTALK_WEIGHTS, else ./pretrained_weights).
        split_file: identity -> split (JSON, or `identity split` lines); default: MEAD's test identities, else a hash.
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
    """
    models = load_models(weights, cropper, audio_features, liveportrait_size, batch_size)
    return build(
        dataset, root, out, models, split_file, num_jobs, job_index, min_frames, test_seconds, gpus, workers, progress,
        face_frames,
    )  # fmt: skip
