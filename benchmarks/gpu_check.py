"""GPU check: every training task, generation, data preparation and every eval metric on one GPU, in one table.

    python benchmarks/gpu_check.py [--dry-run] [--out FILE] [--only train,generate,build,eval]

On a CUDA machine (under 8 minutes on one GPU) it runs, at the official network sizes with random weights saved in
their original file formats (as the tests make them), on a synthetic corpus (``pctalk.data.synthetic.synth``) and
HDTF-shaped talking clips (``tests/raw_media.py``):

- a few steps of every training task through ``lightning.Trainer(precision="bf16-mixed")`` and
  ``pctalk.data.ShardDataModule``: ``ExpressionTask``, ``LipRefinerTask`` (the SyncNet loss through LivePortrait's
  renderer: the check for autocast-unsafe ops such as ``F.binary_cross_entropy``), ``EmotionTask`` with the label and
  video sources and with every learned source (audio: a wav2vec2-base-sized model; text: the bundled MiniLM), and
  the eval emotion classifier (``eval.classifier.EmotionClassifierTask``): steps/s (the training step itself,
  forward + backward + optimiser, data loading excluded, first step excluded as warm-up), the peak GPU memory, and
  that every loss is finite;
- generation (``TalkingFacePipeline``, official LivePortrait): fps of the motion stage (LAC + refiner + EMC with two
  emotions), of render + paste-back at batch 1 and batched (fp32, and bf16 batched), and ``pctalk generate`` end to
  end (loading, cropping, motion, render, H.264);
- ``pctalk-data build`` (``data_prep.build.build``) on a few HDTF-shaped clips: frames/s, without and with decode
  workers;
- every eval metric on CUDA (LSE-C/D, FID, NIQE (numpy, CPU), FVD, Acc_emo, E-FID): frames/s of one clip, and
  ``pctalk-eval run`` (``eval.runner.run_command`` on a Lightning GPU trainer): seconds per clip.

Each row: what, setting, figure, unit, status (``ok`` or ``FAILED: <one-line error>``). A failing check is recorded
and the others still run; the exit status is 1 if any failed, 2 without CUDA (and without ``--dry-run``).

``--dry-run`` runs the same checks on CPU at tiny sizes (``LivePortraitConfig.tiny()``, small predictors, 2 steps, a
few frames; ``bf16-mixed`` on CPU as Lightning supports it) so every code path is exercised without a GPU; its
figures are not benchmarks. ``--out FILE`` also writes the table as markdown.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import math
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for _path in (HERE, REPO / "tests", REPO):  # common.py; raw_media / random_weights / eval_networks; the packages
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from common import machine, peak_rss_mib, timeit  # noqa: E402

GROUPS = ("train", "generate", "build", "eval")
#: the astronaut photo's five landmarks (eyes, nose, mouth corners) in its own 512x512 pixels
ASTRONAUT_5 = np.array([[185.0, 110.0], [235.0, 105.0], [212.0, 140.0], [190.0, 170.0], [232.0, 167.0]])
TEXT = "The duck ate too many bees. Then it flew away over the lake, singing loudly, while the children counted clouds."


# -- results ----------------------------------------------------------------------------------------------------------
@dataclass
class Row:
    """One line of the table."""

    what: str
    setting: str
    figure: float | None
    unit: str
    status: str = "ok"

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class CheckFailed(RuntimeError):
    """A check ran but its result is wrong (a non-finite loss, a skipped clip, ...)."""


def one_line(err: BaseException) -> str:
    """``Type: first line of the message`` (at most 220 characters), for the status column."""
    text = str(err).strip().splitlines()
    line = f"{type(err).__name__}: {text[0]}" if text else type(err).__name__
    return line if len(line) <= 220 else line[:217] + "..."


def fmt(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "–"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.3g}" if abs(x) < 0.01 else f"{x:.2f}"


def table(rows: list[Row]) -> str:
    """The rows as a markdown table."""
    cell = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = ["| check | setting | figure | unit | status |", "| --- | --- | ---: | --- | --- |"]
    lines += [f"| {cell(r.what)} | {cell(r.setting)} | {fmt(r.figure)} | {cell(r.unit)} | {cell(r.status)} |"
              for r in rows]  # fmt: skip
    return "\n".join(lines)


# -- sizes ------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sizes:
    """Everything that differs between the GPU check (official sizes) and the dry run (tiny, CPU)."""

    dry: bool
    device: str
    precision: str
    steps: int
    corpus_clips: int
    corpus_identities: int
    face_frames: int
    liveportrait: str  # "official" | "tiny"
    predictor: dict[str, Any]
    emotion: dict[str, Any]
    encoder_width: float
    expression_batch: int
    window: int
    refiner_batch: int
    emotion_batch: int
    classifier_batch: int
    classifier_frames: int
    wav2vec2: dict[str, Any]
    workers: int
    motion_seconds: float
    render_frames: int
    render_batch: int
    generate_seconds: float
    build_clips: int
    build_text: str
    eval_frames: int
    eval_net_frames: int
    eval_size: int
    niqe_frames: int
    eval_stride: int

    @classmethod
    def gpu(cls, precision: str) -> Sizes:
        return cls(
            dry=False, device="cuda", precision=precision, steps=8, corpus_clips=64, corpus_identities=8, face_frames=3,
            liveportrait="official", predictor={}, emotion={}, encoder_width=1.0, expression_batch=16, window=50,
            refiner_batch=8, emotion_batch=16, classifier_batch=48, classifier_frames=3, wav2vec2={}, workers=4,
            motion_seconds=10.0, render_frames=64, render_batch=16, generate_seconds=4.0, build_clips=8,
            build_text="", eval_frames=250, eval_net_frames=250, eval_size=512, niqe_frames=50, eval_stride=5,
        )  # fmt: skip

    @classmethod
    def tiny(cls, precision: str) -> Sizes:
        small = {"d_model": 32, "n_heads": 4, "ff_dim": 64}
        wav2vec2 = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
                    "conv_dim": (16, 16), "conv_stride": (5, 4), "conv_kernel": (10, 8), "num_conv_pos_embeddings": 16,
                    "num_conv_pos_embedding_groups": 4, "do_stable_layer_norm": True,
                    "feat_extract_norm": "layer"}  # fmt: skip
        return cls(
            dry=True, device="cpu", precision=precision, steps=2, corpus_clips=8, corpus_identities=4, face_frames=2,
            liveportrait="tiny", predictor=small, emotion={**small, "emotion_layers": 1}, encoder_width=0.125,
            expression_batch=2, window=10, refiner_batch=1, emotion_batch=2, classifier_batch=2, classifier_frames=2,
            wav2vec2=wav2vec2, workers=0, motion_seconds=1.0, render_frames=2, render_batch=2, generate_seconds=0.4,
            build_clips=3, build_text="Hello there.", eval_frames=32, eval_net_frames=6, eval_size=192, niqe_frames=1,
            eval_stride=8,
        )  # fmt: skip

    def liveportrait_config(self) -> Any:
        from pctalk.keypoints.config import LivePortraitConfig

        return LivePortraitConfig.tiny() if self.liveportrait == "tiny" else LivePortraitConfig()

    @property
    def cuda(self) -> bool:
        return self.device == "cuda"


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def reset_peak() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_memory(sizes: Sizes) -> tuple[float, str]:
    """The peak GPU memory since the last :func:`reset_peak` (on CPU: the process's peak RSS so far)."""
    if sizes.cuda:
        return torch.cuda.max_memory_allocated() / 2**20, "MiB GPU (peak allocated)"
    return peak_rss_mib(), "MiB RSS (process peak so far)"


# -- fixtures ---------------------------------------------------------------------------------------------------------
def once(fn: Callable[[Workspace], Any]) -> property:
    """A lazily built fixture: built on first use; a failure is remembered and raised again for every later use."""
    name = f"_{fn.__name__}"

    def get(self: Workspace) -> Any:
        if name not in self._cache:
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    self._cache[name] = (True, fn(self))
            except Exception as err:  # reported by every check that needs it
                self._cache[name] = (False, err)
        ok, value = self._cache[name]
        if not ok:
            raise RuntimeError(f"fixture {fn.__name__} failed: {one_line(value)}") from value
        return value

    return property(get, doc=fn.__doc__)


@dataclass
class Workspace:
    """Files the checks share, made on first use under ``root``."""

    root: Path
    sizes: Sizes
    _cache: dict[str, tuple[bool, Any]] = field(default_factory=dict)

    @once
    def weights(self) -> Path:
        """The weights root: LivePortrait (official or tiny, with stitching), Wav2Lip's SyncNet expert, SyncTalk's
        audio encoder (bare keys), a wav2vec2 folder, and every eval network, each in its published layout."""
        from transformers import Wav2Vec2Config, Wav2Vec2Model

        from pctalk.audio.encoder import AudioEncoder
        from pctalk.audio.syncnet import SyncNet
        from pctalk.keypoints.liveportrait import LivePortrait, save_liveportrait
        from random_weights import seeded_state_dict

        root = self.root / "pretrained_weights"
        torch.manual_seed(0)
        lp = LivePortrait(self.sizes.liveportrait_config())
        lp.load_state_dict(seeded_state_dict(lp.state_dict(), 7))
        save_liveportrait(lp, root)
        del lp
        (root / "wav2lip").mkdir(parents=True)
        torch.save({"state_dict": SyncNet().state_dict(), "global_step": 0}, root / "wav2lip" / "lipsync_expert.pth")
        (root / "audio").mkdir()
        encoder = AudioEncoder(self.sizes.encoder_width).state_dict()
        torch.save({k.removeprefix("audio_encoder."): v for k, v in encoder.items()},
                   root / "audio" / "audio_visual_encoder.pth")  # fmt: skip
        Wav2Vec2Model(Wav2Vec2Config(**self.sizes.wav2vec2)).save_pretrained(root / "wav2vec2_emotion")
        return root

    @once
    def eval_weights(self) -> Path:
        """The eval networks' files under the weights root: SyncNet v2, pytorch-fid's Inception, an I3D TorchScript
        (the published architecture; the tests' tiny one in the dry run), Emotion-FAN (with class names),
        Deep3DFaceRecon and its 3D landmarks."""
        from eval_networks import save_eval_weights

        save_i3d = None
        if not self.sizes.dry:
            from i3d_architecture import save_random_i3d as save_i3d
        return save_eval_weights(self.weights, i3d=save_i3d)

    @property
    def encoder_file(self) -> Path:
        return self.weights / "audio" / "audio_visual_encoder.pth"

    @once
    def corpus(self) -> Path:
        """The synthetic corpus (real speech, invented motion), with face crops for the emotion classifier."""
        from pctalk.data.synthetic import synth

        out = self.root / "corpus"
        s = self.sizes
        synth(out, clips=s.corpus_clips, identities=s.corpus_identities, seed=1, progress=False,
              face_frames=s.face_frames)  # fmt: skip
        return out

    @once
    def release(self) -> Path:
        """LAC (predictor + refiner) and EMC releases (``lac.pth``, ``emc.pth``, ``audio_encoder.pth``) at the paper's
        sizes with random weights and non-zero outputs."""
        from pctalk.audio.encoder import load_audio_encoder
        from pctalk.checkpoints import EMCStage, LACStage, save_release
        from pctalk.models import ExpressionPredictor, LipRefiner
        from pctalk.models.config import EmotionConfig, PredictorConfig
        from pctalk.models.emotion_predictor import EmotionPredictor

        folder = self.root / "release"
        torch.manual_seed(0)
        encoder = load_audio_encoder(self.encoder_file)
        predictor = ExpressionPredictor(260, 18, encoder.out_dim, PredictorConfig(**self.sizes.predictor))
        torch.nn.init.normal_(predictor.vertice_map_r.weight, std=0.05)
        refiner = LipRefiner(18, encoder.out_dim)
        torch.nn.init.normal_(refiner.linear.weight, std=0.01)
        save_release(LACStage(predictor, encoder, refiner), folder)
        emotion = EmotionPredictor(38, encoder.out_dim, EmotionConfig(**self.sizes.emotion))
        torch.nn.init.normal_(emotion.emotion_decoder.output_map.weight, std=0.5)
        torch.nn.init.normal_(emotion.decoder.vertice_map_r.weight, std=0.05)
        save_release(EMCStage(emotion, encoder), folder)
        return folder

    @once
    def speech(self) -> torch.Tensor:
        """eSpeak NG speech, 16 kHz."""
        from pctalk.audio.tts import synthesize

        return synthesize(TEXT).wav

    def wav(self, seconds: float) -> torch.Tensor:
        """``seconds`` of speech (the sentence repeated)."""
        n = int(seconds * 16000)
        speech = self.speech
        return speech.repeat(n // len(speech) + 1)[:n]

    @once
    def source_image(self) -> Path:
        """The astronaut photo (512x512) as a png."""
        import cv2
        from skimage import data

        path = self.root / "source.png"
        cv2.imwrite(str(path), data.astronaut()[..., ::-1])
        return path

    @once
    def raw_clips(self) -> Path:
        """HDTF-shaped raw clips (``<identity>_<NNN>.mp4``: the astronaut speaking eSpeak speech)."""
        from raw_media import SENTENCES, talking_video

        root = self.root / "raw_hdtf"
        for i in range(self.sizes.build_clips):
            text = self.sizes.build_text or SENTENCES[i % len(SENTENCES)]
            talking_video(root / f"WDA_Person{i % 3}_{i:03d}.mp4", text)
        return root

    @once
    def eval_video(self) -> tuple[np.ndarray, torch.Tensor]:
        """``(T, S, S, 3)`` uint8 frames of the astronaut with a moving mouth and ``T / 25`` s of speech."""
        import cv2
        from skimage import data

        s = self.sizes
        face = cv2.resize(data.astronaut(), (s.eval_size, s.eval_size), interpolation=cv2.INTER_AREA)
        frames = np.repeat(face[None], s.eval_frames, axis=0)
        k = s.eval_size / 512
        for i in range(s.eval_frames):
            axes = (max(1, int(15 * k)), max(1, int((2 + 8 * (i % 5)) * k)))
            cv2.ellipse(frames[i], (int(223 * k), int(161 * k)), axes, 0, 0, 360, (40, 10, 10), -1)
        return frames, self.wav(s.eval_frames / 25)


# -- training ---------------------------------------------------------------------------------------------------------
def step_timer(cuda: bool) -> Any:
    """A Lightning callback timing each training step (synchronised) and recording its loss."""
    from lightning.pytorch import Callback

    class StepTimer(Callback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self.losses: list[float] = []
            self._start = 0.0

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            if cuda:
                torch.cuda.synchronize()
            self._start = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if cuda:
                torch.cuda.synchronize()
            self.times.append(time.perf_counter() - self._start)
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            self.losses.append(float(loss.detach().float()) if isinstance(loss, torch.Tensor) else float("nan"))

    return StepTimer()


def fit(
    ws: Workspace,
    what: str,
    setting: str,
    task_fn: Callable[[], Any],
    data_fn: Callable[[], Any],
    precision: str | None = None,
) -> Iterator[Row]:
    """A few steps of ``task_fn()`` on ``data_fn()`` in the check's precision (or ``precision``): steps/s, peak
    memory, finite loss."""
    import lightning as L

    s = ws.sizes
    precision = precision or s.precision
    task, data = task_fn(), data_fn()
    timer = step_timer(s.cuda)
    trainer = L.Trainer(
        accelerator="gpu" if s.cuda else "cpu", devices=1, precision=precision, max_steps=s.steps, max_epochs=-1,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, num_sanity_val_steps=0, default_root_dir=ws.root / "runs" / what.replace(" ", "_"),
        callbacks=[timer],
    )  # fmt: skip
    reset_peak()
    trainer.fit(task, datamodule=data)
    if trainer.global_step != s.steps or len(timer.losses) != s.steps:
        raise CheckFailed(f"trained {trainer.global_step} steps ({len(timer.losses)} batches), expected {s.steps}")
    bad = [i for i, v in enumerate(timer.losses) if not math.isfinite(v)]
    if bad:
        raise CheckFailed(f"loss not finite at step {bad[0]}: {timer.losses[bad[0]]}")
    timed = timer.times[1:] or timer.times  # the first step warms up (allocator, cuDNN autotuning)
    peak, unit = peak_memory(s)
    setting = f"{setting}, {precision}, loss {timer.losses[-1]:.4g}"
    yield Row(f"train {what}", setting, len(timed) / sum(timed), "steps/s (train step, loader excluded)")
    yield Row(f"train {what}", "peak memory", peak, unit)
    del task, trainer
    if s.cuda:
        torch.cuda.empty_cache()


def _shards(ws: Workspace, **kwargs: Any):
    from pctalk.data import ShardDataModule

    s = ws.sizes
    batch = kwargs.pop("batch_size")
    train = len((ws.corpus / "train.txt").read_text().split())
    return ShardDataModule(str(ws.corpus), batch_size=batch, samples_per_epoch=s.steps * batch,
                           num_workers=min(s.workers, train), audio="mel", **kwargs)  # fmt: skip


def check_expression(ws: Workspace) -> Iterator[Row]:
    from pctalk.models.config import PredictorConfig
    from pctalk.tasks import ExpressionTask

    s = ws.sizes
    yield from fit(
        ws, "ExpressionTask", f"frozen encoder, batch {s.expression_batch} x {s.window} frames",
        lambda: ExpressionTask(260, predictor=PredictorConfig(**s.predictor), audio_encoder=str(ws.encoder_file)),
        lambda: _shards(ws, window=s.window, batch_size=s.expression_batch),
    )  # fmt: skip


def check_refiner(ws: Workspace) -> Iterator[Row]:
    from pctalk.tasks import LipRefinerTask

    s = ws.sizes
    yield from fit(
        ws, "LipRefinerTask", f"{s.liveportrait} LivePortrait + SyncNet loss, batch {s.refiner_batch} x 5 frames",
        lambda: LipRefinerTask(expression=str(ws.release / "lac.pth"), weights=str(ws.weights),
                               liveportrait_size=s.liveportrait),
        lambda: _shards(ws, window=5, batch_size=s.refiner_batch, with_reference=True),
        "32-true" if s.dry else None,  # the tiny LivePortrait's 3-D convolutions have no fast CPU bf16 kernel (50x)
    )  # fmt: skip


def check_emotion(ws: Workspace, sources: list[str]) -> Iterator[Row]:
    from pctalk.models.config import EmotionConfig
    from pctalk.tasks import EmotionTask

    s = ws.sizes
    extras = {"video": "reference_exp", "audio": "raw_audio", "text": "text"}
    wav2vec2 = str(ws.weights / "wav2vec2_emotion") if "audio" in sources else None
    yield from fit(
        ws, f"EmotionTask [{','.join(sources)}]", f"frozen encoder, batch {s.emotion_batch} x {s.window} frames",
        lambda: EmotionTask(38, sources=sources, predictor=EmotionConfig(**s.emotion),
                            audio_encoder=str(ws.encoder_file), wav2vec2=wav2vec2),
        lambda: _shards(ws, window=s.window, batch_size=s.emotion_batch, target="all",
                        extras=[extras[k] for k in sources if k in extras]),
    )  # fmt: skip


def check_classifier(ws: Workspace) -> Iterator[Row]:
    from eval.classifier import EmotionClassifierTask, EmotionFaceDataModule

    s = ws.sizes
    yield from fit(
        ws, "EmotionClassifierTask", f"Emotion-FAN, batch {s.classifier_batch} x {s.classifier_frames} faces",
        lambda: EmotionClassifierTask(),
        lambda: EmotionFaceDataModule(str(ws.corpus), frames=s.classifier_frames, batch_size=s.classifier_batch,
                                      samples_per_epoch=s.steps * s.classifier_batch),
        "32-true" if s.dry else None,  # Emotion-FAN's ResNet-18 in CPU bf16 runs ~10 s a step on an AVX2-only CPU
    )  # fmt: skip


# -- generation -------------------------------------------------------------------------------------------------------
def _pipeline(ws: Workspace, batch_size: int = 8):
    from pctalk.inference import TalkingFacePipeline

    s = ws.sizes
    return TalkingFacePipeline.from_checkpoints(
        ws.release / "lac.pth", ws.release / "emc.pth", weights=ws.weights, cropper="opencv",
        liveportrait_size=s.liveportrait, device=s.device, progress=False, batch_size=batch_size,
    )  # fmt: skip


def first_frames(driven: Any, k: int) -> Any:
    """The first ``k`` frames of a :class:`~pctalk.inference.pipeline.DrivenMotion`."""
    arrays = ("exp", "R", "t", "scale", "keypoints", "lips", "source_index")
    return replace(driven, **{f: getattr(driven, f)[:k] for f in arrays})


def check_generate(ws: Workspace) -> Iterator[Row]:
    """The motion stage, then render + paste-back at batch 1 and batched."""
    import cv2

    from pctalk.inference import Controls, EmotionControl

    s = ws.sizes
    pipeline = _pipeline(ws)
    source = pipeline.load_source(cv2.imread(str(ws.source_image))[..., ::-1].copy())
    controls = Controls(emotions=[EmotionControl("happy", "lips", 0.6), EmotionControl("sad", "upper_face", 0.4)])
    wav = ws.wav(s.motion_seconds)
    driven = pipeline.motion(wav, source, controls)
    n = len(driven.keypoints)
    if not torch.isfinite(driven.keypoints).all():
        raise CheckFailed("the driven keypoints are not finite")
    seconds = timeit(lambda: pipeline.motion(wav, source, controls), repeats=1 if s.dry else 3, warmup=0)
    yield Row("generate: motion stage", f"{s.motion_seconds:g} s audio, LAC + refiner + EMC (2 emotions)", n / seconds,
              "frames/s")  # fmt: skip
    size = pipeline.liveportrait.config.input_size * 2
    for batch, precision in ((1, "fp32"), (s.render_batch, "fp32"), (s.render_batch, "bf16")):
        k = min(n, s.render_frames, 1000 if batch > 1 else 16)
        part = first_frames(driven, k)

        def render(part: Any = part, k: int = k) -> None:
            frames = list(pipeline.render(source, part, pasteback=True))
            if len(frames) != k or frames[0].shape != source.frames[0].shape:
                raise CheckFailed(f"rendered {len(frames)} frames of {frames[0].shape if frames else None}")

        pipeline.batch_size = batch
        pipeline.liveportrait.set_precision(precision)
        seconds = timeit(render, repeats=1 if s.dry else 2, warmup=0 if s.dry else 1)
        yield Row("generate: render + paste-back", f"{size}x{size} render, batch {batch}, {precision}, {k} frames",
                  k / seconds, "frames/s")  # fmt: skip
    pipeline.liveportrait.set_precision("fp32")


def check_realtime(ws: Workspace) -> Iterator[Row]:
    """Streaming (first-frame latency, real-time factor) and the compiled renderer (CUDA graphs on a GPU): batched
    at 512x512 without paste-back, and batch 1 pasted back into a 1280x720 frame."""
    import cv2

    from pctalk.inference import Controls
    from pctalk.keypoints.backends import use_backend

    s = ws.sizes
    pipeline = _pipeline(ws)
    source = pipeline.load_source(cv2.imread(str(ws.source_image))[..., ::-1].copy())
    wav = ws.wav(max(s.motion_seconds, 2.0))  # two windows at least
    step = 16 * 200  # 200 ms chunks, pushed as fast as they come
    engine = pipeline.motion_stream(source, Controls(causal_smoothing=True))
    first, frames, start = None, 0, time.perf_counter()
    for i in range(0, len(wav), step):
        t0 = time.perf_counter()
        blocks = engine.push(wav[i : i + step])
        if blocks and first is None:
            first = (i + step) / 16000 + time.perf_counter() - t0
        frames += sum(len(b.keypoints) for b in blocks)
    frames += sum(len(b.keypoints) for b in engine.close())
    rtf = (time.perf_counter() - start) / (len(wav) / 16000)
    if first is None or frames != len(wav) // 640:
        raise CheckFailed(f"the stream gave {frames} frames, its first block {first}")
    yield Row("realtime: streamed motion", f"200 ms chunks, first frame after {1000 * first:.0f} ms of audio",
              1 / rtf, "x real time")  # fmt: skip
    driven = pipeline.motion(wav, source, Controls())
    wide = np.zeros((720, 1280, 3), np.uint8)  # the photo off-centre in a landscape frame
    wide[100:612, 700:1212] = cv2.imread(str(ws.source_image))[..., ::-1]
    landscape = pipeline.load_source(wide)
    use_backend(pipeline.liveportrait, "compile", compile_backend="inductor" if s.cuda else "aot_eager")
    size = pipeline.liveportrait.config.input_size * 2
    cases = ((s.render_batch, source, False, f"{size}x{size}"), (1, landscape, True, "1280x720"))
    for batch, src, paste, what in cases:
        k = min(len(driven.keypoints), s.render_frames, 1000 if batch > 1 else 32)
        part = first_frames(driven, k)
        pipeline.batch_size = batch

        def render(part: Any = part, k: int = k, src: Any = src, paste: bool = paste) -> None:
            out = list(pipeline.render(src, part, pasteback=paste))
            if len(out) != k:
                raise CheckFailed(f"rendered {len(out)} frames of {k}")

        seconds = timeit(render, repeats=1 if s.dry else 2, warmup=1)
        yield Row("realtime: compiled render", f"{what}, batch {batch}, fp32, {'paste-back, ' * paste}{k} frames",
                  k / seconds, "frames/s")  # fmt: skip
    use_backend(pipeline.liveportrait, "torch")


def check_generate_cli(ws: Workspace) -> Iterator[Row]:
    """``pctalk generate`` as a user runs it: load, crop, motion, render, encode."""
    import av

    from pctalk.cli import main
    from pctalk.media import write_audio

    s = ws.sizes
    speech = write_audio(ws.root / "speech.wav", ws.wav(s.generate_seconds))
    out = ws.root / "generated.mp4"
    args = ["generate", "--source", str(ws.source_image), "--audio", str(speech), "--lac", str(ws.release / "lac.pth"),
            "--emc", str(ws.release / "emc.pth"), "--emotion", "happy:lips:0.6", "--weights", str(ws.weights),
            "--cropper", "opencv", "--liveportrait-size", s.liveportrait, "--device", s.device, "--out", str(out),
            "--no-progress"]  # fmt: skip
    sync()
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        status = main(args)
    sync()
    seconds = time.perf_counter() - start
    if status != 0:
        raise CheckFailed(f"pctalk generate exited {status}")
    with av.open(str(out)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    yield Row("pctalk generate (end to end)", f"{s.generate_seconds:g} s, image source, incl. loading + H.264",
              frames / seconds, "frames/s")  # fmt: skip


# -- data preparation -------------------------------------------------------------------------------------------------
def check_build(ws: Workspace) -> Iterator[Row]:
    import webdataset as wds

    from data_prep.build import BuildModels, build
    from pctalk.data.schema import decode_sample
    from pctalk.keypoints.crop import FaceCropper
    from pctalk.keypoints.liveportrait import load_liveportrait

    s = ws.sizes
    lp = load_liveportrait(ws.weights, device=s.device, config=s.liveportrait_config(), require_stitching=False)
    models = BuildModels(lp, FaceCropper("opencv"), device=torch.device(s.device), batch_size=32,
                         weights_root=ws.weights)  # fmt: skip
    for workers in (0,) if s.dry else (0, None):
        out = ws.root / f"shards_build_{workers}"
        sync()
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            status = build("hdtf", ws.raw_clips, out, models, min_frames=10, test_seconds=0, progress=False,
                           decode_workers=workers)  # fmt: skip
        sync()
        seconds = time.perf_counter() - start
        if status != 0:
            raise CheckFailed(f"build returned {status}")
        urls = sorted(str(p) for p in out.glob("*.tar"))
        clips = [decode_sample(x) for x in wds.WebDataset(urls, shardshuffle=False, empty_check=False)]
        if len(clips) != s.build_clips:
            raise CheckFailed(f"{len(clips)} samples written from {s.build_clips} clips")
        frames = sum(c.meta.n_frames for c in clips)
        if workers == 0:
            label = "0 (one process)"
        else:
            from data_prep.parallel import available_cpus, default_decode_workers

            label = f"{default_decode_workers(available_cpus())} (the default; their start-up included)"
        yield Row("pctalk-data build", f"{len(clips)} clips, {frames} frames, OpenCV crop, {s.liveportrait} motion "
                  f"extractor, decode workers {label}", frames / seconds, "frames/s")  # fmt: skip


# -- evaluation -------------------------------------------------------------------------------------------------------
def _finite(value: Any, name: str) -> None:
    values = value.values() if isinstance(value, dict) else [value]
    if not all(math.isfinite(float(v)) for v in values):
        raise CheckFailed(f"{name} is not finite: {value}")


def _metric_row(ws: Workspace, name: str, setting: str, frames: int, update: Callable[[], None]) -> Row:
    seconds = timeit(update, repeats=1, warmup=0 if ws.sizes.dry else 1)
    return Row(f"eval {name}", f"{setting}, {ws.sizes.device}", frames / seconds, "frames/s")


def check_metrics(ws: Workspace, name: str) -> Iterator[Row]:
    """One metric on one clip: frames/s of its update (warm on the GPU), then ``compute()``."""
    s = ws.sizes
    root = ws.eval_weights
    video, wav = ws.eval_video
    fake = np.clip(video.astype(np.int16) + 25, 0, 255).astype(np.uint8)  # "generated": brighter
    k = s.eval_net_frames  # frames through the CNNs (all of them on the GPU)
    frames, size = video[:k], s.eval_size
    device = torch.device(s.device)
    if name == "LSE-C/D":
        from eval.metrics.lse import LSE

        metric = LSE(root / "syncnet" / "syncnet_v2.model", crop="frame").to(device)  # the frames are face crops
        audio = wav[: k * 640]
        yield _metric_row(ws, name, f"SyncNet v2, crop=frame, {k} frames {size}->224", k,
                          lambda: metric.update(frames=frames, audio=audio))  # fmt: skip
        if metric.skipped:
            raise CheckFailed("LSE skipped the clip (see the warning above)")
        _finite(metric.compute(), name)
    elif name == "FID":
        from eval.metrics.fid import FID

        metric = FID(root / "fid" / "pt_inception-2015-12-05-6726825d.pth").to(device)
        real, generated = (torch.from_numpy(x[:k]).permute(0, 3, 1, 2) for x in (video, fake))
        metric.update(real, real=True)
        yield _metric_row(ws, name, f"Inception pool3, {k} frames {size}->299", k,
                          lambda: metric.update(generated, real=False))  # fmt: skip
        start = time.perf_counter()
        metric.compute()  # from a few frames the covariances are singular: it must compute, finite or not
        yield Row("eval FID", "compute(): 2048-d Fréchet distance (two eigendecompositions, CPU)",
                  time.perf_counter() - start, "s")  # fmt: skip
    elif name == "NIQE":
        from eval.metrics.niqe import NIQE

        metric = NIQE()
        m = s.niqe_frames
        yield _metric_row(ws, name, f"numpy on CPU, {m} frame(s) {size}x{size}", m, lambda: metric.update(fake[:m]))
        _finite(metric.compute(), name)
    elif name == "FVD":
        from eval.metrics.fvd import FVD

        metric = FVD(root / "fvd" / "i3d_torchscript.pt", protocol="stylegan-v-all-clips").to(device)
        metric.update([video], real=True)
        n = len(video)
        which = "tiny I3D" if s.dry else "I3D (published architecture)"
        yield _metric_row(ws, name, f"{which}, all 16-frame clips of {n} frames {size}->224", n,
                          lambda: metric.update([fake], real=False))  # fmt: skip
        metric.compute()
    elif name == "Acc_emo":
        from eval.metrics.emotion import EmotionAccuracy

        metric = EmotionAccuracy(root / "emotion_fan" / "emotion_fan_mead.pth.tar").to(device)
        yield _metric_row(ws, name, f"Emotion-FAN, {k} frames {size}->224", k,
                          lambda: metric.update([fake[:k]], ["happy"]))  # fmt: skip
        _finite(metric.compute(), name)
    elif name == "E-FID":
        from eval.metrics.efid import ExpressionFID

        d3d = root / "deep3dfacerecon"
        metric = ExpressionFID(d3d / "epoch_20.pth", lm3d=d3d / "BFM" / "similarity_Lm3D_all.mat").to(device)
        rng = np.random.default_rng(0)
        landmarks = np.stack([ASTRONAUT_5 * size / 512 + rng.normal(0, 1, (5, 2)) for _ in range(k)])
        metric.update(frames, real=True, landmarks=landmarks)
        yield _metric_row(ws, name, f"alignment + Deep3DFaceRecon, {k} frames {size}x{size}", k,
                          lambda: metric.update(fake[:k], real=False, landmarks=landmarks))  # fmt: skip
        metric.compute()  # 64-d: cheap
    else:
        raise ValueError(f"unknown metric {name}")


def check_eval_run(ws: Workspace) -> Iterator[Row]:
    """``pctalk-eval run`` (its Lightning test loop on this device) scoring the raw clips as another method's
    videos with LSE, FID, NIQE, FVD and Acc_emo (E-FID needs SCRFD's ONNX detector; it is timed above)."""
    from eval.runner import Method, MetricSettings, run_command

    s = ws.sizes
    raw = ws.raw_clips
    _ = ws.eval_weights
    clips = sorted(raw.glob("*.mp4"))[: 1 if s.dry else 4]
    identities = sorted({p.stem.rsplit("_", 1)[0] for p in clips})
    folder = ws.root / "eval_raw"
    folder.mkdir(exist_ok=True)
    for clip in clips:
        shutil.copy(clip, folder / clip.name)
    (ws.root / "eval_splits.json").write_text(json.dumps({"hdtf": {i: "test" for i in identities}}))
    metrics = ["lse", "fid", "niqe", "fvd", "acc_emo"]
    settings = MetricSettings(metrics=metrics, weights_root=ws.weights, frame_stride=s.eval_stride)
    out = ws.root / "eval_out"
    sync()
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        run_command("table1", out, "hdtf", folder, [Method("external", videos=folder)],
                    splits=ws.root / "eval_splits.json", settings=settings,
                    accelerator="gpu" if s.cuda else "cpu", devices=1)  # fmt: skip
    sync()
    seconds = time.perf_counter() - start
    result = json.loads((out / "results.json").read_text())["blocks"]["HDTF"]["external"]
    if result["skipped"]:
        raise CheckFailed(f"skipped clips: {result['skipped']}")
    _finite({k: result[k] for k in ("lse_c", "lse_d", "niqe", "acc_emo")}, "pctalk-eval run")
    names = " + ".join(m.upper() if m != "acc_emo" else "Acc_emo" for m in metrics)
    yield Row("pctalk-eval run", f"{len(clips)} clip(s), {names}, frame stride {s.eval_stride}, {s.device}",
              seconds / len(clips), "s per clip")  # fmt: skip


METRICS = ("LSE-C/D", "FID", "NIQE", "FVD", "Acc_emo", "E-FID")


def checks(ws: Workspace) -> list[tuple[str, str, str, Callable[[], Iterator[Row]]]]:
    """``(group, what, setting, run)`` of every check, in the order they run."""
    every = ["label", "audio", "text", "video"]
    out: list[tuple[str, str, str, Callable[[], Iterator[Row]]]] = [
        ("train", "train ExpressionTask", "", lambda: check_expression(ws)),
        ("train", "train LipRefinerTask", "", lambda: check_refiner(ws)),
        ("train", "train EmotionTask [label,video]", "", lambda: check_emotion(ws, ["label", "video"])),
        ("train", f"train EmotionTask [{','.join(every)}]", "", lambda: check_emotion(ws, every)),
        ("train", "train EmotionClassifierTask", "", lambda: check_classifier(ws)),
        ("generate", "generate: TalkingFacePipeline", "", lambda: check_generate(ws)),
        ("generate", "pctalk generate (end to end)", "", lambda: check_generate_cli(ws)),
        ("generate", "realtime: streaming + compiled render", "", lambda: check_realtime(ws)),
        ("build", "pctalk-data build", "", lambda: check_build(ws)),
    ]
    out += [("eval", f"eval {m}", "", lambda m=m: check_metrics(ws, m)) for m in METRICS]
    out.append(("eval", "pctalk-eval run", "", lambda: check_eval_run(ws)))
    return out


def header(sizes: Sizes) -> list[str]:
    cuda = torch.version.cuda or "none"
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    mode = "DRY RUN on CPU at tiny sizes (code paths only; not a benchmark)" if sizes.dry else "official sizes, CUDA"
    lines = [
        f"machine: {machine()}",
        f"python {platform.python_version()}, torch {torch.__version__}, CUDA {cuda}, cuDNN {cudnn}",
        f"mode: {mode}; training precision {sizes.precision}; "
        f"float32 matmul precision {torch.get_float32_matmul_precision()}",
    ]
    if sizes.cuda:
        props = torch.cuda.get_device_properties(0)
        lines.append(f"GPU: {props.name}, {props.total_memory / 2**30:.0f} GiB, compute capability "
                     f"{props.major}.{props.minor}")  # fmt: skip
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes, 2 steps: exercise the code paths")
    parser.add_argument("--out", type=Path, help="also write the table (markdown) to this file")
    parser.add_argument("--only", default=",".join(GROUPS), help=f"comma-separated groups ({', '.join(GROUPS)})")
    parser.add_argument("--precision", default="bf16-mixed", help="Lightning precision of the training checks")
    parser.add_argument("--no-tf32", action="store_true", help="keep float32 matmuls in full precision on CUDA")
    parser.add_argument("--workdir", type=Path, help="keep the fixtures here (default: a temporary folder)")
    args = parser.parse_args(argv)
    groups = {g.strip() for g in args.only.split(",") if g.strip()}
    if groups - set(GROUPS):
        parser.error(f"unknown groups {sorted(groups - set(GROUPS))}; choose from {', '.join(GROUPS)}")
    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_check: no CUDA device is available. Run it on a GPU machine, or pass --dry-run to exercise the "
              "checks on CPU at tiny sizes.", file=sys.stderr)  # fmt: skip
        return 2
    os.environ.setdefault("WANDB_MODE", "disabled")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pctalk", "eval", "data_prep"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    if not args.dry_run and not args.no_tf32:
        torch.set_float32_matmul_precision("high")
    sizes = Sizes.tiny(args.precision) if args.dry_run else Sizes.gpu(args.precision)
    torch.manual_seed(0)
    lines = header(sizes)
    print("\n".join(lines), flush=True)
    rows: list[Row] = []
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        root = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gpu_check_")))
        root.mkdir(parents=True, exist_ok=True)
        ws = Workspace(root, sizes)
        for group, what, setting, run in checks(ws):
            if group not in groups:
                continue
            t0 = time.perf_counter()
            try:
                for row in run():
                    rows.append(row)
                    print(f"  {row.what}: {fmt(row.figure)} {row.unit} [{row.setting}]", file=sys.stderr, flush=True)
            except Exception as err:  # one failing check must not stop the others
                rows.append(Row(what, setting, None, "", f"FAILED: {one_line(err)}"))
                print(f"  {what}: FAILED", file=sys.stderr)
                traceback.print_exc(file=sys.stderr)
            print(f"  ({what}: {time.perf_counter() - t0:.1f} s)", file=sys.stderr, flush=True)
    total = time.perf_counter() - started
    failed = [r for r in rows if not r.ok]
    summary = f"{len(rows) - len(failed)} ok, {len(failed)} failed, {total:.0f} s"
    text = table(rows)
    print(f"\n{text}\n\n{summary}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(f"- {line}" for line in lines) + f"\n\n{text}\n\n{summary}\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
