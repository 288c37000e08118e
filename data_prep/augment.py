"""``pctalk-data augment``: new identities for the lip refiner by LivePortrait video-driven reenactment.

Each face image (CelebA-HQ, FFHQ, ...) is animated by the motion of HDTF *training* clips, relative to the
driver's first frame as LivePortrait does (rotation, expression, scale and translation changes applied to the
source's own), stitched, rendered, and written with the driver's audio as ``<out>/<image-id>/<driver>.mp4``. A clip
is kept only when the Wav2Lip SyncNet expert finds its lips in sync with that audio. ``pctalk-data build --dataset
faces --root <out>`` then re-extracts the motion from the rendered frames into shards tagged ``aug/<image-id>``.

A driver whose identity is in the test or validation split is refused: augmented data must never see them.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import torch
import webdataset as wds

from pctalk.audio.mel import frame_windows
from pctalk.audio.syncnet import SYNC_FRAMES, SyncNet
from pctalk.data.schema import Clip, decode_sample
from pctalk.data.splits import read_splits
from pctalk.data.writer import append_records, read_manifests
from pctalk.keypoints.crop import FaceCropper, FaceNotFoundError, face_box
from pctalk.keypoints.liveportrait import LivePortrait
from pctalk.keypoints.transform import rotation_matrix, transform_keypoints
from pctalk.media import write_video

__all__ = ["AugmentModels", "LeakError", "load_drivers", "reenact", "sync_confidence"]

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp")


class LeakError(ValueError):
    """A test or validation identity was about to be used as a driver."""


@dataclass
class AugmentModels:
    liveportrait: LivePortrait
    cropper: FaceCropper
    syncnet: SyncNet
    device: torch.device
    batch_size: int = 8


def load_drivers(shards: str | os.PathLike[str], limit: int | None = None) -> list[Clip]:
    """The training clips of a shard folder (``train.txt``), checked against ``splits.json``.

    Raises:
        LeakError: a listed clip belongs to a test or validation identity.
    """
    folder = Path(shards)
    listing = folder / "train.txt"
    if not listing.is_file():
        raise FileNotFoundError(f"{listing} not found; build the driver shards with `pctalk-data build` first")
    names = listing.read_text().split()
    held_out = set()
    splits_path = folder / "splits.json"
    if splits_path.is_file():
        for dataset, mapping in read_splits(splits_path).items():
            held_out |= {(dataset, identity) for identity, split in mapping.items() if split != "train"}
    drivers = []
    for sample in wds.WebDataset([str(folder / n) for n in names], shardshuffle=False, empty_check=False):
        clip = decode_sample(sample)
        if clip.meta.split != "train" or (clip.meta.dataset, clip.meta.identity) in held_out:
            raise LeakError(
                f"driver {clip.key} is a {clip.meta.split} identity; augmentation may only use training identities"
            )
        drivers.append(clip)
        if limit is not None and len(drivers) >= limit:
            break
    if not drivers:
        raise ValueError(f"no training clips listed in {listing}")
    return drivers


@torch.no_grad()
def reenact(models: AugmentModels, image: np.ndarray, driver: Clip, max_frames: int) -> np.ndarray:
    """Animate the face in ``image (H, W, 3)`` uint8 with ``driver``'s motion; returns ``(T, S, S, 3)`` uint8
    renders (S = 512 at the official sizes)."""
    lp, dev = models.liveportrait, models.device
    crop = models.cropper.crop(image)
    size = lp.config.input_size
    source = crop.image if size == 256 else cv2.resize(crop.image, (size, size), interpolation=cv2.INTER_AREA)
    x = torch.from_numpy(source).to(dev).permute(2, 0, 1)[None].float() / 255
    src = lp.extract_motion(x)
    feature = lp.appearance(x)
    x_s = src.keypoints()
    m = driver.motion
    n = min(len(m), max_frames)

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a[:n])).to(dev)

    r_d = rotation_matrix(t(m.pitch), t(m.yaw), t(m.roll))
    exp_d, t_d, s_d = t(m.exp), t(m.t), t(m.scale)
    # LivePortrait's relative motion: the driver's change since its first frame, applied to the source.
    r_new = r_d @ r_d[:1].transpose(1, 2) @ src.R
    exp_new = src.exp + exp_d - exp_d[:1]
    scale_new = src.scale * s_d / s_d[:1]
    t_new = src.t + t_d - t_d[:1]
    x_d = transform_keypoints(src.kp.expand(n, -1, -1), r_new, exp_new, scale_new, t_new)
    frames = []
    for i in range(0, n, models.batch_size):
        chunk = x_d[i : i + models.batch_size]
        b = len(chunk)
        xs = x_s.expand(b, -1, -1)
        render = lp.warp_decode(feature.expand(b, -1, -1, -1, -1), xs, lp.stitch(xs, chunk))
        frames.append((render.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy())
    return np.concatenate(frames)


@torch.no_grad()
def sync_confidence(syncnet: SyncNet, frames: np.ndarray, mel: np.ndarray, stride: int = SYNC_FRAMES) -> float:
    """Mean probability the expert gives to "in sync" over windows of 5 frames (every ``stride`` frames)."""
    n = len(frames)
    if n < SYNC_FRAMES:
        return 0.0
    x1, y1, x2, y2 = face_box(frames.shape[1])
    faces = torch.from_numpy(frames[:, max(0, y1) : y2, max(0, x1) : x2]).permute(0, 3, 1, 2).float() / 255
    faces = torch.nn.functional.interpolate(faces, size=(96, 96), mode="bilinear", antialias=True, align_corners=False)
    windows = frame_windows(mel if isinstance(mel, np.ndarray) else torch.as_tensor(mel), n)
    starts = list(range(0, n - SYNC_FRAMES + 1, stride))
    device = next(syncnet.parameters()).device
    clips = torch.stack([faces[s : s + SYNC_FRAMES] for s in starts]).to(device)
    return float(syncnet.sync_probability(clips, windows[starts].to(device)).mean())


def _pick(image_id: str, drivers: list[Clip], k: int) -> list[Clip]:
    """``k`` drivers for an image, chosen by a stable hash so every job picks the same."""
    start = int(hashlib.sha1(image_id.encode()).hexdigest()[:8], 16) % len(drivers)
    return [drivers[(start + j * 7919) % len(drivers)] for j in range(min(k, len(drivers)))]


def augment(
    faces: str | os.PathLike[str],
    drivers: list[Clip],
    out: str | os.PathLike[str],
    models: AugmentModels,
    per_face: int = 2,
    threshold: float = 0.5,
    max_frames: int = 250,
    num_jobs: int = 1,
    job_index: int = 0,
    progress: bool = True,
) -> int:
    """Write the augmented clips of this job's share of the images; resumable from its manifest."""
    from rich.progress import Progress

    images = sorted(p for p in Path(faces).rglob("*") if p.suffix.lower() in IMAGE_EXTS)
    if not images:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTS)}) under {faces}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / f"augment-j{job_index:03d}.jsonl"
    done = {r["key"] for r in read_manifests(out, job_index, prefix="augment")}
    mine = images[job_index::num_jobs]
    kept = dropped = 0
    started = time.perf_counter()
    with Progress(disable=not progress) as bar:
        task = bar.add_task("augmenting", total=len(mine) * per_face)
        for path in mine:
            image_id = path.stem
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            for driver in _pick(image_id, drivers, per_face):
                name = driver.key.replace("/", "_")
                key = f"{image_id}/{name}"
                bar.update(task, advance=1)
                if key in done:
                    continue
                record = {
                    "key": key, "image": str(path), "driver": driver.key, "driver_style": driver.meta.style_id,
                    "driver_identity": f"{driver.meta.dataset}/{driver.meta.identity}",
                }  # fmt: skip  # the clip speaks with its driver's audio, so with its style (pctalk-data build)
                try:
                    if image is None:
                        raise FaceNotFoundError(f"cannot read image {path}")
                    frames = reenact(models, np.ascontiguousarray(image[..., ::-1]), driver, max_frames)
                except FaceNotFoundError as err:
                    record.update(status="skipped", reason=f"no face: {err}")
                else:
                    n = len(frames)
                    mel = driver.mel[:, : int(n * 3.2) + 1]
                    confidence = sync_confidence(models.syncnet, frames, mel)
                    record.update(confidence=confidence, frames=n)
                    if confidence >= threshold:
                        write_video(out / image_id / f"{name}.mp4", frames, audio=driver.audio[: n * 640])
                        record["status"] = "kept"
                        kept += 1
                    else:
                        record.update(status="dropped", reason=f"sync confidence {confidence:.3f} < {threshold}")
                        dropped += 1
                append_records(manifest, [record])
    elapsed = time.perf_counter() - started
    print(f"augment job {job_index + 1}/{num_jobs}: kept {kept}, dropped {dropped} in {elapsed:.0f} s")
    return 0


