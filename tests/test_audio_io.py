"""Reading audio from every container users bring, and the errors for files that cannot drive a face."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from pctalk.audio import AudioLoadError, SilentAudioError, ensure_audible, load_audio
from pctalk.media import write_audio, write_video


def _sine(freq: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    wav = amplitude * np.sin(2 * np.pi * freq * t)
    wav[-rate // 20 :] *= np.linspace(1, 0, rate // 20)  # fade out: no codec ringing at a hard stop
    return wav.astype(np.float32)


def _peak_frequency(wav: torch.Tensor, rate: int = 16000) -> float:
    spectrum = np.abs(np.fft.rfft(wav.numpy()))
    return float(np.argmax(spectrum) * rate / len(wav))


@pytest.mark.parametrize("ext", [".wav", ".flac", ".mp3", ".m4a"])
def test_audio_formats_load_as_16k_mono(tmp_path: Path, ext: str) -> None:
    path = write_audio(tmp_path / f"tone{ext}", _sine(440, 2.0, 44100), 44100)
    wav = load_audio(path)
    assert wav.dtype == torch.float32 and wav.ndim == 1
    assert abs(len(wav) - 32000) <= 1200  # mp3/aac add encoder delay and padding
    assert _peak_frequency(wav) == pytest.approx(440, abs=2)
    assert 0.4 < float(wav.abs().max()) <= 0.6


def test_stereo_is_averaged_to_mono(tmp_path: Path) -> None:
    left = _sine(300, 1.0, 16000)
    path = tmp_path / "stereo.wav"
    soundfile.write(path, np.stack([left, -left], axis=1), 16000)
    assert float(load_audio(path).abs().max()) < 1e-4  # opposite channels cancel
    soundfile.write(path, np.stack([left, left], axis=1), 16000)
    np.testing.assert_allclose(load_audio(path).numpy(), left, atol=1e-4)


@pytest.mark.parametrize("ext", [".mp4", ".mov"])
def test_audio_track_of_a_video(tmp_path: Path, ext: str) -> None:
    frames = np.full((25, 32, 32, 3), 128, np.uint8)
    path = write_video(tmp_path / f"talk{ext}", frames, fps=25, audio=_sine(200, 1.0, 16000), sample_rate=16000)
    wav = load_audio(path)
    assert abs(len(wav) - 16000) <= 1100
    assert _peak_frequency(wav) == pytest.approx(200, abs=2)


def test_resampling_keeps_the_pitch(tmp_path: Path) -> None:
    path = write_audio(tmp_path / "a.wav", _sine(1000, 1.0, 48000), 48000)
    wav = load_audio(path, sample_rate=22050)
    assert len(wav) == 22050
    assert _peak_frequency(wav, 22050) == pytest.approx(1000, abs=2)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"absent\.wav"):
        load_audio(tmp_path / "absent.wav")


@pytest.mark.parametrize("name", ["corrupt.wav", "corrupt.mp3", "corrupt.mp4"])
def test_corrupt_file_names_the_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"RIFF\x00\x00garbage" * 50)
    with pytest.raises(AudioLoadError, match=name):
        load_audio(path)


def test_video_without_audio_stream(tmp_path: Path) -> None:
    path = write_video(tmp_path / "mute.mp4", np.zeros((5, 16, 16, 3), np.uint8))
    with pytest.raises(AudioLoadError, match="no audio stream"):
        load_audio(path)


def test_empty_stream(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    soundfile.write(path, np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioLoadError, match="empty"):
        load_audio(path)


def test_silence_is_rejected_with_the_file_name(tmp_path: Path) -> None:
    path = write_audio(tmp_path / "silence.wav", np.zeros(16000), 16000)
    wav = load_audio(path)
    with pytest.raises(SilentAudioError, match=r"silence\.wav"):
        ensure_audible(wav, path)
    speech_like = torch.from_numpy(_sine(200, 1.0, 16000, amplitude=0.01))
    assert ensure_audible(speech_like, "quiet.wav") is speech_like
