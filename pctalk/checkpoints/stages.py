"""Reading and writing the trained stages in every format pctalk knows: Lightning checkpoints of the training tasks,
pctalk release files (this format and pctalk 0.1's), and the official PC-Talk release's files.

Every reader returns the same :class:`LACStage` / :class:`EMCStage` (networks in eval mode plus their
:class:`~pctalk.checkpoints.info.StageInfo`); every writer takes one. ``pctalk export`` is :func:`load_stage` then
:func:`save_release`; ``pctalk generate``, ``pctalk-eval`` and the lip refiner's training read through
:func:`load_lac_stage` / :func:`load_emc_stage`.

Release folders (both formats) hold ``lac.pth`` and/or ``emc.pth`` beside one ``audio_encoder.pth`` (a plain state
dict under ``audio_encoder.``, as the official release reads it). The official release shares that one encoder
between LAC and EMC; so does a pctalk folder, and :func:`save_release` refuses to overwrite it with a different one.
Each stage records the SHA-256 of the encoder it was trained with, and a loader that finds another encoder beside
the file says so.
"""

from __future__ import annotations

import argparse
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from pctalk.audio.encoder import AudioEncoder, load_audio_encoder
from pctalk.checkpoints import official
from pctalk.checkpoints.info import CheckpointFormatError, StageInfo, state_sha256
from pctalk.models.config import EmotionConfig, PredictorConfig
from pctalk.models.emotion_predictor import EmotionPredictor
from pctalk.models.emotion_sources import AudioEmotionSource, TextEmotionSource, VideoEmotionSource
from pctalk.models.expression_predictor import ExpressionPredictor
from pctalk.models.lip_refiner import LipRefiner
from pctalk.weights.io import load_checkpoint, load_state_dict_strict, save_checkpoint

__all__ = [
    "AUDIO_ENCODER_FILE",
    "EMCStage",
    "LACStage",
    "ReleaseFormat",
    "export",
    "load_emc_stage",
    "load_lac_stage",
    "load_stage",
    "read",
    "save_release",
    "to_device",
]

AUDIO_ENCODER_FILE = "audio_encoder.pth"
ReleaseFormat = Literal["pctalk", "official"]
#: the official release's fixed sizes (it builds d 512, FF 1024, 4 heads, 1 layer, 512-d audio)
OFFICIAL_SIZES = {"d_model": 512, "ff_dim": 1024, "n_heads": 4, "n_layers": 1}


@dataclass
class LACStage:
    """A trained LAC: the expression predictor, its audio encoder, the lip refiner (optional) and what the file said
    of itself."""

    predictor: ExpressionPredictor
    audio_encoder: AudioEncoder
    refiner: LipRefiner | None = None
    info: StageInfo | None = None

    def __post_init__(self) -> None:
        if self.info is None:
            p = self.predictor
            target = {18: "lips", 63: "all"}[p.out_dim]
            self.info = StageInfo("lac", p.n_styles, p.config, p.audio_dim, target, window=p.period)
        if self.refiner is not None and self.info.target != "lips":
            raise CheckpointFormatError(
                "the lip refiner refines the six lip keypoints; this LAC predicts all 21 (target: all), which the "
                "refiner does not support (nor does the official release)"
            )


@dataclass
class EMCStage:
    """A trained EMC: the combined predictor, its audio encoder, the sources' classifier, the learned sources that
    can run here (``sources``) and the weights of every learned source the file holds (``source_states``: also those
    whose frozen backbone is not on this machine, so that an export keeps them)."""

    predictor: EmotionPredictor
    audio_encoder: AudioEncoder
    classifier: nn.Linear | None = None
    sources: dict[str, nn.Module] = field(default_factory=dict)
    info: StageInfo | None = None
    source_states: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.info is None:
            p = self.predictor
            self.info = StageInfo("emc", p.decoder.n_styles, p.config, p.decoder.audio_dim, window=p.decoder.period)
        for name, module in self.sources.items():
            self.source_states.setdefault(name, _trainable_state(module))
        self.info.sources = sorted(set(self.info.sources) | set(self.source_states))


Stage = LACStage | EMCStage


def to_device(stage: Stage, device: torch.device | str) -> None:
    """Move every network of ``stage`` to ``device``."""
    for value in vars(stage).values():
        if isinstance(value, nn.Module):
            value.to(device)
        elif isinstance(value, dict):
            for module in value.values():
                if isinstance(module, nn.Module):
                    module.to(device)


