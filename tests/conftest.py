"""Shared test fixtures: offline environment, temporary log dirs, CLI subprocesses and 2-process CPU DDP runs."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import torch

# librosa (the mel oracle of tests/test_mel.py) compiles its numba kernels when first imported: about 20 s on a fresh
# environment such as CI's, 12 s without LLVM's optimisation passes, which change no result of the oracle.
os.environ.setdefault("NUMBA_OPT", "0")

if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test` (pytest -n 2): one torch thread a worker, so two workers keep
    torch.set_num_threads(1)  # both cores busy without four threads fighting over them

#: The longest files, started first (``make test`` keeps this order: ``--dist loadfile --no-loadscope-reorder``), so
#: that they run beside the many short files instead of alone at the end.
LONGEST_FIRST = (
    "test_rehearsal.py",
    "test_eval_runner.py",
    "test_data_prep_build.py",
    "test_slurm.py",
    "test_lac_training.py",
    "test_eval_streaming.py",
    "test_fit_configs.py",
    "test_gpu_check.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
CONF = TESTS / "conf"

#: Trainer options that turn any ``fit`` into a 2-process CPU DDP run over gloo.
DDP_ARGS = ("--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.strategy=ddp")


def offline_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for pctalk subprocesses: offline, no wandb, test helpers importable, one thread each."""
    env = dict(os.environ)
    env.update(
        WANDB_MODE="disabled",
        HF_HUB_OFFLINE="1",
        PYTHONUNBUFFERED="1",
        OMP_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join([str(TESTS), str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    )
    env.update(extra or {})
    return env


def tiny_fit(config: str, corpus: Path, run: Path) -> Path:
    """``pctalk fit -c tests/conf/CONFIG`` on ``corpus`` into ``run``, in process; returns its one checkpoint."""
    from pctalk.cli import main

    assert main(["fit", "-c", str(CONF / config), f"--data.init_args.root={corpus}",
                 f"--trainer.default_root_dir={run}"]) == 0  # fmt: skip
    (ckpt,) = run.glob("checkpoints/*.ckpt")
    return ckpt


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def seeded() -> int:
    """Seed torch's global generator; tests that build random-weight networks use it."""
    torch.manual_seed(0)
    return 0


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    """A temporary ``default_root_dir`` for trainer runs."""
    path = tmp_path / "logs"
    path.mkdir()
    return path


RunCli = Callable[..., subprocess.CompletedProcess]


@pytest.fixture
def run_cli(tmp_path: Path) -> RunCli:
    """Run ``python -m MODULE ARGS`` in a subprocess (as a user would) and fail the test, with its output, on error."""

    def run(
        args: Sequence[str],
        module: str = "pctalk",
        timeout: float = 300,
        check: bool = True,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", module, *map(str, args)]
        proc = subprocess.run(cmd, cwd=tmp_path, env=offline_env(env), capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            pytest.fail(
                f"{' '.join(cmd)} exited {proc.returncode}\n--- stdout ---\n{proc.stdout[-6000:]}"
                f"\n--- stderr ---\n{proc.stderr[-6000:]}"
            )
        return proc

    return run


@pytest.fixture
def ddp_fit(run_cli: RunCli, log_dir: Path) -> Callable[..., subprocess.CompletedProcess]:
    """``pctalk fit ARGS`` as a 2-process CPU DDP run (gloo) writing into ``log_dir``."""

    def fit(args: Sequence[str], timeout: float = 600) -> subprocess.CompletedProcess:
        return run_cli(["fit", *args, *DDP_ARGS, f"--trainer.default_root_dir={log_dir}"], timeout=timeout)

    return fit


@pytest.fixture
def tiny_liveportrait(seeded: int):
    """A frozen LivePortrait at tiny sizes with seeded random weights (64x64 crops render at 128x128)."""
    from pctalk.keypoints.config import LivePortraitConfig
    from pctalk.keypoints.liveportrait import LivePortrait
    from random_weights import seeded_state_dict

    model = LivePortrait(LivePortraitConfig.tiny())
    model.load_state_dict(seeded_state_dict(model.state_dict(), 7))
    return model


@pytest.fixture
def liveportrait_weights(tmp_path: Path, tiny_liveportrait) -> Path:
    """The tiny model saved in LivePortrait's public checkpoint layout; returns the weights root."""
    from pctalk.keypoints.liveportrait import save_liveportrait

    root = tmp_path / "pretrained_weights"
    save_liveportrait(tiny_liveportrait, root)
    return root


@pytest.fixture(scope="session")
def synthetic_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic corpus (32 clips, 4 identities: 2 train, 1 val, 1 test) shared by the training tests."""
    from pctalk.data.synthetic import synth

    out = tmp_path_factory.mktemp("synthetic_corpus")
    synth(out, clips=32, identities=4, seed=1, progress=False)
    return out


@pytest.fixture
def release(tmp_path: Path, seeded: int) -> Path:
    """Tiny random LAC (predictor + refiner) and EMC in pctalk's release layout, with non-zero outputs."""
    from pctalk.audio.encoder import AudioEncoder
    from pctalk.checkpoints import EMCStage, LACStage, save_release
    from pctalk.models import ExpressionPredictor, LipRefiner
    from pctalk.models.config import EmotionConfig, PredictorConfig
    from pctalk.models.emotion_predictor import EmotionPredictor

    folder = tmp_path / "release"
    encoder = AudioEncoder(0.125)
    predictor = ExpressionPredictor(3, audio_dim=64, config=PredictorConfig(d_model=32, n_heads=4, ff_dim=64))
    torch.nn.init.normal_(predictor.vertice_map_r.weight, std=0.05)
    refiner = LipRefiner(18, 64)
    torch.nn.init.normal_(refiner.linear.weight, std=0.01)
    save_release(LACStage(predictor, encoder, refiner), folder)
    emotion = EmotionPredictor(3, 64, EmotionConfig(d_model=32, n_heads=4, ff_dim=64, emotion_layers=1))
    torch.nn.init.normal_(emotion.emotion_decoder.output_map.weight, std=0.5)
    torch.nn.init.normal_(emotion.decoder.vertice_map_r.weight, std=0.05)
    save_release(EMCStage(emotion, encoder), folder)
    return folder


@pytest.fixture
def pipeline(release: Path, liveportrait_weights: Path):
    """The inference pipeline on the tiny release and tiny LivePortrait (OpenCV cropper: no landmarks)."""
    from pctalk.inference import TalkingFacePipeline

    return TalkingFacePipeline.from_checkpoints(
        release / "lac.pth", release / "emc.pth", weights=liveportrait_weights, cropper="opencv",
        liveportrait_size="tiny", progress=False,
    )  # fmt: skip


@pytest.fixture
def astronaut_path(tmp_path: Path) -> Path:
    """scikit-image's astronaut photo as a PNG."""
    import cv2
    from skimage import data

    path = tmp_path / "astronaut.png"
    cv2.imwrite(str(path), data.astronaut()[..., ::-1])
    return path
