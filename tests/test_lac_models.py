"""LAC's networks and controls: the FaceFormer-style decoder, cached generation, the refiner, the lip controls."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from pctalk.audio.encoder import AudioEncoder
from pctalk.checkpoints import LACStage, load_lac_stage, save_release
from pctalk.control.lip import (
    PRONUNCIATIONS,
    edit_style,
    loudness_factor,
    pronunciation,
    pronunciation_vector,
    scale_lips,
)
from pctalk.keypoints.regions import LIPS
from pctalk.models import ExpressionPredictor, LipRefiner
from pctalk.models.config import PredictorConfig
from pctalk.models.decoder import KVCache, alibi_bias, alibi_slopes
from pctalk.weights import CheckpointKeyError


@pytest.fixture
def predictor(seeded: int) -> ExpressionPredictor:
    model = ExpressionPredictor(3, config=PredictorConfig(d_model=64, n_heads=4, ff_dim=128, n_layers=2)).eval()
    torch.nn.init.normal_(model.vertice_map_r.weight, std=0.1)  # zero-initialised output: make it say something
    return model


def test_alibi_bias_hand_computed() -> None:
    assert alibi_slopes(4).tolist() == [0.25, 0.0625, 0.015625, 0.00390625]
    bias = alibi_bias(4, length=5, period=2)
    assert bias.shape == (4, 5, 5)
    assert torch.isinf(bias[0, 0, 1]) and bias[0, 0, 1] < 0  # causal
    # head 0 (slope 0.25), query 4: distances 4, 3, 2, 1, 0 -> floor(d / 2) = 2, 1, 1, 0, 0
    torch.testing.assert_close(bias[0, 4], torch.tensor([-0.5, -0.25, -0.25, 0.0, 0.0]))
    torch.testing.assert_close(alibi_bias(4, 2, 2, start=3), bias[:, 3:5, :5])  # incremental rows
    assert alibi_slopes(6).shape == (6,)


def test_decoder_equals_torch_transformer_decoder(predictor: ExpressionPredictor) -> None:
    """Our decoder is nn.TransformerDecoder with FaceFormer's masks (temporal bias, diagonal alignment)."""
    reference = torch.nn.TransformerDecoder(
        torch.nn.TransformerDecoderLayer(64, 4, 128, batch_first=True), num_layers=2
    ).eval()
    reference.load_state_dict(predictor.transformer_decoder.state_dict())
    x, audio = torch.randn(1, 12, 64), torch.randn(1, 12, 64)
    bias = alibi_bias(4, 12, 25)
    ours = predictor.transformer_decoder(x, audio, bias)
    theirs = reference(x, audio, tgt_mask=bias, memory_mask=~torch.eye(12, dtype=torch.bool))
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_cached_generation_equals_recomputation(predictor: ExpressionPredictor) -> None:
    audio, style = torch.randn(2, 40, 512), torch.tensor([0, 2])
    cached = predictor.generate(audio, style)
    naive = predictor.generate(audio, style, use_cache=False)
    assert cached.shape == (2, 40, 18) and cached.abs().max() > 1e-3
    torch.testing.assert_close(cached, naive, atol=1e-5, rtol=0)
    warm = cached[:, :8] + 0.01
    warm_cached = predictor.generate(audio, style, warm_start=warm)
    torch.testing.assert_close(
        warm_cached, predictor.generate(audio, style, warm_start=warm, use_cache=False), atol=1e-5, rtol=0
    )
    assert torch.equal(warm_cached[:, :8], warm)  # warm frames come back unchanged
    with pytest.raises(ValueError, match="warm_start covers"):
        predictor.generate(audio[:, :5], style, warm_start=cached[:, :5])