# -- reading ------------------------------------------------------------------------------------------------------
@dataclass
class Found:
    """What a file is: its ``format`` (``lightning``, ``pctalk``, ``pctalk-0.1``, ``official``), the stage
    ``kind``, the loaded object and the block (``None`` for official files without one)."""

    format: str
    kind: str
    obj: dict[str, Any]
    info: StageInfo | None


def _part(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def _describe(obj: Any) -> str:
    if isinstance(obj, Mapping):
        keys = sorted(map(str, obj))
        return f"a dict with keys {', '.join(keys[:8])}{' ...' if len(keys) > 8 else ''}"
    return f"a {type(obj).__name__}"


def _official_kind(model: Mapping[str, Any], path: Path) -> str:
    keys = [k.removeprefix("module.") for k in model]
    if any(k.startswith(("emo_vector.", "audio_former.")) for k in keys):
        raise CheckpointFormatError(
            f"{path} is an official EMC of emotion_type 1 or 2; pctalk reads the release's default emotion_type 3 "
            f"(the autoregressive emotion decoder under audio_emo_former.)"
        )
    if any(k.startswith("audio_emo_former.") for k in keys):
        return "emc"
    if any(k.startswith(("style_predictor.", "obj_vector.vertice_map")) for k in keys):
        raise CheckpointFormatError(
            f"{path} is an official LAC with a speaking-style encoder in place of the one-hot style (style_template); "
            f"pctalk reads the release's default one-hot LAC"
        )
    return "lac"


def read(path: str | os.PathLike[str]) -> Found:
    """Open a LAC or EMC file of any format pctalk reads and say what it is.

    Raises:
        FileNotFoundError, UnsafeCheckpointError, RuntimeError: as :func:`pctalk.weights.load_checkpoint`.
        CheckpointFormatError: the file is no LAC / EMC checkpoint of a known format, or of a newer format version.
    """
    path = Path(path)
    obj = load_checkpoint(path, safe_globals=[argparse.Namespace])  # the official files' args may be a Namespace
    if not isinstance(obj, dict):
        raise CheckpointFormatError(f"{path} is {_describe(obj)}, not a LAC or EMC checkpoint")
    block = obj.get("pctalk")
    if "state_dict" in obj:  # a Lightning checkpoint
        if isinstance(block, Mapping) and "format_version" in block:
            info = StageInfo.from_dict(block, path)
        elif isinstance(block, Mapping) and "predictor_config" in block:
            info = StageInfo.from_legacy("lac", block["predictor_config"])
        elif isinstance(block, Mapping) and "emotion_config" in block:
            info = StageInfo.from_legacy("emc", block["emotion_config"], block.get("sources"))
        else:
            task = (obj.get("hyper_parameters") or {}).get("_class_path", "a task other than LAC's or EMC's")
            raise CheckpointFormatError(
                f"{path} is a Lightning checkpoint of {task}, not of an ExpressionTask, LipRefinerTask or EmotionTask "
                f"(it has no 'pctalk' block). Give the checkpoint of a LAC or EMC run (runs/<stage>/checkpoints/)."
            )
        return Found("lightning", info.kind, obj, info)
    if "expression_predictor" in obj or "emotion_predictor" in obj:
        kind = "lac" if "expression_predictor" in obj else "emc"
        if isinstance(block, Mapping):
            return Found("pctalk", kind, obj, StageInfo.from_dict(block, path))
        if "config" not in obj:
            raise CheckpointFormatError(f"{path} has a {kind} predictor but no 'pctalk' block or 'config' sizes")
        return Found("pctalk-0.1", kind, obj, StageInfo.from_legacy(kind, obj["config"], list(obj.get("sources", {}))))
    model = obj.get("model", obj)
    if isinstance(model, Mapping) and any(str(k).removeprefix("module.") == "vertice_map.weight" for k in model):
        info = StageInfo.from_dict(block, path) if isinstance(block, Mapping) else None
        return Found("official", _official_kind(model, path), obj, info)
    if "model_ft" in obj or "out_fc.weight" in obj:
        raise CheckpointFormatError(
            f"{path} is an official lip refiner alone (model_ft): give it with --refiner beside the LAC file "
            f"(pctalk generate --lac LAC --refiner {path.name}, or pctalk export --checkpoint LAC --refiner ...)"
        )
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()) and any("conv_block" in k for k in obj):
        raise CheckpointFormatError(
            f"{path} is an audio encoder, not a LAC or EMC checkpoint (give it as --audio-encoder)"
        )
    raise CheckpointFormatError(
        f"{path} is {_describe(obj)}: not a LAC or EMC checkpoint pctalk knows (a .ckpt from `pctalk fit`, a "
        f"lac.pth / emc.pth from `pctalk export`, or the official PC-Talk release's lac.pth / emc.pth)"
    )