def augment_command(
    faces: Path,
    drivers: Path,
    out: Path,
    weights: Path | None = None,
    syncnet: Path | None = None,
    per_face: int = 2,
    threshold: float = 0.5,
    max_frames: int = 250,
    max_drivers: int | None = None,
    cropper: Literal["liveportrait", "dlib", "opencv"] = "liveportrait",
    num_jobs: int | None = None,
    job_index: int | None = None,
    batch_size: int = 8,
    liveportrait_size: Literal["official", "tiny"] = "official",
    progress: bool = True,
) -> int:
    """Animate face images with HDTF training clips (LivePortrait relative motion, driver audio kept), keep the
    clips the SyncNet expert finds in sync; then `pctalk-data build --dataset faces --root OUT`.

    Args:
        faces: a folder of face images (CelebA-HQ, FFHQ, ...).
        drivers: shards of the driving dataset (only its train split is used; test identities are refused).
        out: where the clips go, as <image-id>/<driver>.mp4.
        weights: the weights root (default: $PCTALK_WEIGHTS, else ./pretrained_weights).
        syncnet: Wav2Lip's lipsync_expert.pth (default: under the weights root).
        per_face: drivers per image.
        threshold: minimum mean sync probability to keep a clip.
        max_frames: frames rendered per clip (250 = 10 s).
        max_drivers: use at most this many driver clips.
        cropper: liveportrait (its ONNX models), dlib (detector and landmarks from PyPI) or opencv.
        num_jobs: jobs splitting the images (default: $SLURM_ARRAY_TASK_COUNT, else 1).
        job_index: this job (default: the SLURM array task, else 0).
        batch_size: frames rendered per batch.
        liveportrait_size: network sizes of the weights (tiny is for tests).
        progress: show a progress bar.
    """
    from data_prep.build import job_slice
    from pctalk.audio.syncnet import load_syncnet
    from pctalk.keypoints.config import LivePortraitConfig
    from pctalk.keypoints.liveportrait import load_liveportrait
    from pctalk.weights.registry import default_root, resolve

    num_jobs, job_index = job_slice(num_jobs, job_index)
    root = Path(weights) if weights is not None else default_root()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    config = LivePortraitConfig.tiny() if liveportrait_size == "tiny" else LivePortraitConfig()
    models = AugmentModels(
        load_liveportrait(root, device=device, config=config),
        FaceCropper(cropper, weights_root=root),
        load_syncnet(syncnet or resolve("wav2lip.lipsync_expert", root), device=device),
        device,
        batch_size,
    )
    clips = load_drivers(drivers, max_drivers)
    return augment(faces, clips, out, models, per_face, threshold, max_frames, num_jobs, job_index, progress)