def test_a_preallocated_cache_decodes_exactly_as_a_growing_one(predictor: ExpressionPredictor) -> None:
    """Generation writes keys and values into buffers sized for the window (no concatenation per step): the same
    steps as the concatenating cache that training's incremental decoding uses, bit for bit; overfilling says so."""
    decoder, n = predictor.transformer_decoder, 12
    x, audio, bias = torch.randn(2, n, 64), torch.randn(2, n, 64), alibi_bias(4, n, 25)
    cross = decoder.cross(audio)
    outputs = {}
    for capacity in (None, n):
        cache, steps = KVCache(len(decoder.layers), capacity), []
        for a, b in ((0, 3), (3, 4), *((t, t + 1) for t in range(4, n))):  # a prefill, then one token a step
            steps.append(decoder(x[:, a:b], None, bias[:, a:b, :b], cache, [c[:, a:b] for c in cross]))
        outputs[capacity] = torch.cat(steps, dim=1)
        assert cache.length == n
    assert torch.equal(outputs[None], outputs[n])
    torch.testing.assert_close(outputs[n], decoder(x, audio, bias), atol=1e-5, rtol=0)  # = the whole sequence
    with pytest.raises(ValueError, match="holds 12 tokens; 13"):
        cache.append(0, *(torch.zeros(2, 4, 1, 16),) * 2)


def test_teacher_forcing_on_its_own_output_reproduces_generation(predictor: ExpressionPredictor) -> None:
    audio, style = torch.randn(1, 30, 512), torch.tensor([1])
    generated = predictor.generate(audio, style)
    with torch.no_grad():
        torch.testing.assert_close(predictor(audio, style, generated), generated, atol=1e-5, rtol=0)


def test_style_codes(predictor: ExpressionPredictor) -> None:
    one_hot = predictor.style_embedding(torch.tensor([2]))
    torch.testing.assert_close(one_hot, predictor.obj_vector.weight[:, 2][None])
    torch.testing.assert_close(predictor.style_embedding(torch.tensor([[0.0, 0.0, 1.0]])), one_hot)
    unseen = predictor.style_embedding(torch.tensor([-1]))  # a speaker outside the training identities
    torch.testing.assert_close(unseen, predictor.obj_vector.weight.mean(1)[None])
    with pytest.raises(ValueError, match="out of range"):
        predictor.style_embedding(torch.tensor([3]))
    with pytest.raises(ValueError, match=r"\(B, T, 512\)"):
        predictor.generate(torch.randn(1, 5, 256), torch.tensor([0]))


def test_zero_initialised_outputs(seeded: int) -> None:
    model = ExpressionPredictor(n_styles=2).eval()
    assert model.generate(torch.randn(1, 5, 512), torch.tensor([0])).abs().max() == 0
    refiner = LipRefiner()
    lips = torch.randn(2, 5, 6, 3)
    assert torch.equal(refiner(lips, torch.randn(2, 5, 512)), lips)  # starts as the identity


def test_lac_round_trip(tmp_path: Path, predictor: ExpressionPredictor) -> None:
    refiner = LipRefiner(18, 512)
    torch.nn.init.normal_(refiner.linear.weight, std=0.01)
    save_release(LACStage(predictor, AudioEncoder(), refiner), tmp_path)
    lac = load_lac_stage(tmp_path / "lac.pth")
    assert lac.info.target == "lips" and lac.info.predictor == predictor.config
    audio, style = torch.randn(1, 10, 512), torch.tensor([1])
    torch.testing.assert_close(lac.predictor.generate(audio, style), predictor.generate(audio, style), atol=0, rtol=0)
    lips = torch.randn(1, 10, 18)
    torch.testing.assert_close(lac.refiner(lips, audio), refiner(lips, audio), atol=0, rtol=0)
    save_release(LACStage(predictor, AudioEncoder()), tmp_path / "no_refiner")
    assert load_lac_stage(tmp_path / "no_refiner" / "lac.pth").refiner is None
    obj = torch.load(tmp_path / "lac.pth", weights_only=True)
    obj["pctalk"]["predictor"]["d_model"] = 32
    torch.save(obj, tmp_path / "bad.pth")
    with pytest.raises(CheckpointKeyError):
        load_lac_stage(tmp_path / "bad.pth")