def _encoder_from_state(state: Mapping[str, torch.Tensor], path: Path) -> AudioEncoder:
    encoder_state = _part(state, "audio_encoder.")
    first = encoder_state.get("audio_encoder.0.conv_block.0.weight")
    if first is None:
        raise CheckpointFormatError(f"{path} holds no audio encoder weights (audio_encoder.*)")
    return load_state_dict_strict(AudioEncoder(first.shape[0] / 32), encoder_state, path).eval()


def _audio_encoder(
    path: Path,
    given: str | os.PathLike[str] | None,
    info: StageInfo | None,
    state: Mapping[str, torch.Tensor] | None = None,
    strict: bool = False,
) -> AudioEncoder:
    """The stage's audio encoder: ``given``, else the one a training checkpoint holds (``state``), else
    ``audio_encoder.pth`` beside a release file; checked against the hash the stage recorded. An encoder given
    explicitly that differs is used with a warning, or refused when ``strict`` (an export must not record it)."""
    if given is None and state is not None:
        return _encoder_from_state(state, path)
    file = Path(given) if given is not None else path.with_name(AUDIO_ENCODER_FILE)
    if given is None and not file.is_file():
        raise FileNotFoundError(
            f"{path} needs its audio encoder: put {AUDIO_ENCODER_FILE} beside it or pass --audio-encoder (the file "
            f"`pctalk export` writes, the official release's audio_encoder.pth, or SyncTalk's audio_visual_encoder.pth)"
        )
    encoder = load_audio_encoder(file)
    expected = (info.audio_encoder.get("sha256") if info else None) or None
    if expected and state_sha256(encoder.state_dict()) != expected:
        message = (
            f"{file} is not the audio encoder {path.name} was trained with (its weights' SHA-256 differs from the one "
            f"recorded in {path}); the motion would be wrong."
        )
        if given is None or strict:
            raise CheckpointFormatError(
                message + " Export each stage with its own encoder into its own folder, or pass the right file with "
                "--audio-encoder."
            )
        warnings.warn(message + " Using it because it was given explicitly.", stacklevel=3)
    if encoder.out_dim != (info.audio_dim if info else encoder.out_dim):
        raise CheckpointFormatError(
            f"{file} gives {encoder.out_dim}-d audio features but {path} reads {info.audio_dim}-d ones (it was trained "
            f"with another encoder width); give the encoder it was trained with"
        )
    return encoder


def _refiner_from(state: Mapping[str, torch.Tensor], path: Path) -> LipRefiner:
    weight = state["linear.weight"]
    refiner = LipRefiner(weight.shape[0], weight.shape[1] - weight.shape[0])
    return load_state_dict_strict(refiner, state, path).eval()


def _official_refiner(obj: Mapping[str, Any], path: Path) -> LipRefiner:
    model_ft = obj.get("model_ft", obj)
    if not isinstance(model_ft, Mapping) or "out_fc.weight" not in official.strip_module(model_ft):
        raise CheckpointFormatError(
            f"{path} is not an official lip refiner ({{'model_ft': {{'out_fc.*'}}}}); found {_describe(obj)}"
        )
    return _refiner_from(official.from_official_refiner(model_ft), path)


def _official_args(obj: Mapping[str, Any]) -> dict[str, Any]:
    args = obj.get("args", {})
    return vars(args) if isinstance(args, argparse.Namespace) else dict(args or {})


