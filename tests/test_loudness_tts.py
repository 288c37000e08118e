"""Per-frame loudness and offline speech with word and phoneme timings."""

from __future__ import annotations

import math

import pytest
import torch

from pctalk.audio.loudness import frame_loudness
from pctalk.audio.tts import synthesize


def test_loudness_of_known_signals() -> None:
    square = torch.ones(640 * 4)
    square[1::2] = -1
    torch.testing.assert_close(frame_loudness(square, 4), torch.zeros(4), atol=1e-5, rtol=0)
    t = torch.arange(640 * 3) / 16000
    sine = 0.5 * torch.sin(2 * math.pi * 500 * t)
    expected = 20 * math.log10(0.5 / math.sqrt(2))
    torch.testing.assert_close(frame_loudness(sine, 3), torch.full((3,), expected), atol=1e-3, rtol=0)


def test_loudness_follows_the_length_rule() -> None:
    wav = torch.cat([0.5 * torch.ones(640), torch.zeros(640)])
    out = frame_loudness(wav, 4)  # audio shorter than the video: padded with silence
    assert out.shape == (4,)
    assert out[0] > -7 and out[1:].eq(-100).all()
    assert frame_loudness(torch.stack([wav, wav * 0.1]), 2).shape == (2, 2)


@pytest.fixture(scope="module")
def speech():
    return synthesize("The duck ate too many bees.")


def test_tts_speaks(speech) -> None:
    assert speech.sample_rate == 16000
    assert speech.wav.dtype == torch.float32 and speech.wav.ndim == 1
    assert speech.wav.abs().max() > 0.1
    assert 0.8 < speech.duration < 3.0
    loud = frame_loudness(speech.wav, int(speech.duration * 25))
    assert (loud > -40).float().mean() > 0.5  # mostly voiced, not silence


def test_tts_word_timings_cover_the_audio(speech) -> None:
    assert [w.text for w in speech.words] == ["The", "duck", "ate", "too", "many", "bees"]
    starts = [w.start for w in speech.words]
    assert starts == sorted(starts) and starts[0] < 0.05
    for w in speech.words:
        assert w.start < w.end <= speech.duration + 1e-9
    assert speech.words[-1].end == pytest.approx(speech.duration)
    assert speech.phonemes[-1].end == pytest.approx(speech.duration)
    assert speech.phonemes[-1].start <= speech.duration


def test_tts_phonemes(speech) -> None:
    symbols = [p.symbol for p in speech.phonemes]
    assert "d" in symbols and "b" in symbols and "'u:" in symbols
    duck = next(w for w in speech.words if w.text == "duck")
    inside = [p.symbol for p in speech.phonemes if duck.start <= p.start < duck.end]
    assert inside[0] == "d" and "k" in inside
    assert all(a.end == b.start for a, b in zip(speech.phonemes, speech.phonemes[1:]))


def test_tts_is_deterministic() -> None:
    """eSpeak keeps state between syntheses; each call starts afresh, so the same input gives the same samples."""
    first = synthesize("Fresh bread smells wonderful.")
    synthesize("Something else in between, faster.", rate=250)
    again = synthesize("Fresh bread smells wonderful.")
    assert torch.equal(first.wav, again.wav)
    assert first.phonemes == again.phonemes


def test_tts_rate_and_sample_rate() -> None:
    slow = synthesize("one two three four five", rate=100)
    fast = synthesize("one two three four five", rate=300)
    assert slow.duration > 1.8 * fast.duration
    native = synthesize("hello", sample_rate=None)
    assert native.sample_rate == 22050


def test_tts_keeps_a_number_as_one_word() -> None:
    speech = synthesize("I saw 42 cats.")
    assert [w.text for w in speech.words] == ["I", "saw", "42", "cats"]


def test_tts_errors() -> None:
    with pytest.raises(ValueError, match="empty"):
        synthesize("   ")
    with pytest.raises(ValueError, match="no voice"):
        synthesize("hello", voice="no-such-voice")
