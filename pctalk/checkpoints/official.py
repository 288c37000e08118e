"""The official PC-Talk inference release's checkpoint layout (BQ-Wang0511/PC-Talk), both ways, as pure functions on
state dicts. Facts of that layout (read from its ``pctalk/motion_controls.py`` and ``pctalk/models/*.py``):

- LAC ``lac.pth``: ``{"model": state_dict, "args": {"person_num": P, "T": T}}``, and optionally the lip refiner under
  ``"model_ft"`` (``{"out_fc.weight" (18, 530), "out_fc.bias" (18,)}``; its command line reads the refiner from
  ``lac.pth`` by default, or from a separate file of the same form). The predictor's names are FaceFormer's, as
  pctalk's :class:`~pctalk.models.ExpressionPredictor`; ``obj_vector`` has no bias.
- EMC ``emc.pth``: the same top level; the predictor (its ``emotion_type`` 3, the default) holds the main decoder under
  FaceFormer's names, ``obj_vector`` with a bias (unless the file has none), and the emotion-conditioning decoder
  under ``audio_emo_former.`` (``audio_feature_map``, ``emo_feature_map``, ``PPE``, a 2-layer
  ``transformer_decoder``, ``audio_map_r``, ``map_output``).
- Vertex vectors are **coordinate-major**: the ``V`` values of a frame are all x, then all y, then all z of the
  keypoints (``reshape(..., 3, N)``), where pctalk's are keypoint-major (``reshape(..., N, 3)``). Every weight that
  touches a vertex vector (``vertice_map``'s input, ``vertice_map_r``'s output, the refiner's lip input and output)
  is permuted on the way in and out.
- ``T`` (the positional-encoding period, the temporal-bias period and the inference window) comes from ``args``, or
  from the length of ``PPE.pe`` (``T * (600 // T + 1)``) in files without ``args``; ``module.`` prefixes are stripped.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

__all__ = [
    "EMC_NAMES",
    "coordinate_major",
    "from_official_emc",
    "from_official_lac",
    "from_official_refiner",
    "infer_period",
    "to_official_emc",
    "to_official_lac",
    "to_official_refiner",
]

State = dict[str, torch.Tensor]

#: pctalk's EmotionPredictor prefix -> the official EmotionMotionPredictor's (longest prefixes first)
EMC_NAMES: tuple[tuple[str, str], ...] = (
    ("emotion_decoder.audio_map.", "audio_emo_former.audio_feature_map."),
    ("emotion_decoder.PPE.", "audio_emo_former.PPE."),
    ("emotion_decoder.transformer_decoder.", "audio_emo_former.transformer_decoder."),
    ("emotion_decoder.feedback_map.", "audio_emo_former.audio_map_r."),
    ("emotion_decoder.output_map.", "audio_emo_former.map_output."),
    ("emotion_embedding.", "audio_emo_former.emo_feature_map."),
    ("decoder.", ""),
)


def coordinate_major(n_keypoints: int) -> torch.Tensor:
    """``perm`` with ``coordinate_major_vector = keypoint_major_vector[perm]`` for ``n_keypoints`` keypoints:
    position ``c * N + k`` (coordinate ``c`` of keypoint ``k``) takes keypoint-major position ``3 * k + c``."""
    return torch.tensor([3 * k + c for c in range(3) for k in range(n_keypoints)])


def _inverse(perm: torch.Tensor) -> torch.Tensor:
    return torch.argsort(perm)


def _vertex_io(state: Mapping[str, torch.Tensor], prefix: str, perm: torch.Tensor) -> State:
    """Permute a predictor's vertex input (``vertice_map.weight`` columns) and output (``vertice_map_r`` rows)."""
    out = dict(state)
    out[f"{prefix}vertice_map.weight"] = state[f"{prefix}vertice_map.weight"][:, perm].clone()
    out[f"{prefix}vertice_map_r.weight"] = state[f"{prefix}vertice_map_r.weight"][perm].clone()
    out[f"{prefix}vertice_map_r.bias"] = state[f"{prefix}vertice_map_r.bias"][perm].clone()
    return out


def strip_module(state: Mapping[str, torch.Tensor]) -> State:
    return {k.removeprefix("module."): v for k, v in state.items()}