def _official_lac(found: Found, path: Path) -> tuple[ExpressionPredictor, StageInfo, LipRefiner | None]:
    model = official.strip_module(found.obj.get("model", found.obj))
    args = _official_args(found.obj)
    state = official.from_official_lac(model)
    n_styles = int(args.get("person_num") or state["obj_vector.weight"].shape[1])
    period = official.infer_period(model, args)
    out_dim = state["vertice_map.weight"].shape[1]
    config = PredictorConfig(**_decoder_sizes(state), period=period)
    audio_dim = state["audio_feature_map.weight"].shape[1]
    info = found.info or StageInfo("lac", n_styles, config, audio_dim, "lips" if out_dim == 18 else "all", period)
    predictor = load_state_dict_strict(ExpressionPredictor(n_styles, out_dim, audio_dim, config), state, path)
    refiner = _official_refiner(found.obj, path) if "model_ft" in found.obj else None
    return predictor, info, refiner


def _decoder_sizes(state: Mapping[str, torch.Tensor], prefix: str = "") -> dict[str, Any]:
    """The sizes a state dict's decoder under ``prefix`` implies (the heads are not in the weights: the official 4)."""
    layers = {k[len(prefix) :].split(".")[2] for k in state if k.startswith(f"{prefix}transformer_decoder.layers.")}
    sizes: dict[str, Any] = {"n_layers": len(layers)}
    if f"{prefix}obj_vector.weight" in state:  # a main decoder (not the emotion-conditioning one)
        sizes["d_model"] = state[f"{prefix}vertice_map.weight"].shape[0]
        sizes["ff_dim"] = state[f"{prefix}transformer_decoder.layers.0.linear1.weight"].shape[0]
        sizes["style_bias"] = f"{prefix}obj_vector.bias" in state
    return sizes


def load_lac_stage(
    path: str | os.PathLike[str],
    audio_encoder: str | os.PathLike[str] | None = None,
    refiner: str | os.PathLike[str] | None = None,
    strict_encoder: bool = False,
) -> LACStage:
    """The LAC stage in eval mode from a training checkpoint (ExpressionTask or LipRefinerTask), a pctalk release
    ``lac.pth`` or the official release's ``lac.pth``.

    Args:
        audio_encoder: the audio encoder file (release files only; default ``audio_encoder.pth`` beside ``path``; a
            training checkpoint holds its own).
        refiner: a separate lip refiner (the official release's ``{"model_ft": ...}``, or another LAC file holding one),
            replacing any in ``path``.
        strict_encoder: refuse an ``audio_encoder`` other than the one the stage was trained with (else a warning).
    """
    path = Path(path)
    found = read(path)
    if found.kind != "lac":
        raise CheckpointFormatError(
            f"{path} is an EMC (emotion) checkpoint, not a LAC (lip) one: give it where an EMC is asked for (pctalk "
            f"generate --emc), and a LAC file (an ExpressionTask / LipRefinerTask checkpoint or a lac.pth) here"
        )
    info, lip_refiner = found.info, None
    if found.format == "lightning":
        state = found.obj["state_dict"]
        predictor = _build_lac(info, _part(state, "predictor."), path)
        if "refiner.linear.weight" in state:
            lip_refiner = _refiner_from(_part(state, "refiner."), path)
        encoder = _audio_encoder(path, audio_encoder, info, state, strict_encoder)
    elif found.format in ("pctalk", "pctalk-0.1"):
        predictor = _build_lac(info, found.obj["expression_predictor"], path)
        if "lip_refiner" in found.obj:
            lip_refiner = _refiner_from(found.obj["lip_refiner"], path)
        encoder = _audio_encoder(path, audio_encoder, info, strict=strict_encoder)
    else:
        predictor, info, lip_refiner = _official_lac(found, path)
        encoder = _audio_encoder(path, audio_encoder, info, strict=strict_encoder)
    if refiner is not None:
        lip_refiner = _load_refiner(Path(refiner))
        if lip_refiner.linear.in_features - lip_refiner.kp_dim != encoder.out_dim:
            raise CheckpointFormatError(
                f"the lip refiner {refiner} reads {lip_refiner.linear.in_features - lip_refiner.kp_dim}-d audio "
                f"features but {path}'s audio encoder gives {encoder.out_dim}-d ones: give the refiner trained on "
                f"this LAC's features"
            )
    assert info is not None
    return LACStage(predictor.eval(), encoder.eval(), lip_refiner, info)


