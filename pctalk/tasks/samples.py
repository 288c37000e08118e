"""What a training run shows of itself: sample videos with their audio and plots of predicted against ground-truth
lip trajectories, logged every few validation epochs (to wandb when it is the logger, always to files)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from pctalk.data.schema import Clip, decode_sample
from pctalk.keypoints.transform import rotation_matrix, transform_keypoints

__all__ = ["SampleLogger", "clip_features", "clip_keypoints", "lip_plot"]


def clip_features(clip: Clip, audio_encoder: torch.nn.Module, device: torch.device) -> torch.Tensor:
    """``(1, T, C)`` audio features of a whole clip: stored ones when its shard has them, else encoded mel windows."""
    from pctalk.audio.mel import frame_windows

    if clip.audio_feat is not None:
        return torch.from_numpy(np.array(clip.audio_feat))[None].to(device)
    return audio_encoder(frame_windows(clip.mel, clip.meta.n_frames).to(device))[None]


def clip_keypoints(clip: Clip, exp: torch.Tensor | None = None) -> torch.Tensor:
    """``(T, 21, 3)`` driven keypoints of ``clip`` with its own pose and scale, and its own expression or ``exp``."""
    m = clip.motion
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    expression = t(m.exp) if exp is None else exp
    n = len(expression)
    return transform_keypoints(
        t(m.kp).expand(n, -1, -1), rotation_matrix(t(m.pitch), t(m.yaw), t(m.roll)), expression, t(m.scale), t(m.t)
    )


def lip_plot(predicted: np.ndarray, target: np.ndarray, size: tuple[int, int] = (640, 240)) -> np.ndarray:
    """An RGB plot of the lip coordinate that moves most: target in green, prediction in red, over time."""
    w, h = size
    image = np.full((h, w, 3), 255, np.uint8)
    which = int(np.argmax(target.std(0)))
    values = np.stack([target[:, which], predicted[:, which]])
    lo, hi = float(values.min()), float(values.max())
    span = hi - lo or 1.0
    for series, colour in ((target[:, which], (40, 160, 60)), (predicted[:, which], (220, 50, 50))):
        x = np.linspace(10, w - 10, len(series))
        y = h - 10 - (series - lo) / span * (h - 20)
        cv2.polylines(image, [np.stack([x, y], 1).astype(np.int32)], False, colour, 2, cv2.LINE_AA)
    label = f"lip coordinate {which}: target (green) vs prediction (red)"
    cv2.putText(image, label, (10, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return image


class SampleLogger(Callback):
    """Every ``every_n_val_epochs`` validation epochs, predict a few validation clips in full and write, per clip, an
    mp4 with the clip's audio and a lip-trajectory plot under ``<log dir>/samples/``; log them to wandb when a
    ``WandbLogger`` is attached.

    The video is rendered through LivePortrait from the clip's reference crop when ``weights`` is given (or the task
    holds a LivePortrait, as the lip refiner does), else it shows the keypoints (prediction beside the ground
    truth). The task must implement ``sample(clip) -> dict`` with ``keypoints``, ``target_keypoints``
    ``(T, 21, 3)`` and ``lips``, ``target_lips`` ``(T, 18)``.

    Args:
        every_n_val_epochs: how often.
        num_samples: validation clips shown.
        weights: a LivePortrait weights root, to render faces.
        liveportrait_size: sizes of those weights (``tiny`` is for tests).
        max_frames: frames shown per clip (the prediction covers the whole clip; rendering is the cost).
    """

    def __init__(
        self,
        every_n_val_epochs: int = 5,
        num_samples: int = 2,
        weights: str | None = None,
        liveportrait_size: str = "official",
        max_frames: int = 125,
    ) -> None:
        self.every, self.num_samples, self.weights, self.size = (
            every_n_val_epochs,
            num_samples,
            weights,
            liveportrait_size,
        )
        self.max_frames = max_frames
        self._clips: list[Clip] | None = None
        self._val_epochs = 0
        self._renderer = None

    def _load_clips(self, trainer: Trainer) -> list[Clip]:
        if self._clips is None:
            import webdataset as wds

            urls, _ = trainer.datamodule.shards("val")
            # every shard in this process, whatever the DDP world (WebDataset() refuses to read without a node
            # splitter when torch.distributed is up)
            samples = wds.DataPipeline(wds.SimpleShardList(urls), wds.tarfile_to_samples())
            self._clips = [decode_sample(s) for _, s in zip(range(self.num_samples), samples)]
        return self._clips

    def _liveportrait(self, pl_module: LightningModule) -> Any:
        from pctalk.keypoints.config import LivePortraitConfig
        from pctalk.keypoints.liveportrait import load_liveportrait

        if self._renderer is None and self.weights:
            config = LivePortraitConfig.tiny() if self.size == "tiny" else LivePortraitConfig()
            self._renderer = load_liveportrait(
                self.weights, device=pl_module.device, config=config, require_stitching=False
            )
        return self._renderer or getattr(pl_module, "liveportrait", None)

    def _render(self, lp: Any, clip: Clip, keypoints: torch.Tensor) -> np.ndarray:
        size = lp.config.input_size
        ref = cv2.resize(clip.ref, (size, size), interpolation=cv2.INTER_AREA)
        image = torch.from_numpy(ref).permute(2, 0, 1)[None].float() / 255
        with torch.no_grad():
            image = image.to(next(lp.parameters()).device)
            keypoints = keypoints.to(image.device)
            feature = lp.appearance(image)
            source = clip_keypoints(clip)[:1].to(image.device)
            frames = [
                lp.warp_decode(feature.expand(len(k), -1, -1, -1, -1), source.expand(len(k), -1, -1), k)
                for k in keypoints.split(8)
            ]
        return (torch.cat(frames).clamp(0, 1) * 255).byte().permute(0, 2, 3, 1).cpu().numpy()

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or not hasattr(pl_module, "sample"):
            return
        self._val_epochs += 1
        if self._val_epochs % self.every:
            return
        # every rank asks: under DDP ``trainer.log_dir`` is a broadcast, which one rank alone would leave hanging
        log_dir = Path(trainer.log_dir or trainer.default_root_dir)
        if trainer.is_global_zero:
            self._write_samples(trainer, pl_module, log_dir / "samples" / f"step{trainer.global_step:07d}")

    def _write_samples(self, trainer: Trainer, pl_module: LightningModule, out: Path) -> None:
        from pctalk.inference.keypoint_video import draw_keypoints
        from pctalk.media import write_video

        logged: dict[str, Any] = {}
        was_training = pl_module.training
        pl_module.eval()
        for clip in self._load_clips(trainer):
            with torch.no_grad():
                result = {k: v[: self.max_frames] for k, v in pl_module.sample(clip).items()}
            name = clip.key.replace("/", "_")
            lp = self._liveportrait(pl_module)
            if lp is not None:
                frames = self._render(lp, clip, result["keypoints"].float())
            else:
                frames = np.concatenate(
                    [draw_keypoints(result["keypoints"]), draw_keypoints(result["target_keypoints"])], axis=2
                )
            audio = clip.audio[: len(frames) * len(clip.audio) // clip.meta.n_frames]
            video = write_video(out / f"{name}.mp4", frames, audio=audio)
            plot = out / f"{name}_lips.png"
            cv2.imwrite(str(plot), lip_plot(result["lips"].numpy(), result["target_lips"].numpy())[..., ::-1])
            logged[name] = (video, plot)
        pl_module.train(was_training)
        self._log(trainer, logged)

    def _log(self, trainer: Trainer, logged: dict[str, tuple[Path, Path]]) -> None:
        from lightning.pytorch.loggers import WandbLogger

        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger) and os.environ.get("WANDB_MODE") != "disabled":
                import wandb

                payload = {}
                for name, (video, plot) in logged.items():
                    payload[f"samples/{name}"] = wandb.Video(str(video), format="mp4")
                    payload[f"lips/{name}"] = wandb.Image(str(plot))
                logger.experiment.log(payload, step=trainer.global_step)
