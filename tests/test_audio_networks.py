"""The audio encoder and the SyncNet expert: every accepted checkpoint layout, and a sync loss that trains."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from pctalk.audio.encoder import AudioEncoder, load_audio_encoder
from pctalk.audio.syncnet import SyncNet, face_input, load_syncnet, sync_loss
from pctalk.weights import CheckpointKeyError


def _randomise_batchnorm(net: torch.nn.Module) -> torch.nn.Module:
    """Give BatchNorm layers non-trivial running statistics, as trained checkpoints have."""
    g = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return net.eval()


@pytest.fixture
def encoder(seeded: int) -> AudioEncoder:
    return _randomise_batchnorm(AudioEncoder())


def test_encoder_shapes(encoder: AudioEncoder) -> None:
    assert encoder(torch.randn(3, 1, 80, 16)).shape == (3, 512)
    assert encoder.encode(torch.randn(2, 7, 1, 80, 16), batch_size=4).shape == (2, 7, 512)
    with pytest.raises(ValueError, match=r"\(B, 1, 80, 16\)"):
        encoder(torch.randn(3, 80, 16))


def test_encode_bf16_is_close_to_fp32(encoder: AudioEncoder) -> None:
    windows = torch.randn(20, 1, 80, 16)
    exact = encoder.encode(windows)
    fast = encoder.encode(windows, precision="bf16")
    assert fast.dtype == torch.float32
    assert (fast - exact).norm() / exact.norm() < 0.02


def _synctalk_layout(encoder: AudioEncoder) -> dict:
    """SyncTalk's audio_visual_encoder.pth: the conv stack's state dict with bare keys."""
    return encoder.audio_encoder.state_dict()


def _prefixed_layout(encoder: AudioEncoder) -> dict:
    """The same keys under ``audio_encoder.`` (PC-Talk release, pctalk)."""
    return encoder.state_dict()


def _expert_layout(encoder: AudioEncoder) -> dict:
    """Wav2Lip's lipsync_expert.pth: a full SyncNet under state_dict, with training bookkeeping."""
    net = SyncNet()
    net.audio_encoder.load_state_dict(encoder.audio_encoder.state_dict())
    return {"state_dict": net.state_dict(), "optimizer": {}, "global_step": 1000, "global_epoch": 3}


@pytest.mark.parametrize("layout", [_synctalk_layout, _prefixed_layout, _expert_layout])
def test_encoder_loads_every_layout(tmp_path: Path, encoder: AudioEncoder, layout) -> None:
    path = tmp_path / "encoder.pth"
    torch.save(layout(encoder), path)
    loaded = load_audio_encoder(path)
    assert not loaded.training
    windows = torch.randn(4, 1, 80, 16)
    torch.testing.assert_close(loaded(windows), encoder(windows), rtol=0, atol=0)


def test_encoder_wrong_keys_are_listed(tmp_path: Path, encoder: AudioEncoder) -> None:
    state = _synctalk_layout(encoder)
    state.pop("13.conv_block.0.bias")
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(CheckpointKeyError, match=r"audio_encoder\.13\.conv_block\.0\.bias"):
        load_audio_encoder(tmp_path / "bad.pth")


@pytest.fixture
def syncnet(seeded: int) -> SyncNet:
    return _randomise_batchnorm(SyncNet())


@pytest.mark.parametrize("ddp_prefix", ["", "module."])
def test_syncnet_loads_lipsync_expert_layout(tmp_path: Path, syncnet: SyncNet, ddp_prefix: str) -> None:
    state = {ddp_prefix + k: v for k, v in syncnet.state_dict().items()}
    torch.save(
        {"state_dict": state, "optimizer": {"state": {}}, "global_step": 5, "global_epoch": 1}, tmp_path / "e.pth"
    )
    loaded = load_syncnet(tmp_path / "e.pth")
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    mel, faces = torch.randn(2, 1, 80, 16), torch.rand(2, 15, 48, 96)
    for ours, theirs in zip(loaded(mel, faces), syncnet(mel, faces)):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_face_input_takes_the_lower_half_in_bgr() -> None:
    frames = torch.zeros(1, 5, 3, 96, 96)
    frames[:, :, 0, 48:] = 1.0  # red lower half
    frames[:, 2, 1, :48] = 1.0  # green upper half of frame 2: must be dropped
    faces = face_input(frames)
    assert faces.shape == (1, 15, 48, 96)
    for t in range(5):
        assert faces[0, 3 * t + 2].eq(1).all()  # red is the third channel in BGR
        assert faces[0, 3 * t : 3 * t + 2].eq(0).all()
    assert face_input(torch.rand(2, 5, 3, 256, 256)).shape == (2, 15, 48, 96)
    with pytest.raises(ValueError, match=r"\(B, 5, 3, H, W\)"):
        face_input(torch.rand(2, 4, 3, 96, 96))


