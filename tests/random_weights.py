"""Deterministic random weights keyed by parameter name, so two implementations with the same parameter names and
shapes (ours and a reference) get identical weights from one seed."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F


def seeded_state_dict(template: Mapping[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """Weights for every entry of ``template`` (a state dict), drawn in sorted key order from ``seed``.

    Scales keep deep stacks numerically tame: matrices and kernels ~ N(0, 1/fan_in), norm weights near 1, biases
    and running means small, running variances in [0.75, 1.25], spectral-norm vectors unit length.
    """
    g = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for key in sorted(template):
        t = template[key]
        if not t.is_floating_point():
            out[key] = torch.zeros_like(t)
            continue
        shape = t.shape
        if key.endswith("running_var"):
            value = torch.rand(shape, generator=g) * 0.5 + 0.75
        elif key.endswith(("weight_u", "weight_v")):
            value = F.normalize(torch.randn(shape, generator=g), dim=0)
        elif t.ndim >= 2 and shape[0] > 1:
            fan_in = t.numel() // shape[0]
            value = torch.randn(shape, generator=g) / math.sqrt(fan_in)
        elif key.endswith("weight"):
            value = 1 + 0.1 * torch.randn(shape, generator=g)
        else:
            value = 0.1 * torch.randn(shape, generator=g)
        out[key] = value.to(t.dtype)
    return out
