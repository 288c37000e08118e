"""Every shipped training config runs through ``pctalk fit`` itself, chained as the README chains them: stage 1's
checkpoint feeds stage 2 (the lip refiner, built by LightningCLI), then EMC and the emotion classifier; the paper
configs at debug sizes on CPU, their debug twins as they are. Pretrained files are random weights in their original
formats under ``pretrained_weights/`` of a fresh working folder, as a new user's."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from conftest import REPO
from pctalk.checkpoints import load_emc_stage, load_lac_stage
from pctalk.cli import main

EXPERIMENTS = REPO / "experiments"
#: a paper config on this CPU: one device, a few steps, small batches, one validation batch, no wandb
CPU = ["--trainer.accelerator=cpu", "--trainer.devices=1", "--trainer.strategy=auto",
       "--trainer.logger=lightning.pytorch.loggers.CSVLogger", "--trainer.logger.save_dir=logs",
       "--trainer.limit_val_batches=1", "--trainer.max_time=null", "--data.init_args.num_workers=0",
       "--data.init_args.batch_size=2", "--data.init_args.samples_per_epoch=4",
       "--trainer.val_check_interval=1.0", "--trainer.check_val_every_n_epoch=1"]  # fmt: skip
SMALL = ["--model.init_args.predictor.d_model=32", "--model.init_args.predictor.ff_dim=64"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working folder with ``pretrained_weights/`` (tiny LivePortrait, Wav2Lip's SyncNet expert, SyncTalk's audio
    encoder with its bare keys, a tiny wav2vec2) in the layouts users download."""
    from random_weights import save_training_weights

    root = tmp_path_factory.mktemp("user")
    save_training_weights(root / "pretrained_weights")
    return root


@pytest.fixture
def in_workdir(workdir: Path) -> Iterator[Path]:
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        yield workdir
    finally:
        os.chdir(cwd)


def fit(*args: str) -> None:
    assert main(["fit", *args]) == 0


def test_the_debug_configs_chain_as_the_readme_shows(in_workdir: Path) -> None:
    debug = lambda stage: str(EXPERIMENTS / stage)  # noqa: E731
    fit("-c", debug("lac/expression_debug.yaml"), "--trainer.max_epochs=1")
    stage1 = Path("runs/debug/lac_expression/checkpoints/last.ckpt")
    assert stage1.is_file()
    # stage 2 from its config's own defaults: the stage-1 checkpoint above and pretrained_weights/
    fit("-c", debug("lac/refiner_debug.yaml"), "--model.init_args.liveportrait_size=tiny", "--trainer.max_steps=2")
    stage2 = Path("runs/debug/lac_refiner/checkpoints/last.ckpt")
    assert torch.load(stage2, weights_only=True)["global_step"] == 2
    fit("-c", debug("lac/refiner_debug.yaml"), "--model.init_args.liveportrait_size=tiny", "--trainer.max_steps=3",
        f"--ckpt_path={stage2}")  # fmt: skip  # resumes the refiner from its own checkpoint
    assert torch.load(stage2, weights_only=True)["global_step"] == 3
    refined = load_lac_stage(stage2)
    assert refined.refiner is not None and refined.info.styles  # the style names came with the data
    # stage 2 also starts from a release lac.pth (its audio_encoder.pth beside it)
    assert main(["export", "--checkpoint", str(stage1), "--out", "release/stage1"]) == 0
    fit("-c", debug("lac/refiner_debug.yaml"), "--model.init_args.liveportrait_size=tiny", "--trainer.max_steps=1",
        "--model.init_args.expression=release/stage1/lac.pth",
        "--trainer.default_root_dir=runs/from_release")  # fmt: skip
    assert load_lac_stage("runs/from_release/checkpoints/last.ckpt").refiner is not None
    fit("-c", debug("emc/emotion_debug.yaml"), "--trainer.max_epochs=1")
    emc = load_emc_stage("runs/debug/emc/checkpoints/last.ckpt")
    assert emc.info.kind == "emc" and "video" in emc.sources
    fit("-c", debug("eval/emotion_classifier_debug.yaml"), "--trainer.max_epochs=1")
    assert Path("runs/debug/emotion_classifier/emotion_fan.pth.tar").is_file()

    # the README's next steps: export, then generate from the exports
    assert main(["export", "--checkpoint", str(stage2), "--out", "release/lac"]) == 0
    assert main(["export", "--checkpoint", "runs/debug/emc/checkpoints/last.ckpt", "--out", "release/emc"]) == 0
    assert main(["generate", "--text", "Hello there.", "--lac", "release/lac/lac.pth", "--emc", "release/emc/emc.pth",
                 "--emotion", "happy:lips:0.6", "--keypoint-video", "kp.mp4", "--no-progress"]) == 0  # fmt: skip