# -- lip controls ------------------------------------------------------------------------------------------------------


def test_scale_lips() -> None:
    D = torch.randn(2, 7, 6, 3)
    assert torch.equal(scale_lips(D, 1.0), D)
    torch.testing.assert_close(scale_lips(D, 1.5), 1.5 * D)
    per_frame = torch.linspace(0.5, 2, 7)
    torch.testing.assert_close(scale_lips(D, per_frame)[:, 3], D[:, 3] * per_frame[3])
    all_keypoints = torch.randn(7, 21, 3)  # a LAC of target all: the whole deformation scales
    torch.testing.assert_close(scale_lips(all_keypoints, 2.0), 2 * all_keypoints)
    with pytest.raises(ValueError, match=r"\(\.\.\., K, 3\)"):
        scale_lips(torch.randn(7, 18), 2.0)


def test_edit_style_changes_only_the_component_along_v() -> None:
    D = torch.randn(20, 6, 3)
    v = pronunciation("duck")
    assert torch.allclose(edit_style(D, v, 1.0), D)
    edited = edit_style(D, v, 1.8)
    along = lambda x: (x * v).sum(dim=(-2, -1))  # noqa: E731
    torch.testing.assert_close(along(edited), 1.8 * along(D))
    orthogonal = lambda x: x - along(x)[:, None, None] * v  # noqa: E731
    torch.testing.assert_close(orthogonal(edited), orthogonal(D))
    # a direction of any length is normalised; beta may vary per frame
    torch.testing.assert_close(edit_style(D, 5 * v, 1.8), edited)
    beta = torch.linspace(0, 2, 20)
    torch.testing.assert_close(along(edit_style(D, v, beta)), beta * along(D))


def test_built_in_pronunciations() -> None:
    assert set(PRONUNCIATIONS) == {"too", "woo", "bee", "eee", "duck", "aaa", "pursing", "widening", "opening"}
    for v in PRONUNCIATIONS.values():
        assert v.shape == (6, 3) and v.norm().item() == pytest.approx(1.0)
    opening = pronunciation("aaa")
    assert opening[LIPS.index(19), 1] == opening.abs().max()  # mostly keypoint 19 moving along y
    assert torch.equal(pronunciation("too"), pronunciation("woo"))
    assert torch.equal(pronunciation("duck"), pronunciation("opening"))  # the official release's names
    with pytest.raises(ValueError, match="no built-in pronunciation"):
        pronunciation("moo")


def test_pronunciation_vector_from_example_frames() -> None:
    D = torch.zeros(10, 6, 3)
    D[3:6, 2, 1] = torch.tensor([1.0, 2.0, 3.0])
    v = pronunciation_vector(D, slice(3, 6))
    assert v[2, 1] == 1.0 and v.norm() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no lip deformation"):
        pronunciation_vector(D, [0, 1])


def test_loudness_factor() -> None:
    loud = torch.tensor([-20.0] * 5 + [0.0] * 5 + [-100.0] * 5)
    factor = loudness_factor(loud, reference_db=-20, gain=0.02, lo=0.5, hi=1.3, smoothing=1)
    torch.testing.assert_close(factor[:5], torch.ones(5))
    torch.testing.assert_close(factor[5:10], torch.full((5,), 1.3))  # 1.4 clamped
    torch.testing.assert_close(factor[10:], torch.full((5,), 0.5))  # -0.6 clamped
    smooth = loudness_factor(loud, smoothing=5)
    assert smooth.shape == loud.shape
    assert (smooth[1:] - smooth[:-1]).abs().max() < (factor[1:] - factor[:-1]).abs().max()
    assert loudness_factor(torch.randn(2, 3, 15)).shape == (2, 3, 15)
    assert math.isclose(float(loudness_factor(torch.tensor([-20.0]))), 1.0)