def _load_refiner(path: Path) -> LipRefiner:
    """A lip refiner from the official release's ``{"model_ft": ...}`` file, or from a LAC file holding one."""
    obj = load_checkpoint(path, safe_globals=[argparse.Namespace])
    if isinstance(obj, Mapping) and ("model_ft" in obj or "out_fc.weight" in obj):
        return _official_refiner(obj, path)
    try:
        found = read(path)
    except CheckpointFormatError:
        found = None
    if found is None or found.kind != "lac":
        raise CheckpointFormatError(
            f"{path} is not a lip refiner: give the official release's refiner file ({{'model_ft': ...}}) or "
            f"a LAC file that holds one (a LipRefinerTask checkpoint, or a lac.pth exported from one)"
        )
    stage = load_lac_stage(path)
    if stage.refiner is None:
        raise CheckpointFormatError(f"{path} is a LAC without a lip refiner (an ExpressionTask's): give stage 2's file")
    return stage.refiner


def _build_lac(info: StageInfo | None, state: Mapping[str, torch.Tensor], path: Path) -> ExpressionPredictor:
    assert info is not None
    model = ExpressionPredictor(info.n_styles, info.out_dim, info.audio_dim, info.predictor)
    return load_state_dict_strict(model, state, path)


def _sources(info: StageInfo, states: Mapping[str, Mapping[str, torch.Tensor]], path: Path) -> dict[str, nn.Module]:
    """The learned emotion sources that can run here: the video source always; the audio and text sources when
    their frozen backbone's folder is known (the text source defaults to the bundled sentence encoder)."""
    config, modules = info.predictor, {}
    for name in info.sources:
        if name not in states:
            continue
        if name == "video":
            module: nn.Module = VideoEmotionSource(config.d_model, n_heads=config.n_heads, ff_dim=config.ff_dim)
            load_state_dict_strict(module, states[name], path)
        elif name == "audio" and "audio" in info.source_folders:
            module = AudioEmotionSource(info.source_folders["audio"], config.d_model)
            load_state_dict_strict(module.projection, _part(states[name], "projection."), path)
        elif name == "text":
            module = TextEmotionSource(info.source_folders.get("text"), config.d_model)
            load_state_dict_strict(module.projection, _part(states[name], "projection."), path)
        else:
            continue
        modules[name] = module.eval()
    return modules


def _build_emc(info: StageInfo, state: Mapping[str, torch.Tensor], path: Path) -> EmotionPredictor:
    assert isinstance(info.predictor, EmotionConfig)
    return load_state_dict_strict(EmotionPredictor(info.n_styles, info.audio_dim, info.predictor), state, path)


def _classifier(info: StageInfo, state: Mapping[str, torch.Tensor] | None, path: Path) -> nn.Linear | None:
    if not state:
        return None
    classifier = nn.Linear(info.predictor.d_model, info.predictor.n_emotions)  # type: ignore[attr-defined]
    return load_state_dict_strict(classifier, state, path).eval()


def _official_emc(found: Found, path: Path) -> tuple[EmotionPredictor, StageInfo]:
    model = official.strip_module(found.obj.get("model", found.obj))
    args = _official_args(found.obj)
    state = official.from_official_emc(model)
    period = official.infer_period(model, args)
    n_styles = int(args.get("person_num") or state["decoder.obj_vector.weight"].shape[1])
    config = EmotionConfig(
        **_decoder_sizes(state, "decoder."),
        period=period,
        emotion_layers=_decoder_sizes(state, "emotion_decoder.")["n_layers"],
        n_emotions=state["emotion_embedding.weight"].shape[1],
    )
    audio_dim = state["decoder.audio_feature_map.weight"].shape[1]
    info = found.info or StageInfo("emc", n_styles, config, audio_dim, window=period)
    return _build_emc(info, state, path), info


