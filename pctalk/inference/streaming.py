"""The motion stage as a stream: speech in chunks -> :class:`DrivenMotion` blocks as soon as they are final.

Offline generation runs through the same engine with the whole audio as one chunk, so streamed frames equal offline
ones bit for bit whatever the chunk sizes: every computation happens in blocks fixed by the LAC window plan (the
frames each window adds), never by when the audio arrived. Per block, in the paper's and the official release's
order: the frames' mel windows (:class:`pctalk.audio.streaming.AudioStream`) -> audio features -> the LAC window
(warm-started from the previous one, refined by the lip refiner) -> Kalman -> lip scale (global, timeline, loudness)
and style edits -> written back into the source expression -> EMC's pure emotions per region (its own windows) ->
gaze, blinks -> the driven keypoints.

Latency: a block is final once its window's audio is, i.e. one LAC window (25 frames, 1 s, by default; ``window``
sets it) plus about 170 ms of mel lookahead after the block's last frame; then blocks come every ``window - overlap``
frames. Smoothing: the Kalman *filter* when ``causal`` (the frames depend on the past only: what streaming needs);
otherwise the RTS smoother over the whole clip (the official release's), which waits for :meth:`MotionStream.close`;
then EMC's conditioning of every window runs in one batched pass (:func:`pctalk.control.emotion.pure_emotions`), as
fast as before streaming existed, and equal to the windowed pass up to float rounding.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from pctalk.audio.io import SILENCE_DBFS, peak_dbfs
from pctalk.audio.loudness import frame_loudness
from pctalk.audio.streaming import AudioStream
from pctalk.control.emotion import NEUTRAL, EmotionTerm, compose, pure_emotions, replace_region
from pctalk.control.eyes import blink_delta, gaze_delta
from pctalk.control.lip import edit_style, loudness_factor, pronunciation, scale_lips
from pctalk.inference.kalman import KalmanFilter, kalman_smooth
from pctalk.inference.timeline import Timeline
from pctalk.keypoints.regions import EYES, LIPS
from pctalk.keypoints.transform import transform_keypoints
from pctalk.models.windows import Window, WindowStream

if TYPE_CHECKING:
    from pctalk.inference.pipeline import Controls, DrivenMotion, SourceFrames, TalkingFacePipeline

__all__ = ["MotionStream"]

#: Frames on each side of the loudness moving average (:func:`pctalk.control.lip.loudness_factor`'s 5).
LOUDNESS_CONTEXT = 2


@dataclass
class _Block:
    """Frames ``start .. stop - 1``: their LAC deformation ``D (T, K, 3)``, before smoothing."""

    start: int
    stop: int
    D: torch.Tensor


class _Features:
    """Per-frame audio features (LAC's, EMC's) and loudness, computed block by block, kept while still needed."""

    def __init__(self) -> None:
        self.pieces: dict[str, list[tuple[int, torch.Tensor]]] = {}

    def add(self, name: str, start: int, values: torch.Tensor) -> None:
        self.pieces.setdefault(name, []).append((start, values))

    def get(self, name: str, start: int, stop: int) -> torch.Tensor:
        """Frames ``start .. stop - 1`` along the first dimension."""
        parts = [v[max(0, start - a) : stop - a] for a, v in self.pieces[name] if a < stop and a + len(v) > start]
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def forget(self, before: int) -> None:
        for name, parts in self.pieces.items():
            self.pieces[name] = [(a, v) for a, v in parts if a + len(v) > before]


class MotionStream:
    """The motion stage, incrementally. Feed it audio (:meth:`push`, :meth:`close`) or features
    (:meth:`push_features`); each call returns the :class:`DrivenMotion` blocks that became final.

    Args:
        pipeline: the loaded stages.
        frames: ``frames(k)`` -> the source's motion for at least the first ``k`` output frames
            (:meth:`TalkingFacePipeline.frames`; it must not change earlier frames when ``k`` grows).
        controls: as offline; ``refine_after_emotion`` needs the whole clip and is not streamed.
        causal: Kalman-filter (final blocks as they come) instead of smoothing at the end.
        emc_features, loudness: compute EMC's own features / the frames' loudness (when the controls use them).
    """

    def __init__(
        self,
        pipeline: TalkingFacePipeline,
        frames: Callable[[int], SourceFrames],
        controls: Controls,
        causal: bool = True,
        emc_features: bool = False,
        loudness: bool = False,
    ) -> None:
        self.p, self.controls, self.causal = pipeline, controls, causal
        self.timeline = controls.timeline or Timeline()
        self._frames_for, self._frames = frames, None
        lac, device = pipeline.lac, pipeline.device
        self.idx = list(lac.info.keypoints)
        self.lip_rows = [self.idx.index(k) for k in LIPS]
        self.style = pipeline._style(lac.predictor.n_styles, controls.style_id, controls.style_code)
        self.refine = controls.refine and lac.refiner is not None and not controls.refine_after_emotion
        self.lac = WindowStream(self._predict_lips, controls.window or lac.info.window)
        self.want_emc_features, self.want_loudness = emc_features, loudness
        self.audio = AudioStream()
        self.features = _Features()
        self.encoded = 0  # frames whose features are computed
        self.blocks: list[_Block] = []  # predicted, not yet finished
        self.finished = 0  # frames returned
        self.lip_filter = KalmanFilter()
        self._from_audio = True
        self.closed = False
        self.loudness_done = 0
        self._emotion_setup(device)

    # -- input ------------------------------------------------------------------------------------------------------
    def push(self, chunk: torch.Tensor | np.ndarray) -> list[DrivenMotion]:
        """Append 16 kHz samples ``(N,)``."""
        if self.closed:
            raise ValueError("the motion stream is closed; start a new one (motion_stream) for more speech")
        self.audio.push(chunk)
        return self._advance(self.audio.ready, closed=False)

    def close(self) -> list[DrivenMotion]:
        """The end of the speech: the last (shorter) windows and, when not causal, the smoothing of the whole clip."""
        if self.closed:
            raise ValueError("the motion stream is already closed; start a new one (motion_stream) for more speech")
        self.closed = True
        if not self._from_audio and self.encoded < 1:
            raise ValueError("no audio features were given: push_features at least one frame before close")
        if self._from_audio:
            self.audio.close()
            if self.audio.frames < 1:
                raise ValueError(f"the audio is {self.audio.samples / 16000:.3f} s long, shorter than one video "
                                 f"frame (40 ms)")  # fmt: skip
            level = peak_dbfs(self.audio.peak)
            if level < SILENCE_DBFS:  # generate() refuses such a file; a live stream may start silent: warned here
                warnings.warn(f"the speech was silent throughout (peak {level:.1f} dBFS, below {SILENCE_DBFS:.0f} "
                              "dBFS): the face did not talk; check the microphone or file, its volume, or the audio "
                              "track chosen", stacklevel=2)  # fmt: skip
        return self._advance(self.audio.frames if self._from_audio else self.encoded, closed=True)

    def push_features(
        self, feat: torch.Tensor, emc_feat: torch.Tensor | None = None, loudness: torch.Tensor | None = None
    ) -> list[DrivenMotion]:
        """Precomputed ``(1, T, A)`` features of the next ``T`` frames (and EMC's ``(1, T, A')``, the loudness
        ``(T,)``) instead of audio; :meth:`close` ends them."""
        self._from_audio = False
        start = self.encoded
        self.features.add("lac", start, feat[0])
        self.features.add("emc", start, (feat if emc_feat is None else emc_feat)[0])
        if loudness is not None:
            self.features.add("loudness", start, loudness)
        self.want_loudness = loudness is not None
        self.encoded += feat.shape[1]
        return self._advance(self.encoded, closed=False)

    # -- the engine -----------------------------------------------------------------------------------------------
    def _advance(self, known: int, closed: bool) -> list[DrivenMotion]:
        self._measure_loudness()
        if not self.causal and not closed:  # the smoothing waits for the end: so does the work, in the fewest batches
            return []
        if closed and self._from_audio and not self.causal:
            self._encode(known)  # every frame's features at once (the encoder batches them by 128)
        while (w := self.lac.next(known, closed)) is not None:
            self._encode(w.stop)
            D = self.lac.run(w, self.features.get("lac", w.start, w.stop)[None])[0]
            self.blocks.append(_Block(w.start + w.warm, w.stop, D.view(-1, len(self.idx), 3)))
        total = known if closed else None
        self._run_emotions(total)
        out = []
        if self.causal:
            while self.blocks and self._can_finish(self.blocks[0], total):
                block = self.blocks.pop(0)
                out.append(self._finish(block, self.lip_filter(block.D) if self.controls.smooth else block.D, total))
        elif closed:
            D = torch.cat([b.D for b in self.blocks])
            if self.controls.smooth:
                D = kalman_smooth(D)
            if self.learned and self.controls.smooth_emotion:
                self.emotion = kalman_smooth(self.emotion.transpose(0, 1)).transpose(0, 1)
            for block in self.blocks:
                out.append(self._finish(block, D[block.start : block.stop], total))
            self.blocks = []
        if self.causal and not self.controls.refine_after_emotion:  # which needs every frame's features at the end
            keep = min(self.lac.done - self.lac.overlap, self.finished - LOUDNESS_CONTEXT, self._emotion_keep())
            self.features.forget(max(0, keep))
        return out

    def refine_after_emotion(self, driven: DrivenMotion) -> DrivenMotion:
        """pctalk 0.1's order, kept as an option (``controls.refine_after_emotion``): the lip refiner on the final
        lip keypoints of the whole clip, after EMC (it can pull the lip scale back). Otherwise ``driven`` as is."""
        c, lac = self.controls, self.p.lac
        if not (c.refine_after_emotion and c.refine and lac.refiner is not None):
            return driven
        n, lips = len(driven.keypoints), list(LIPS)
        f, feat = self._source(0, n), self.features.get("lac", 0, n)[None]
        with torch.no_grad():
            refined = lac.refiner(driven.keypoints[:, lips].reshape(1, n, -1), feat).view(n, len(lips), 3)
        driven.keypoints[:, lips] = refined
        shift = torch.zeros_like(refined[:, :1])
        shift[..., :2] = f.t[:, None, :2]  # x = s * (kp R + exp) + t, t_z = 0: exp from the refined x
        driven.exp[:, lips] = (refined - shift) / f.scale[:, :, None] - (f.kp @ f.R)[:, lips]
        driven.lips = driven.exp[:, lips] * f.scale[:, :, None]
        return driven

    def _encode(self, stop: int) -> None:
        """The audio features of the frames up to ``stop``, in one batch: the frames the LAC window adds."""
        start = self.encoded
        if stop <= start or not self._from_audio:
            return
        windows = self.audio.windows(start, stop).to(self.p.device)
        feat = self.p._features(self.p.lac.audio_encoder, windows)[0]
        self.features.add("lac", start, feat)
        if self.learned:
            own = self.want_emc_features
            self.features.add("emc", start, self.p._features(self.p.emc.audio_encoder, windows)[0] if own else feat)
        self.encoded = stop

    def _measure_loudness(self) -> None:
        """The loudness of every frame whose audio has come."""
        start, stop = self.loudness_done, self.audio.frames
        if self.want_loudness and self._from_audio and stop > start:
            loudness = frame_loudness(self.audio.wav(start, stop), stop - start).to(self.p.device)
            self.features.add("loudness", start, loudness)
            self.loudness_done = stop

    def _source(self, start: int, stop: int) -> SourceFrames:
        if self._frames is None or len(self._frames.index) < stop:
            self._frames = self._frames_for(stop)
        return self._frames.slice(start, stop)

    def _predict_lips(self, audio: torch.Tensor, warm: torch.Tensor | None, w: Window) -> torch.Tensor:
        lac = self.p.lac
        D = lac.predictor.generate(audio, self.style, warm)
        if self.refine:  # the frames' undeformed keypoints in the source's own pose: the pose channel leaves the lips
            f = self._source(w.start, w.stop)
            R = f.R if f.source_R is None else f.source_R
            t = f.t if f.source_t is None else f.source_t
            ref = transform_keypoints(f.kp, R, torch.zeros_like(f.exp), f.scale, t)[:, self.idx].reshape(1, -1)
            ref = ref.view(1, w.stop - w.start, -1)
            with torch.no_grad():
                D = lac.refiner(ref + D, audio) - ref
        return D

    def _can_finish(self, block: _Block, total: int | None) -> bool:
        if self.emc_on and self.emotion_done < block.stop:
            return False
        if self.want_loudness and total is None:  # the moving average's frames after the block
            return self._loudness_known() >= block.stop + LOUDNESS_CONTEXT
        return True

    def _loudness_known(self) -> int:
        return self.loudness_done if self._from_audio else self.encoded

    # -- emotions -------------------------------------------------------------------------------------------------
    def _emotion_setup(self, device: torch.device) -> None:
        p, controls = self.p, self.controls
        terms = p._terms(controls, self.timeline)
        self.emc_on = False
        self.learned: list = []
        self.replaced: list = []
        self.emotion_done = 0
        if not terms:
            return
        if p.emc is None:
            raise ValueError("emotion controls need an EMC checkpoint (--emc)")
        emc = p.emc
        code = controls.style_code
        if code is not None and len(code) != emc.predictor.decoder.n_styles:
            code = None  # a code over the LAC's identities: EMC (trained on its own) takes the mean style
            warnings.warn("the style code is over the LAC's training identities; EMC, trained on others, uses the "
                          "mean of its styles", stacklevel=3)  # fmt: skip
        style = p._style(emc.predictor.decoder.n_styles, controls.style_id if code is None else -1, code)
        for control in terms:
            if control.source == "neutral":
                continue  # neutral minus neutral: nothing to add
            embedding = p._emotion_embedding(control, controls)
            if embedding is None:  # image (or a video without a learned source): its expression replaces the region
                cue = getattr(controls, f"emotion_from_{control.source}")
                self.replaced.append((control, p.load_source(cue, max_frames=250).motion.exp.mean(0)))
            else:
                self.learned.append((control, embedding))
        self.emc_on = bool(self.learned) or bool(self.replaced)
        if not self.learned:
            self.emotion_done = 1 << 62
            return
        neutral = emc.predictor.embed(torch.tensor([NEUTRAL], device=device))
        self.rows = torch.cat([e for _, e in self.learned] + [neutral])  # (K + 1, d): one batched pass
        self.emc_style = style.expand(len(self.rows), *style.shape[1:])
        self.emc_windows = WindowStream(self._predict_emotions, controls.window or emc.info.window)
        self.emotion = torch.zeros(len(self.learned), 0, 21, 3, device=device)  # (K, T, 21, 3), kept while needed
        self.emotion_start = 0
        self.emotion_filters = [KalmanFilter() for _ in self.learned]

    def _predict_emotions(self, audio: torch.Tensor, warm: torch.Tensor | None, w: Window) -> torch.Tensor:
        predictor = self.p.emc.predictor
        with torch.no_grad():
            memory = predictor.memory(audio.expand(len(self.rows), -1, -1), self.rows)
        return predictor.decoder.decode(memory, self.emc_style, warm)

    def _run_emotions(self, total: int | None) -> None:
        if not self.learned:
            return
        k = len(self.learned)
        if not self.causal:  # offline smoothing waits for the end anyway: every window's conditioning in one pass
            if total is not None:
                feat = self.features.get("emc", 0, total)[None]
                window = self.controls.window or self.p.emc.info.window
                self.emotion = pure_emotions(self.p.emc.predictor, feat, self.rows[:k], self.emc_style[:1], window)
                self.emotion_done = total
            return
        # streaming: window by window, on the features the LAC windows computed (the same batches whatever the arrival)
        while (w := self.emc_windows.next(self.encoded, total is not None)) is not None:
            out = self.emc_windows.run(w, self.features.get("emc", w.start, w.stop)[None])
            pure = (out[:k] - out[k:]).view(k, -1, 21, 3)
            if self.controls.smooth_emotion:
                pure = torch.stack([f(e) for f, e in zip(self.emotion_filters, pure)])
            self.emotion = torch.cat([self.emotion, pure], dim=1)
            self.emotion_done = w.stop

    def _emotion_keep(self) -> int:
        if not self.learned:
            return 1 << 62
        return self.emc_windows.done - self.emc_windows.overlap

    def _emotions(self, exp: torch.Tensor, scale: torch.Tensor, a: int, b: int) -> torch.Tensor:
        for control, reference in self.replaced:
            intensity = self._intensity(control, a, b)
            blend = torch.as_tensor(intensity, dtype=exp.dtype, device=exp.device)
            blend = blend[:, None, None] if blend.ndim else blend
            exp = exp + blend * (replace_region(exp, reference, control.region) - exp)
        if not self.learned:
            return exp
        deformations = self.emotion[:, a - self.emotion_start : b - self.emotion_start]
        terms = [EmotionTerm(d, c.region, self._intensity(c, a, b)) for (c, _), d in zip(self.learned, deformations)]
        if self.causal:  # what the next blocks no longer need
            drop = b - self.emotion_start
            self.emotion, self.emotion_start = self.emotion[:, drop:], b
        return compose(exp, scale, terms)

    def _intensity(self, control, a: int, b: int) -> torch.Tensor | float:
        track = self.timeline.values(f"emotion:{control.source}:{control.region}", b, start=a)
        return torch.from_numpy(track).to(self.p.device) if track is not None else control.intensity

    # -- one block, after the prediction ----------------------------------------------------------------------------
    def _track(self, name: str, a: int, b: int) -> torch.Tensor | None:
        values = self.timeline.values(name, b, start=a)
        return None if values is None else torch.from_numpy(values).to(self.p.device)

    def _finish(self, block: _Block, D: torch.Tensor, total: int | None) -> DrivenMotion:
        from pctalk.inference.pipeline import DrivenMotion

        controls, p = self.controls, self.p
        a, b = block.start, block.stop
        factor = torch.full((b - a,), float(controls.lip_scale), device=p.device)
        if (track := self._track("lip_scale", a, b)) is not None:
            factor = factor * track
        if self.want_loudness:
            factor = factor * self._loudness(a, b, total)
        D = scale_lips(D, factor)
        edits = dict(controls.style_edits)
        edits.update({name.split(":")[1]: None for name in self.timeline.names("style_edit:")})
        for word, beta in edits.items():
            track = self._track(f"style_edit:{word}", a, b)
            beta_t = track if track is not None else float(beta)
            own = controls.pronunciations.get(word)
            vector = torch.tensor(own, dtype=D.dtype).view(len(LIPS), 3) if own is not None else pronunciation(word)
            D[:, self.lip_rows] = edit_style(D[:, self.lip_rows], vector.to(p.device), beta_t)

        f = self._source(a, b)
        exp, scale = f.exp.clone(), f.scale
        exp[:, self.idx] = D / scale[:, :, None]  # write back: exp[kp] = D / s
        exp = self._emotions(exp, scale, a, b)
        eyes = list(EYES)  # the eye channels move these keypoints only
        if f.gaze is not None:
            exp[:, eyes] += gaze_delta(f.gaze[:, 0], f.gaze[:, 1])[:, eyes]
        retarget = f.closure is not None and p._retargets_eyes(f, controls)
        if f.closure is not None and not retarget:
            exp[:, eyes] += blink_delta(f.closure)[:, eyes]
        keypoints = transform_keypoints(f.kp, f.R, exp, scale, f.t)
        if retarget:
            keypoints[:, eyes] += p._eye_retargeting(f)[:, eyes]
        lips = exp[:, list(LIPS)] * scale[:, :, None]
        self.finished = b
        return DrivenMotion(exp, f.R, f.t, scale, keypoints, lips, f.index)

    def _loudness(self, a: int, b: int, total: int | None) -> torch.Tensor:
        """The loudness lip factor of frames ``a .. b - 1``: the moving average sees its frames on each side (the
        clip's ends replicated), as over the whole clip."""
        c = self.controls
        end = self._loudness_known() if total is None else total
        lo_i, hi_i = max(0, a - LOUDNESS_CONTEXT), min(end, b + LOUDNESS_CONTEXT)
        loud = self.features.get("loudness", lo_i, hi_i)
        track = self._track("loudness_gain", lo_i, hi_i)
        gain = track if track is not None else c.loudness_gain
        factor = loudness_factor(loud, c.loudness_reference, gain, *c.loudness_bounds)
        return factor[a - lo_i : b - lo_i].to(self.p.device)
