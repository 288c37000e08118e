"""LAC's training stages on the synthetic corpus: data module, ExpressionTask, LipRefinerTask, export, DDP, resume."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer, seed_everything

from conftest import CONF
from pctalk.audio.encoder import load_audio_encoder
from pctalk.audio.syncnet import SyncNet
from pctalk.checkpoints import export, load_lac_stage
from pctalk.cli import main
from pctalk.data import ShardDataModule
from pctalk.data.examples import clip_example
from pctalk.data.pipeline import rank_shards
from pctalk.models.config import PredictorConfig
from pctalk.tasks import ExpressionTask, LipRefinerTask
from pctalk.tasks.samples import SampleLogger

SIZES = PredictorConfig(d_model=32, n_heads=4, ff_dim=64)
TINY = {"n_styles": 2, "predictor": SIZES, "audio_encoder_width": 0.125}


def _fit_args(corpus: Path, root_dir: Path, *extra: str) -> list[str]:
    return [
        "fit",
        "-c",
        str(CONF / "expression_tiny.yaml"),
        f"--data.init_args.root={corpus}",
        f"--trainer.default_root_dir={root_dir}",
        *extra,
    ]


def test_examples_windows_and_targets(synthetic_corpus: Path) -> None:
    import random

    import webdataset as wds

    from pctalk.data.schema import decode_sample

    clip = decode_sample(
        next(iter(wds.WebDataset(str(synthetic_corpus / "train-j000-000000.tar"), shardshuffle=False)))
    )
    n = clip.meta.n_frames
    example = clip_example(clip, window=20, rng=random.Random(0), audio="mel")
    assert example["target"].shape == (20, 18) and example["mel"].shape == (20, 1, 80, 16)
    assert example["mask"].all() and example["style"].dtype == torch.int64
    first = clip_example(clip, window=20)
    expected = clip.motion.scale[:20, :, None] * clip.motion.exp[:20, [6, 12, 14, 17, 19, 20]]
    torch.testing.assert_close(first["target"], torch.from_numpy(expected.reshape(20, 18)))
    long = clip_example(clip, window=n + 10, audio="mel", target="all", with_reference=True)
    assert long["target"].shape == (n + 10, 63) and long["mask"].sum() == n  # padded past the end
    assert (
        long["ref"].shape == (3, 256, 256) and long["ref_exp"].shape == (21, 3) and long["exp"].shape == (n + 10, 21, 3)
    )
    with pytest.raises(ValueError, match="no audio_feat"):
        clip_example(clip, 20, audio="feat")
    # only the window is cut: the same as the window of the whole clip's mel windows and frames
    from pctalk.audio.mel import frame_windows

    late = clip_example(clip, window=20, rng=random.Random(3), audio="mel", extras=("raw_audio", "text"))
    whole = frame_windows(torch.from_numpy(np.array(clip.mel)), n)
    match = [s for s in range(n - 19) if torch.equal(whole[s : s + 20], late["mel"])]
    assert match, "the example's mel windows are those of some window of the clip"
    s0 = match[0]
    torch.testing.assert_close(late["raw_audio"], torch.from_numpy(np.array(clip.audio[s0 * 640 : (s0 + 20) * 640])))
    assert late["text"] == clip.meta.extra["text"]
    clip.meta.extra.pop("text")
    with pytest.raises(ValueError, match="--transcripts"):
        clip_example(clip, 20, extras=("text",))


def test_data_module_batches_and_filters(synthetic_corpus: Path) -> None:
    dm = ShardDataModule(
        str(synthetic_corpus), window=20, batch_size=4, audio="mel", emotions=["neutral"], samples_per_epoch=16
    )
    batches = list(dm.train_dataloader())
    assert len(batches) == 4  # 16 samples / 4 per batch, one rank
    assert all(b["target"].shape == (4, 20, 18) and b["mel"].shape == (4, 20, 1, 80, 16) for b in batches)
    assert all(int(e) == 0 for b in batches for e in b["emotion"])  # neutral only
    import webdataset as wds

    from pctalk.data.schema import decode_sample

    val_urls = [str(synthetic_corpus / n) for n in (synthetic_corpus / "val.txt").read_text().split()]
    neutral = {
        c.key for c in map(decode_sample, wds.WebDataset(val_urls, shardshuffle=False)) if c.meta.emotion == "neutral"
    }
    keys = [k for b in dm.val_dataloader() for k in b["key"]]
    assert sorted(keys) == sorted(neutral) and neutral  # every neutral validation clip, once


@pytest.mark.parametrize("workers", [0, 3])
def test_a_stream_started_mid_epoch_yields_the_rest_of_that_epoch(synthetic_corpus: Path, workers: int) -> None:
    """Three workers (the order PyTorch interleaves them in is rotated when the stream restarts mid-epoch) or none:
    an epoch restarted after ``done`` batches yields exactly the epoch's remaining batches, in order."""
    dm = ShardDataModule(str(synthetic_corpus), window=20, batch_size=2, audio="mel", samples_per_epoch=18,
                         num_workers=workers)  # fmt: skip
    loader = dm.train_dataloader()
    assert len(loader) == 9

    def epoch() -> list[tuple[str, ...]]:
        return [(*b["key"], *(f"{float(t.sum()):.4f}" for t in b["target"])) for b in loader]

    first, second = epoch(), epoch()
    assert len(first) == len(second) == 9 and first != second
    for done in (1, 5) if workers else (4,):
        loader.load_state_dict({"epoch": 1, "done": done})
        assert epoch() == second[done:]
    loader.load_state_dict({"epoch": 0, "done": 9})  # saved after the last batch: the next epoch, from its start
    assert epoch() == second
    assert epoch() != second  # and on to epoch 2