def _n_keypoints(state: Mapping[str, torch.Tensor], prefix: str = "") -> int:
    v = state[f"{prefix}vertice_map.weight"].shape[1]
    if v % 3:
        raise ValueError(f"vertice_map takes {v} values per frame, not a multiple of 3")
    return v // 3


def to_official_lac(predictor_state: Mapping[str, torch.Tensor]) -> State:
    """pctalk's ExpressionPredictor state dict -> the official ``model`` entry (same names, coordinate-major)."""
    return _vertex_io(predictor_state, "", coordinate_major(_n_keypoints(predictor_state)))


def from_official_lac(model: Mapping[str, torch.Tensor]) -> State:
    """The official ``model`` entry -> pctalk's ExpressionPredictor state dict (keypoint-major)."""
    model = strip_module(model)
    return _vertex_io(model, "", _inverse(coordinate_major(_n_keypoints(model))))


def _renamed(state: Mapping[str, torch.Tensor], names: tuple[tuple[str, str], ...], reverse: bool) -> State:
    out: State = {}
    for key, value in state.items():
        for ours, theirs in names:
            src, dst = (theirs, ours) if reverse else (ours, theirs)
            if key.startswith(src) and (src or not any(key.startswith(t) for _, t in names if t)):
                out[dst + key[len(src) :]] = value
                break
        else:
            raise KeyError(f"no official name for {key!r}" if not reverse else f"unexpected key {key!r} in the file")
    return out


def to_official_emc(predictor_state: Mapping[str, torch.Tensor]) -> State:
    """pctalk's EmotionPredictor (autoregressive conditioning) state dict -> the official ``model`` entry."""
    state = _vertex_io(predictor_state, "decoder.", coordinate_major(_n_keypoints(predictor_state, "decoder.")))
    return _renamed(state, EMC_NAMES, reverse=False)


def from_official_emc(model: Mapping[str, torch.Tensor]) -> State:
    """The official ``model`` entry of an EMC -> pctalk's EmotionPredictor state dict."""
    state = _renamed(strip_module(model), EMC_NAMES, reverse=True)
    return _vertex_io(state, "decoder.", _inverse(coordinate_major(_n_keypoints(state, "decoder."))))


def _refiner_perm(kp_dim: int) -> torch.Tensor:
    if kp_dim % 3:
        raise ValueError(f"the lip refiner's {kp_dim} keypoint values are not a multiple of 3")
    return coordinate_major(kp_dim // 3)


def to_official_refiner(refiner_state: Mapping[str, torch.Tensor]) -> State:
    """pctalk's LipRefiner state (``linear.*``) -> the official ``model_ft`` (``out_fc.*``): rows (outputs) and the
    first 18 columns (the lip input) permuted to coordinate-major; the audio columns are unchanged."""
    weight, bias = refiner_state["linear.weight"], refiner_state["linear.bias"]
    kp_dim = weight.shape[0]
    perm = _refiner_perm(kp_dim)
    columns = torch.cat([perm, torch.arange(kp_dim, weight.shape[1])])
    return {"out_fc.weight": weight[perm][:, columns].clone(), "out_fc.bias": bias[perm].clone()}


def from_official_refiner(model_ft: Mapping[str, torch.Tensor]) -> State:
    """The official ``model_ft`` -> pctalk's LipRefiner state."""
    model_ft = strip_module(model_ft)
    weight, bias = model_ft["out_fc.weight"], model_ft["out_fc.bias"]
    kp_dim = weight.shape[0]
    inverse = _inverse(_refiner_perm(kp_dim))
    columns = torch.cat([inverse, torch.arange(kp_dim, weight.shape[1])])
    return {"linear.weight": weight[inverse][:, columns].clone(), "linear.bias": bias[inverse].clone()}


def infer_period(model: Mapping[str, torch.Tensor], args: Mapping[str, object], prefix: str = "") -> int:
    """The official ``T``: from ``args``, else from ``PPE.pe``'s length (as the official loader does), else 25."""
    if args.get("T"):
        return int(args["T"])  # type: ignore[arg-type]
    pe = model.get(f"{prefix}PPE.pe")
    if pe is not None:
        for candidate in (5, 10, 20, 25, 50, 100):
            if candidate * (600 // candidate + 1) == pe.shape[1]:
                return candidate
    return 25
