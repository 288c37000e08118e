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


def save_training_weights(weights):
    """The pretrained files training needs, random weights in the layouts users download, under ``weights``: tiny
    LivePortrait, Wav2Lip's SyncNet expert, SyncTalk's audio encoder (bare keys) and a tiny wav2vec2."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    from pctalk.audio.encoder import AudioEncoder
    from pctalk.audio.syncnet import SyncNet
    from pctalk.keypoints.config import LivePortraitConfig
    from pctalk.keypoints.liveportrait import LivePortrait, save_liveportrait

    torch.manual_seed(0)
    lp = LivePortrait(LivePortraitConfig.tiny())
    lp.load_state_dict(seeded_state_dict(lp.state_dict(), 7))
    save_liveportrait(lp, weights)
    (weights / "wav2lip").mkdir()
    torch.save({"state_dict": SyncNet().state_dict(), "global_step": 0}, weights / "wav2lip" / "lipsync_expert.pth")
    (weights / "audio").mkdir()
    encoder = AudioEncoder().state_dict()
    torch.save(
        {k.removeprefix("audio_encoder."): v for k, v in encoder.items()},
        weights / "audio" / "audio_visual_encoder.pth",
    )
    config = Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, conv_dim=(16, 16),
        conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
        do_stable_layer_norm=True, feat_extract_norm="layer",
    )  # fmt: skip
    Wav2Vec2Model(config).save_pretrained(weights / "wav2vec2_emotion")
    return weights