@pytest.mark.slow
def test_the_paper_configs_run_at_debug_sizes(in_workdir: Path, synthetic_corpus: Path) -> None:
    data = [f"--data.init_args.root={synthetic_corpus}", "--data.init_args.window=10"]
    lac = EXPERIMENTS / "lac"
    fit("-c", str(lac / "expression.yaml"), *CPU, *SMALL, *data, "--model.init_args.n_styles=2",
        "--trainer.max_steps=2")  # fmt: skip
    stage1 = Path("runs/lac_expression/checkpoints/last.ckpt")  # the path refiner.yaml and the README name
    assert stage1.is_file()
    assert torch.get_float32_matmul_precision() == "high"  # the config's MatmulPrecision (TF32 on GPUs)
    torch.set_float32_matmul_precision("highest")
    saved = torch.load(stage1, weights_only=True)
    assert saved["hyper_parameters"] and all(v.dtype == torch.float32 for v in saved["state_dict"].values()
                                             if v.is_floating_point())  # fmt: skip  # bf16-mixed keeps fp32 weights
    fit("-c", str(lac / "expression.yaml"), "-c", str(lac / "ablation" / "all_keypoints.yaml"), *CPU, *SMALL, *data,
        "--model.init_args.n_styles=2", "--trainer.max_steps=2")  # fmt: skip
    assert load_lac_stage("runs/ablation/all_keypoints/checkpoints/last.ckpt").info.target == "all"
    refiner = [*CPU, f"--data.init_args.root={synthetic_corpus}", "--model.init_args.liveportrait_size=tiny",
               "--trainer.max_steps=2", "--trainer.precision=32-true"]  # fmt: skip  # tiny 3-D convs: no CPU bf16
    fit("-c", str(lac / "refiner.yaml"), *refiner)
    assert load_lac_stage("runs/lac_refiner/checkpoints/last.ckpt").refiner is not None
    fit("-c", str(lac / "refiner.yaml"), "-c", str(lac / "ablation" / "refiner_no_augmentation.yaml"), *refiner)
    emc = EXPERIMENTS / "emc"
    emotion = [*CPU, *SMALL, *data, "--model.init_args.n_styles=2", "--trainer.max_steps=2"]
    fit("-c", str(emc / "emotion.yaml"), *emotion)
    fit("-c", str(emc / "emotion.yaml"), "-c", str(emc / "emotion_audio.yaml"), *emotion)
    assert set(load_emc_stage("runs/emc_audio/checkpoints/last.ckpt").sources) == {"audio", "video"}
    fit("-c", str(EXPERIMENTS / "quickstart" / "expression.yaml"), *CPU, *data, "--trainer.max_steps=2",
        "--model.init_args.n_styles=2", "--trainer.check_val_every_n_epoch=1")  # fmt: skip
    assert Path("outputs/quickstart/checkpoints/last.ckpt").is_file()


def test_the_target_is_one_value_for_model_and_data(in_workdir: Path, synthetic_corpus: Path) -> None:
    """``target`` is the model's; the data module takes it (so no config can train lips on all-keypoint targets)."""
    from pctalk.cli import lightning_cli

    args = [
        "-c",
        str(EXPERIMENTS / "lac" / "expression_debug.yaml"),
        "-c",
        str(EXPERIMENTS / "lac" / "ablation" / "all_keypoints.yaml"),
        f"--data.init_args.root={synthetic_corpus}",
    ]
    cli = lightning_cli(args, run=False)
    assert cli.model.target == "all" and cli.datamodule.target == "all"
    with pytest.raises(SystemExit):  # the data module's copy is not an option of its own
        lightning_cli([*args, "--data.init_args.target=lips"], run=False)