def test_a_stream_whose_every_sample_fails_stops_with_the_reason(synthetic_corpus: Path) -> None:
    """The synthetic shards hold no encoder features: asking for them fails on every sample, which must end the
    epoch with the reason rather than warn forever (the stream resamples without end)."""
    dm = ShardDataModule(str(synthetic_corpus), window=20, batch_size=2, audio="feat", samples_per_epoch=4)
    with pytest.raises(RuntimeError, match=r"all failed to load.*no audio_feat\.npy; rebuild the shards"):
        with pytest.warns(UserWarning):
            next(iter(dm.train_dataloader()))


def test_a_split_without_validation_identities_trains_without_validation(
    synthetic_corpus: Path, tmp_path: Path
) -> None:
    """As a MEAD build whose identities are the test ones plus one training speaker: val.txt lists nothing."""
    import shutil

    root = tmp_path / "shards"
    shutil.copytree(synthetic_corpus, root)
    (root / "val.txt").write_text("")
    dm = ShardDataModule(str(root), window=10, batch_size=2, audio="mel", samples_per_epoch=4)
    with pytest.warns(UserWarning, match=r"no validation shards .*Training runs without validation.*--split-file"):
        assert dm.val_dataloader() == []
    trainer = Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_progress_bar=False,
                      default_root_dir=tmp_path, enable_model_summary=False)  # fmt: skip
    with pytest.warns(UserWarning, match="no validation shards"):
        trainer.fit(ExpressionTask(**TINY), datamodule=dm)
    assert trainer.global_step == 2


def test_too_few_shards_for_ranks_and_workers() -> None:
    with pytest.raises(ValueError, match="need at least 8"):
        rank_shards([f"s{i}.tar" for i in range(5)], rank=0, world_size=2, workers=4)
    assert rank_shards(["a", "b", "c", "d"], rank=1, world_size=2) == ["b", "d"]
    assert rank_shards(["a"], rank=1, world_size=2, train=False) == ["a"]  # validation: every rank evaluates


def test_overfits_a_single_batch(synthetic_corpus: Path) -> None:
    import webdataset as wds

    from pctalk.data.pipeline import collate
    from pctalk.data.schema import decode_sample

    seed_everything(0)
    clips = [
        decode_sample(s) for s in wds.WebDataset(str(synthetic_corpus / "train-j000-000000.tar"), shardshuffle=False)
    ]
    batch = collate([clip_example(c, window=20, audio="mel") for c in clips[:2]])
    task = ExpressionTask(**{**TINY, "predictor": PredictorConfig(**{**SIZES.to_dict(), "dropout": 0.0})}, lr=3e-3)
    optimiser = task.configure_optimizers()
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, 300)
    task.train()
    feat = lambda: task.audio_encoder(batch["mel"].flatten(0, 1)).view(2, 20, -1)  # noqa: E731
    losses = []
    for _ in range(300):
        loss = (task.predictor(feat(), batch["style"], batch["target"]) - batch["target"]).abs().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        losses.append(loss.item())
    baseline = batch["target"].abs().mean().item()  # the zero-initialised model's loss
    assert losses[0] == pytest.approx(baseline, rel=1e-4)
    assert min(losses[-10:]) < 0.02 * baseline, (losses[0], losses[-1], baseline)