def load_emc_stage(
    path: str | os.PathLike[str], audio_encoder: str | os.PathLike[str] | None = None, strict_encoder: bool = False
) -> EMCStage:
    """The EMC stage in eval mode from an EmotionTask checkpoint, a pctalk release ``emc.pth`` or the official
    release's ``emc.pth`` (``audio_encoder``, ``strict_encoder`` as for :func:`load_lac_stage`)."""
    path = Path(path)
    found = read(path)
    if found.kind != "emc":
        raise CheckpointFormatError(
            f"{path} is a LAC (lip) checkpoint, not an EMC (emotion) one: give it where a LAC is asked for (pctalk "
            f"generate --lac, the refiner's expression), and an EmotionTask checkpoint or an emc.pth here"
        )
    info = found.info
    classifier_state: Mapping[str, torch.Tensor] | None
    if found.format == "lightning":
        assert info is not None
        state = found.obj["state_dict"]
        predictor = _build_emc(info, _part(state, "predictor."), path)
        classifier_state = _part(state, "emotion_classifier.")
        states = {n: _part(state, f"source_modules.{n}.") for n in info.sources}
        if not info.source_folders:  # pctalk 0.1 checkpoints kept the folders in the hyper-parameters only
            hparams = found.obj.get("hyper_parameters", {})
            folders = {"audio": hparams.get("wav2vec2"), "text": hparams.get("text_encoder")}
            info.source_folders = {k: str(v) for k, v in folders.items() if v}
        encoder = _audio_encoder(path, audio_encoder, info, state, strict_encoder)
    elif found.format in ("pctalk", "pctalk-0.1"):
        assert info is not None
        predictor = _build_emc(info, found.obj["emotion_predictor"], path)
        classifier_state = found.obj.get("emotion_classifier")
        states = dict(found.obj.get("sources", {}))
        if found.format == "pctalk-0.1":
            info.source_folders = dict(found.obj.get("sources_config", {}))
        encoder = _audio_encoder(path, audio_encoder, info, strict=strict_encoder)
    else:
        predictor, info = _official_emc(found, path)
        classifier_state = found.obj.get("pctalk_classifier")
        states = dict(found.obj.get("pctalk_sources", {}))
        encoder = _audio_encoder(path, audio_encoder, info, strict=strict_encoder)
    sources = _sources(info, states, path)
    classifier = _classifier(info, classifier_state, path)
    return EMCStage(
        predictor.eval(), encoder.eval(), classifier, sources, info, {n: dict(v) for n, v in states.items()}
    )


def load_stage(
    path: str | os.PathLike[str],
    audio_encoder: str | os.PathLike[str] | None = None,
    refiner: str | os.PathLike[str] | None = None,
    strict_encoder: bool = False,
) -> Stage:
    """Whichever stage ``path`` holds (``refiner``: a separate lip refiner for a LAC)."""
    if read(path).kind == "lac":
        return load_lac_stage(path, audio_encoder, refiner, strict_encoder)
    if refiner is not None:
        raise CheckpointFormatError(f"{path} is an EMC checkpoint: a lip refiner belongs with a LAC")
    return load_emc_stage(path, audio_encoder, strict_encoder)


# -- writing ------------------------------------------------------------------------------------------------------
def _cpu(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in state.items()}


def _write_encoder(encoder: AudioEncoder, out: Path) -> Path:
    """Write ``out/audio_encoder.pth`` unless the same encoder is already there; refuse to replace a different one."""
    target = out / AUDIO_ENCODER_FILE
    state = _cpu(encoder.state_dict())
    if target.is_file():
        existing = load_audio_encoder(target)
        if state_sha256(existing.state_dict()) == state_sha256(state):
            return target
        raise CheckpointFormatError(
            f"{target} already holds a different audio encoder, which the stage exported there before needs (a release "
            f"folder has one encoder shared by LAC and EMC, as the official release). Export this stage into another "
            f"folder (--out), or delete {target} and re-export the other stage too."
        )
    return save_checkpoint(state, target)


def _official_check(stage: Stage) -> None:
    config = stage.info.predictor  # type: ignore[union-attr]
    if isinstance(config, EmotionConfig) and config.conditioning != "autoregressive":
        raise CheckpointFormatError(
            "this EMC conditions on emotions with pctalk 0.1's transformer encoder, which the official release cannot "
            "run; export it with --format pctalk, or retrain it with this pctalk (autoregressive conditioning)"
        )
    different = {k: getattr(config, k) for k, v in OFFICIAL_SIZES.items() if getattr(config, k) != v}
    if isinstance(config, EmotionConfig):
        different.update({k: getattr(config, k) for k, v in (("emotion_layers", 2), ("n_emotions", 8))
                          if getattr(config, k) != v})  # fmt: skip
    elif config.style_bias:  # the official LAC's obj_vector has no bias
        different["style_bias"] = True
    if stage.info.audio_dim != 512:  # type: ignore[union-attr]
        different["audio_dim"] = stage.info.audio_dim  # type: ignore[union-attr]
    if stage.info.window != config.period:  # type: ignore[union-attr]
        different["window"] = stage.info.window  # type: ignore[union-attr]
    if different:
        warnings.warn(
            f"the official release builds its networks at {OFFICIAL_SIZES}, 512-d audio, window = period, a 2-layer "
            f"emotion decoder over 8 emotions and a LAC style without bias; this stage differs ({different}): the "
            f"files are in its layout but its code will refuse them",
            stacklevel=2,
        )


