"""Wav2Lip's mel recipe against the librosa-based reference, the per-frame windows, and the length rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pctalk.audio.mel import (
    audio_windows,
    fit_to_frames,
    frame_windows,
    melspectrogram,
    num_frames,
    samples_per_frame,
    window_starts,
)


def reference_melspectrogram(wav: np.ndarray, pad_mode: str = "constant") -> np.ndarray:
    """Wav2Lip's audio.melspectrogram with its hparams, written against librosa as Wav2Lip does."""
    import librosa
    from scipy import signal

    y = signal.lfilter([1, -0.97], [1], wav)
    stft = librosa.stft(y=y, n_fft=800, hop_length=200, win_length=800, pad_mode=pad_mode)
    basis = librosa.filters.mel(sr=16000, n_fft=800, n_mels=80, fmin=55, fmax=7600)
    db = 20 * np.log10(np.maximum(1e-5, np.dot(basis, np.abs(stft)))) - 20
    return np.clip(8 * ((db + 100) / 100) - 4, -4, 4)


@pytest.fixture(scope="module")
def speech() -> torch.Tensor:
    from pctalk.audio.tts import synthesize

    return synthesize("The duck ate too many bees. Then it flew away!").wav


@pytest.mark.parametrize("pad_mode", ["constant", "reflect"])
def test_melspectrogram_equals_the_reference(speech: torch.Tensor, pad_mode: str) -> None:
    ours = melspectrogram(speech, pad_mode=pad_mode)
    ref = reference_melspectrogram(speech.numpy(), pad_mode=pad_mode)
    assert ours.shape == ref.shape == (80, len(speech) // 200 + 1)
    assert ours.dtype == torch.float32
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-4, rtol=0)


def test_pad_modes_differ_only_at_the_edges(speech: torch.Tensor) -> None:
    a, b = melspectrogram(speech, "constant"), melspectrogram(speech, "reflect")
    assert not torch.allclose(a[:, :2], b[:, :2])
    torch.testing.assert_close(a[:, 3:-3], b[:, 3:-3])


def test_melspectrogram_is_batched(speech: torch.Tensor) -> None:
    batch = torch.stack([speech, speech.flip(0) * 0.5])
    out = melspectrogram(batch)
    assert out.shape == (2, 80, len(speech) // 200 + 1)
    torch.testing.assert_close(out[0], melspectrogram(speech))
    torch.testing.assert_close(out[1], melspectrogram(speech.flip(0) * 0.5))


def test_silence_is_the_floor() -> None:
    assert torch.all(melspectrogram(torch.zeros(3200)) == -4.0)


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="empty"):
        melspectrogram(torch.zeros(0))
    with pytest.raises(ValueError, match=r"\(N,\) or \(B, N\)"):
        melspectrogram(torch.zeros(1, 2, 3))
    with pytest.raises(ValueError, match="pad_mode"):
        melspectrogram(torch.zeros(1000), pad_mode="edge")


def test_window_starts_follow_wav2lip() -> None:
    starts = window_starts(1000)
    assert starts.tolist() == [int(80.0 * (i / 25.0)) for i in range(1000)]
    assert starts[:6].tolist() == [0, 3, 6, 9, 12, 16]


def test_windows_at_the_boundaries() -> None:
    mel = torch.arange(80 * 50, dtype=torch.float32).reshape(80, 50)
    windows = frame_windows(mel, n_frames=15)
    assert windows.shape == (15, 1, 80, 16)
    torch.testing.assert_close(windows[0, 0], mel[:, 0:16])  # first frame
    torch.testing.assert_close(windows[5, 0], mel[:, 16:32])  # int(80 * 5 / 25) = 16
    last = windows[14, 0]  # starts at int(80 * 14 / 25) = 44: 6 real columns, then the last repeated
    torch.testing.assert_close(last[:, :6], mel[:, 44:50])
    torch.testing.assert_close(last[:, 6:], mel[:, 49:50].expand(80, 10))


def test_clip_shorter_than_one_window() -> None:
    mel = torch.randn(80, 5)
    windows = frame_windows(mel, n_frames=2)
    torch.testing.assert_close(windows[0, 0, :, :5], mel)
    torch.testing.assert_close(windows[0, 0, :, 5:], mel[:, 4:5].expand(80, 11))
    torch.testing.assert_close(windows[1, 0, :, :2], mel[:, 3:5])


def test_windows_are_batched() -> None:
    mel = torch.randn(3, 80, 40)
    windows = frame_windows(mel, n_frames=10)
    assert windows.shape == (3, 10, 1, 80, 16)
    for b in range(3):
        torch.testing.assert_close(windows[b], frame_windows(mel[b], 10))


def test_window_errors() -> None:
    with pytest.raises(ValueError, match=r"\(80, M\)"):
        frame_windows(torch.zeros(40, 10), 3)
    with pytest.raises(ValueError, match="empty"):
        frame_windows(torch.zeros(80, 0), 3)


def test_the_length_rule() -> None:
    assert samples_per_frame() == 640
    assert num_frames(16000) == 25
    assert num_frames(16639) == 25  # a partial frame is dropped
    assert num_frames(639) == 0
    wav = torch.arange(1000.0)
    assert fit_to_frames(wav, 1).tolist() == wav[:640].tolist()  # trimmed
    padded = fit_to_frames(wav, 2)
    assert len(padded) == 1280 and padded[1000:].eq(0).all() and padded[:1000].equal(wav)


def test_audio_windows_end_to_end(speech: torch.Tensor) -> None:
    n = num_frames(len(speech))
    windows = audio_windows(speech)
    assert windows.shape == (n, 1, 80, 16)
    expected = frame_windows(melspectrogram(fit_to_frames(speech, n)), n)
    torch.testing.assert_close(windows, expected)
    assert audio_windows(speech, n_frames=n + 30).shape == (n + 30, 1, 80, 16)  # video longer than the audio
    with pytest.raises(ValueError, match="shorter than one video frame"):
        audio_windows(torch.zeros(100))