def test_help_documents_every_size(capsys: pytest.CaptureFixture[str]) -> None:
    for task, sizes in (("ExpressionTask", "PredictorConfig"), ("EmotionTask", "EmotionConfig")):
        with pytest.raises(SystemExit) as done:
            main(["fit", "--model.help", f"pctalk.tasks.{task}"])
        assert done.value.code == 0
        out = capsys.readouterr().out
        assert "--model.predictor.d_model" in out and "Token width (paper and official release: 512)" in out, sizes
        assert "Adam learning rate" in out
    assert "Layers of the emotion-conditioning decoder" in out


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.ddp
@pytest.mark.slow
def test_every_task_and_configuration_trains_under_two_process_ddp(workdir: Path, synthetic_corpus: Path) -> None:
    """Every task in every source / feature configuration the configs offer, under 2-process CPU DDP (gloo), which
    refuses a parameter that does not reach the loss: the paper configs at debug sizes, stored audio features with
    the frozen encoder, every learned emotion source, the refiner from the DDP-trained stage 1, the classifier. One
    DDP job of two externally launched ranks runs them all (``tests/ddp_matrix.py``)."""
    import json
    import subprocess
    import sys

    from feature_shards import with_audio_features

    from conftest import TESTS, offline_env

    out = workdir / "ddp"
    features = with_audio_features(
        synthetic_corpus, out / "feature_shards", workdir / "pretrained_weights/audio/audio_visual_encoder.pth"
    )
    lac, emc = EXPERIMENTS / "lac", EXPERIMENTS / "emc"
    steps = ["--trainer.max_steps=2", "--trainer.limit_val_batches=1", "--trainer.max_time=null",
             "--trainer.logger=lightning.pytorch.loggers.CSVLogger", "--data.init_args.num_workers=0",
             "--data.init_args.batch_size=2", "--data.init_args.samples_per_epoch=8",
             "--trainer.val_check_interval=1.0", "--trainer.check_val_every_n_epoch=1"]  # fmt: skip
    small = [*SMALL, "--data.init_args.window=10", "--model.init_args.n_styles=2"]
    root = lambda name, folder=synthetic_corpus: [f"--data.init_args.root={folder}",  # noqa: E731
                                                  f"--trainer.default_root_dir={out / name}",
                                                  f"--trainer.logger.save_dir={out / name}"]  # fmt: skip
    runs = {
        "expression": ["-c", str(lac / "expression.yaml"), *small, *steps, *root("expression")],
        "expression_scratch_all": ["-c", str(lac / "expression_debug.yaml"), "-c",
                                   str(lac / "ablation" / "all_keypoints.yaml"), *steps, *root("scratch_all")],
        "expression_features": ["-c", str(lac / "expression.yaml"), *small, *steps, *root("features", features)],
        "refiner": ["-c", str(lac / "refiner.yaml"), *steps, *root("refiner", f"{synthetic_corpus},{features}"),
                    f"--model.init_args.expression={out / 'expression/checkpoints/last.ckpt'}",
                    "--model.init_args.liveportrait_size=tiny", "--trainer.precision=32-true"],  # tiny 3-D convs
        "emotion_label": ["-c", str(emc / "emotion_debug.yaml"), "--model.init_args.sources=[label]",
                          "--data.init_args.extras=[]", *steps, *root("emotion_label")],
        "emotion_every_source": ["-c", str(emc / "emotion.yaml"), "-c", str(emc / "emotion_audio.yaml"), *small,
                                 "--model.init_args.sources=[label,audio,text,video]",
                                 "--data.init_args.extras=[raw_audio,reference_exp,text]", *steps,
                                 *root("emotion_every_source")],
        "emotion_features": ["-c", str(emc / "emotion.yaml"), *small, *steps, *root("emotion_features", features)],
        "classifier": ["-c", str(EXPERIMENTS / "eval" / "emotion_classifier_debug.yaml"), "--trainer.max_steps=2",
                       f"--trainer.default_root_dir={out / 'classifier'}"],
    }  # fmt: skip
    spec = out / "runs.json"
    spec.write_text(json.dumps(runs))
    port = str(_free_port())
    logs = [out / f"rank{rank}.log" for rank in (0, 1)]
    procs = [
        subprocess.Popen(
            [sys.executable, str(TESTS / "ddp_matrix.py"), str(spec), str(out / "results")],
            cwd=workdir,
            env=offline_env(
                {
                    "MASTER_ADDR": "127.0.0.1",
                    "MASTER_PORT": port,
                    "WORLD_SIZE": "2",
                    "NODE_RANK": "0",
                    "RANK": str(rank),
                    "LOCAL_RANK": str(rank),
                }
            ),
            stdout=logs[rank].open("w"),
            stderr=subprocess.STDOUT,
        )
        for rank in (0, 1)
    ]
    try:
        codes = [p.wait(timeout=480) for p in procs]
    finally:
        for p in procs:
            p.kill()
    logs = [log.read_text() for log in logs]
    assert codes == [0, 0], logs[0][-4000:] + logs[1][-4000:]
    for rank in (0, 1):
        results = json.loads((out / "results" / f"rank{rank}.json").read_text())
        assert set(results) == set(runs), logs[rank][-4000:]
        failed = {name: r["trace"] for name, r in results.items() if not r["ok"]}
        assert not failed, "\n".join(f"--- {n} (rank {rank}) ---\n{t}" for n, t in failed.items())
        assert all(r["steps"] == 2 and r["world_size"] == 2 for r in results.values()), results
    assert load_lac_stage(out / "refiner/checkpoints/last.ckpt").refiner is not None