def save_release(stage: Stage, out: str | os.PathLike[str], format: ReleaseFormat = "pctalk") -> list[Path]:
    """Write ``stage`` into the release folder ``out``: ``lac.pth`` or ``emc.pth``, and ``audio_encoder.pth``.

    Args:
        format: ``pctalk`` (this pctalk's layout: every network pctalk trains, with its block) or ``official`` (the
            official release's layout, which its code loads with ``strict=True``; pctalk's block and the EMC's
            learned sources ride along under extra keys the official code ignores).

    Raises:
        CheckpointFormatError: ``out`` already holds a different audio encoder; or an EMC of pctalk 0.1's
            conditioning asked for in the official layout.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if format not in ("pctalk", "official"):
        raise ValueError(f"unknown format {format!r}; use pctalk or official")
    info = stage.info
    assert info is not None
    info.audio_encoder = {**info.audio_encoder, "sha256": state_sha256(stage.audio_encoder.state_dict())}
    if format == "official":
        _official_check(stage)
    encoder = _write_encoder(stage.audio_encoder, out)
    block = info.to_dict()
    if isinstance(stage, LACStage):
        predictor = _cpu(stage.predictor.state_dict())
        refiner = None if stage.refiner is None else _cpu(stage.refiner.state_dict())
        if format == "official":
            obj: dict[str, Any] = {
                "model": official.to_official_lac(predictor),
                "args": {"person_num": info.n_styles, "T": info.predictor.period},
            }
            if refiner is not None:
                obj["model_ft"] = official.to_official_refiner(refiner)
        else:
            obj = {"expression_predictor": predictor, **({"lip_refiner": refiner} if refiner is not None else {})}
        name = "lac.pth"
    else:
        predictor = _cpu(stage.predictor.state_dict())
        classifier = None if stage.classifier is None else _cpu(stage.classifier.state_dict())
        sources = {n: _cpu(state) for n, state in stage.source_states.items()}
        if format == "official":
            obj = {
                "model": official.to_official_emc(predictor),
                "args": {"person_num": info.n_styles, "T": info.predictor.period},
                "pctalk_sources": sources,
                **({"pctalk_classifier": classifier} if classifier is not None else {}),
            }
        else:
            obj = {"emotion_predictor": predictor, "sources": sources}
            if classifier is not None:
                obj["emotion_classifier"] = classifier
        name = "emc.pth"
    obj["pctalk"] = block
    return [save_checkpoint(obj, out / name), encoder]


def _trainable_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """A source's weights without its frozen backbone (read from its own folder)."""
    return {k: v for k, v in module.state_dict().items() if not k.startswith("backbone.")}


def export(
    checkpoint: Path,
    out: Path,
    format: ReleaseFormat = "pctalk",
    audio_encoder: Path | None = None,
    refiner: Path | None = None,
) -> int:
    """A trained stage to a release folder: OUT/lac.pth or OUT/emc.pth, OUT/audio_encoder.pth, and the folder's model
    card (OUT/MODEL_CARD.md and OUT/model_card.json).

    Args:
        checkpoint: a checkpoint of `pctalk fit` (.ckpt), a pctalk release file or an official release file.
        out: the release folder (LAC and EMC may share it when they use the same audio encoder).
        format: pctalk (every network, with pctalk's block) or official (the official PC-Talk release's layout).
        audio_encoder: the audio encoder of a release-file checkpoint, if not beside it (it must be the one the stage
            was trained with).
        refiner: a separate lip refiner to export with a LAC (the official release's refiner file).
    """
    from pctalk.checkpoints.card import write_card

    stage = load_stage(checkpoint, audio_encoder, refiner, strict_encoder=True)
    written = save_release(stage, out, format)
    write_card(Path(out), stage.info, written[0])
    parts = "predictor" if isinstance(stage, EMCStage) or stage.refiner is None else "predictor and lip refiner"
    print(f"wrote {written[0]} ({stage.info.kind.upper()} {parts}, {format} layout) and {written[1]}")  # type: ignore[union-attr]
    return 0
