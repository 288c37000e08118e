"""ONNX models with the signatures of LivePortrait's cropper models and chosen outputs, built with ``onnx.helper``.

Each model ignores its input's values (its outputs are ``0 * sum(input) + constant``), so a test knows exactly what
the detector or landmark model "sees" and can check that the cropper decodes and transforms it correctly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _constant_model(
    path: Path, input_name: str, input_shape: list, outputs: dict[str, np.ndarray], first_nodes: tuple[str, ...] = ()
) -> Path:
    """A graph ``input -> ReduceSum -> Mul 0 -> Add constant_k`` for each output; ``first_nodes`` names extra
    identity nodes placed first (InsightFace reads node names to choose its input normalisation)."""
    nodes, inits = [], []
    source = input_name
    for i, name in enumerate(first_nodes):
        nodes.append(helper.make_node("Identity", [source], [f"pre{i}"], name=name))
        source = f"pre{i}"
    nodes.append(helper.make_node("ReduceSum", [source], ["total"], keepdims=0, name="reduce"))
    inits.append(numpy_helper.from_array(np.zeros((), np.float32), "zero"))
    nodes.append(helper.make_node("Mul", ["total", "zero"], ["nothing"], name="times_zero"))
    graph_outputs = []
    for out_name, value in outputs.items():
        value = np.asarray(value, np.float32)
        inits.append(numpy_helper.from_array(value, f"{out_name}_value"))
        nodes.append(helper.make_node("Add", ["nothing", f"{out_name}_value"], [out_name], name=f"make_{out_name}"))
        graph_outputs.append(helper.make_tensor_value_info(out_name, TensorProto.FLOAT, list(value.shape)))
    graph = helper.make_graph(
        nodes,
        "constant",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, input_shape)],
        graph_outputs,
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def scrfd_model(path: Path, faces: list[tuple[np.ndarray, float, np.ndarray]], input_size: int = 512) -> Path:
    """A 9-output SCRFD (strides 8/16/32, 2 anchors, keypoints) reporting ``faces``: each ``(bbox (x1, y1, x2, y2),
    score, kps (5, 2))`` in letterboxed input pixels, placed at the stride-32 anchor nearest the box centre."""
    strides = (8, 16, 32)
    scores = [np.zeros((((input_size // s) ** 2) * 2, 1), np.float32) for s in strides]
    boxes = [np.zeros((len(sc), 4), np.float32) for sc in scores]
    kps = [np.zeros((len(sc), 10), np.float32) for sc in scores]
    cells = input_size // 32
    for n, (bbox, score, points) in enumerate(faces):
        cx, cy = (bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2
        col, row = round(cx / 32), round(cy / 32)
        anchor = (row * cells + col) * 2 + (n % 2)
        ax, ay = col * 32, row * 32
        scores[2][anchor] = score
        boxes[2][anchor] = np.array([ax - bbox[0], ay - bbox[1], bbox[2] - ax, bbox[3] - ay]) / 32
        kps[2][anchor] = ((points - [ax, ay]) / 32).reshape(-1)
    outputs = {}
    for group, arrays in (("score", scores), ("bbox", boxes), ("kps", kps)):
        for s, a in zip(strides, arrays):
            outputs[f"{group}_{s}"] = a
    return _constant_model(path, "input.1", [1, 3, input_size, input_size], outputs)


def landmark106_model(path: Path, normalised: np.ndarray, mxnet_style: bool = True) -> Path:
    """A 2d106det-like model returning ``normalised (106, 2)`` (crop pixels / 96 - 1); ``mxnet_style`` puts Sub and
    Mul nodes first, as InsightFace's exported model has."""
    first = ("Sub_0", "Mul_1") if mxnet_style else ()
    return _constant_model(path, "data", [1, 3, 192, 192], {"fc1": normalised.reshape(1, 212)}, first)


def landmark203_model(path: Path, normalised: np.ndarray) -> Path:
    """A landmark.onnx-like model whose third output is ``normalised (203, 2)`` (crop pixels / 224)."""
    outputs = {"out0": np.zeros((1, 214), np.float32), "out1": np.zeros((1, 2), np.float32)}
    outputs["landmarks"] = normalised.reshape(1, 406)
    return _constant_model(path, "input", [1, 3, 224, 224], outputs)


def face_template(n: int, centre: tuple[float, float], size: float, roll_deg: float = 0.0) -> np.ndarray:
    """``(n, 2)`` landmarks of a face-like shape (n = 106 or 203): points on an ellipse of width ``size`` around
    ``centre``, with the points the cropper reads placed at the eyes and lips; rolled by ``roll_deg``."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    pts = np.stack([0.5 * np.cos(t), 0.62 * np.sin(t)], axis=1)
    eye_l, eye_r, lip = np.array([-0.2, -0.12]), np.array([0.2, -0.12]), np.array([0.0, 0.28])
    if n == 203:
        pts[[0, 6, 12, 18]] = eye_l + [[-0.05, 0], [0, -0.02], [0.05, 0], [0, 0.02]]
        pts[[24, 30, 36, 42]] = eye_r + [[-0.05, 0], [0, -0.02], [0.05, 0], [0, 0.02]]
        pts[[48, 66]] = lip + [[0, -0.03], [0, 0.03]]
    elif n == 106:
        pts[[33, 35, 40, 39]] = eye_l + [[-0.05, 0], [0, -0.02], [0.05, 0], [0, 0.02]]
        pts[[87, 89, 94, 93]] = eye_r + [[-0.05, 0], [0, -0.02], [0.05, 0], [0, 0.02]]
        pts[[52, 61]] = lip + [[0, -0.03], [0, 0.03]]
    else:
        raise ValueError(n)
    a = np.radians(roll_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return (pts @ rot.T * size + np.asarray(centre)).astype(np.float32)