@pytest.fixture(scope="module")
def trained(synthetic_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny ExpressionTask fitted for one epoch through the CLI; returns its run directory."""
    root = tmp_path_factory.mktemp("expression_run")
    assert main(_fit_args(synthetic_corpus, root)) == 0
    return root


def test_fit_writes_a_checkpoint_and_config(trained: Path) -> None:
    assert (trained / "config.yaml").is_file()
    (ckpt,) = trained.glob("checkpoints/*.ckpt")
    obj = torch.load(ckpt, weights_only=True)
    assert obj["pctalk"]["predictor"]["d_model"] == 32 and obj["pctalk"]["format_version"] == 2
    assert obj["pctalk"]["styles"] == {"0": "synth/cat000", "1": "synth/synth001"}  # the corpus's training speakers
    assert obj["global_step"] == 4  # 16 samples per epoch, 4 per batch, 1 epoch


def test_export_to_the_release_layout_and_back(trained: Path, tmp_path: Path) -> None:
    (ckpt,) = trained.glob("checkpoints/*.ckpt")
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(tmp_path / "release")]) == 0
    lac = load_lac_stage(tmp_path / "release" / "lac.pth")
    encoder = load_audio_encoder(tmp_path / "release" / "audio_encoder.pth")
    task = ExpressionTask(**TINY)
    task.load_state_dict(torch.load(ckpt, weights_only=True)["state_dict"])
    task.eval()
    mel = torch.randn(6, 1, 80, 16)
    torch.testing.assert_close(encoder(mel), task.audio_encoder(mel), atol=0, rtol=0)
    feat = task.audio_encoder(mel)[None]
    torch.testing.assert_close(
        lac.predictor.generate(feat, torch.tensor([1])), task.predictor.generate(feat, torch.tensor([1]))
    )
    assert lac.refiner is None
    assert export(ckpt, tmp_path / "again") == 0


def test_refiner_task_runs_end_to_end(
    trained: Path, synthetic_corpus: Path, liveportrait_weights: Path, tmp_path: Path
) -> None:
    syncnet = liveportrait_weights / "wav2lip" / "lipsync_expert.pth"
    syncnet.parent.mkdir(parents=True)
    torch.save({"state_dict": SyncNet().state_dict(), "global_step": 0}, syncnet)
    (ckpt,) = trained.glob("checkpoints/*.ckpt")
    task = LipRefinerTask(expression=str(ckpt), weights=str(liveportrait_weights), liveportrait_size="tiny", lr=1e-3)
    dm = ShardDataModule(
        str(synthetic_corpus), window=5, batch_size=2, audio="mel", with_reference=True, samples_per_epoch=4
    )
    before = task.refiner.linear.weight.clone()
    samples = SampleLogger(every_n_val_epochs=1, num_samples=1)
    trainer = Trainer(accelerator="cpu", max_steps=2, limit_val_batches=1, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=tmp_path, num_sanity_val_steps=0,
                      callbacks=[samples])  # fmt: skip
    trainer.fit(task, datamodule=dm)
    assert trainer.global_step == 2
    (video,) = tmp_path.glob("samples/*/*.mp4")  # rendered with the task's own LivePortrait
    with av.open(str(video)) as container:
        assert container.streams.video[0].codec_context.width == 128 and container.streams.audio
    assert not torch.equal(task.refiner.linear.weight, before)  # the refiner learned
    assert trainer.callback_metrics["val/sync"] > 0
    saved = torch.load(next(tmp_path.rglob("*.ckpt")), weights_only=True)
    assert not any(k.startswith(("liveportrait.", "syncnet.")) for k in saved["state_dict"])  # frozen parts left out
    out = tmp_path / "release"
    export(next(tmp_path.rglob("*.ckpt")), out)
    assert load_lac_stage(out / "lac.pth").refiner is not None


@pytest.mark.ddp
def test_two_process_ddp_fit_sees_disjoint_keys_and_equal_batches(
    ddp_fit, log_dir: Path, synthetic_corpus: Path
) -> None:
    ddp_fit(
        [
            "-c", str(CONF / "expression_tiny.yaml"), f"--data.init_args.root={synthetic_corpus}",
            "--data.init_args.samples_per_epoch=32", "--trainer.max_epochs=2",
            "--trainer.callbacks+=toy_tasks.KeyRecorder",
        ]
    )  # fmt: skip
    records = [json.loads((log_dir / "keys" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert records[0]["batches"] == records[1]["batches"] == 2 * 4  # 32 samples / (2 ranks x 4) per epoch
    keys = [set(r["keys"]) for r in records]
    assert keys[0] and keys[1] and keys[0].isdisjoint(keys[1])
    assert len(list((log_dir / "checkpoints").glob("*.ckpt"))) >= 1


def _recorded(root: Path) -> list[tuple[tuple[str, ...], tuple[float, ...]]]:
    record = json.loads((root / "keys" / "rank0.json").read_text())
    keys = record["keys"]
    return [(tuple(keys[4 * i : 4 * i + 4]), tuple(w)) for i, w in enumerate(record["windows"])]


@pytest.mark.slow
def test_a_resumed_run_trains_on_exactly_the_batches_of_an_uninterrupted_one(
    synthetic_corpus: Path, tmp_path: Path
) -> None:
    """Two loader workers, 8 batches an epoch, 2 epochs. Epochs differ; a run resumed from a checkpoint saved after
    batch 5 (mid-epoch: the workers' roles are swapped) or after batch 8 (the epoch's end) trains on the same
    batches, same clips and same windows, as the run that was never interrupted, and only those: its step count
    continues from the checkpoint's (its own checkpoints are named by the uninterrupted run's steps)."""
    data = ["--data.init_args.samples_per_epoch=32", "--data.init_args.num_workers=2",
            "--trainer.callbacks+=toy_tasks.KeyRecorder"]  # fmt: skip
    whole = tmp_path / "whole"
    assert main(_fit_args(synthetic_corpus, whole, "--trainer.max_epochs=2", *data)) == 0
    batches = _recorded(whole)
    assert len(batches) == 16 and batches[:8] != batches[8:]  # the second epoch is not a replay of the first
    for stop in (5, 8):
        first, resumed = tmp_path / f"first{stop}", tmp_path / f"resumed{stop}"
        every = ["--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
                 f"--trainer.callbacks.every_n_train_steps={stop}", "--trainer.callbacks.save_top_k=-1"]  # fmt: skip
        assert main(_fit_args(synthetic_corpus, first, f"--trainer.max_steps={stop}", *data, *every)) == 0
        assert _recorded(first) == batches[:stop]
        (ckpt,) = first.rglob(f"*step={stop}.ckpt")
        assert torch.load(ckpt, weights_only=True)["global_step"] == stop
        args = _fit_args(synthetic_corpus, resumed, "--trainer.max_epochs=2", *data, *every, f"--ckpt_path={ckpt}")
        assert main(args) == 0
        assert _recorded(resumed) == batches[stop:], f"resumed after batch {stop}"
        steps = {int(p.stem.split("step=")[1].split("-")[0]) for p in resumed.rglob("*step=*.ckpt")}
        assert steps == set(range(2 * stop, 17, stop)), steps  # 10, 15 after step 5; 16 after step 8


def test_epochs_are_sized_from_the_frames_and_audio_is_one_mode(synthetic_corpus: Path, tmp_path: Path) -> None:
    """An epoch covers the training frames once in windows (``frames.json``), not one window per clip; ``audio:
    auto`` with features in only some roots reads mel windows everywhere (one batch layout); stored features are
    refused for an encoder trained from scratch and for another encoder than the one that made them."""
    from feature_shards import with_audio_features

    from pctalk.audio.encoder import AudioEncoder
    from pctalk.tasks.expression import audio_features

    frames = json.loads((synthetic_corpus / "frames.json").read_text())
    train = (synthetic_corpus / "train.txt").read_text().split()
    total = sum(frames[n] for n in train)
    clips = sum(json.loads((synthetic_corpus / "sizes.json").read_text())[n] for n in train)
    dm = ShardDataModule(str(synthetic_corpus), window=20)
    assert dm.epoch_samples() == -(-total // 20) > clips
    assert ShardDataModule(str(synthetic_corpus), window=20, samples_per_epoch=7).epoch_samples() == 7

    encoder = AudioEncoder()
    torch.save({k: v for k, v in encoder.state_dict().items()}, tmp_path / "encoder.pth")
    features = with_audio_features(synthetic_corpus, tmp_path / "features", tmp_path / "encoder.pth")
    assert ShardDataModule(str(features)).audio_mode() == "feat"
    with pytest.warns(UserWarning, match="only some of the roots"):
        assert ShardDataModule(f"{synthetic_corpus},{features}").audio_mode() == "mel"
    batch = next(iter(ShardDataModule(str(features), window=20, batch_size=2, samples_per_epoch=2).train_dataloader()))
    with pytest.raises(ValueError, match="trains its own audio encoder from scratch"):
        audio_features(batch, AudioEncoder())
    with pytest.raises(ValueError, match=r"not by model\.audio_encoder"):
        audio_features(batch, AudioEncoder().requires_grad_(False))
    frozen = AudioEncoder().requires_grad_(False)
    frozen.load_state_dict(encoder.state_dict())
    assert audio_features(batch, frozen) is batch["audio_feat"]