def test_sync_loss_is_differentiable_in_the_frames(syncnet: SyncNet) -> None:
    frames = torch.rand(2, 5, 3, 128, 128, requires_grad=True)
    loss = sync_loss(syncnet, frames, torch.randn(2, 1, 80, 16))
    assert loss.ndim == 0 and loss.item() > 0
    loss.backward()
    assert frames.grad is not None and frames.grad[..., 64:, :].abs().sum() > 0
    assert frames.grad[..., :64, :].abs().sum() == 0  # the upper half is not seen


def test_sync_loss_is_wav2lips_bce_and_stays_fp32_under_autocast(syncnet: SyncNet) -> None:
    """Wav2Lip's loss is ``BCE(cos, 1)``; under mixed precision it is computed in fp32 (CUDA autocast refuses
    ``F.binary_cross_entropy``), so a bf16 run gives the fp32 value."""
    frames, mel = torch.rand(3, 5, 3, 96, 96), torch.randn(3, 1, 80, 16)
    p = syncnet.sync_probability(frames, mel).clamp(1e-7, 1 - 1e-7)
    reference = F.binary_cross_entropy(p, torch.ones_like(p))
    assert sync_loss(syncnet, frames, mel).item() == pytest.approx(reference.item(), rel=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = sync_loss(syncnet, frames, mel)
        assert syncnet(mel, face_input(frames))[0].dtype == torch.bfloat16  # autocast is on around it
    assert mixed.dtype == torch.float32
    assert mixed.item() == pytest.approx(reference.item(), rel=1e-6)


def _recalibrate_batch_norm(net: torch.nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Replace BatchNorm's running statistics, which lag far behind after a few steps, by the exact averages over
    ``batches`` (standard BN recalibration before evaluating a briefly trained network)."""
    norms = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    net.train()
    with torch.no_grad():
        for clips, windows in batches:
            net.sync_probability(clips, windows)


@pytest.mark.slow
def test_sync_loss_decreases_when_the_expert_learns_aligned_pairs(seeded: int) -> None:
    """Faces whose mouth opens with the loudness of real speech: a few steps on aligned vs shifted pairs teach the
    expert, so the sync loss on aligned pairs falls and aligned pairs score above shifted ones."""
    from skimage import data, transform

    from pctalk.audio.loudness import frame_loudness
    from pctalk.audio.mel import audio_windows, num_frames
    from pctalk.audio.tts import synthesize

    speech = synthesize("The duck ate too many bees. Then it flew away over the lake, singing loudly!").wav
    n = num_frames(len(speech))
    windows, loudness = audio_windows(speech), frame_loudness(speech, n)
    openness = ((loudness + 60) / 60).clamp(0, 1)
    face = torch.from_numpy(transform.resize(data.astronaut()[30:230, 140:340], (96, 96))).permute(2, 0, 1).float()
    yy, xx = torch.meshgrid(torch.arange(96.0), torch.arange(96.0), indexing="ij")
    frames = face.expand(n, 3, 96, 96).clone()
    for i, o in enumerate(openness.tolist()):
        frames[i, :, ((xx - 48) / 18) ** 2 + ((yy - 72) / (1 + 14 * o)) ** 2 <= 1] = 0.05  # the mouth
    starts = torch.arange(0, n - 5, 12)
    clips = torch.stack([frames[s : s + 5] for s in starts])
    aligned, shifted = windows[starts], windows[(starts + 15) % (n - 5)]

    net = SyncNet()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)

    def measure() -> tuple[float, float]:
        with torch.no_grad():
            net.eval()  # running statistics
            gap = (net.sync_probability(clips, aligned) - net.sync_probability(clips, shifted)).mean().item()
            net.train()  # batch statistics
            train_mode_loss = net.sync_loss(clips, aligned).item()
        return train_mode_loss, gap

    before = measure()
    for _ in range(15):
        net.train()
        p_in = net.sync_probability(clips, aligned).clamp(1e-7, 1 - 1e-7)
        p_out = net.sync_probability(clips, shifted).clamp(1e-7, 1 - 1e-7)
        loss = F.binary_cross_entropy(p_in, torch.ones_like(p_in)) + F.binary_cross_entropy(
            p_out, torch.zeros_like(p_out)
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    _recalibrate_batch_norm(net, [(clips, aligned), (clips, shifted)])
    after = measure()
    assert after[0] < 0.5 * before[0]  # the sync loss on aligned pairs (batch statistics)
    assert after[1] > 0.5 and before[1] < 0.1  # with running statistics, aligned pairs now score above shifted ones
