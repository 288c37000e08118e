"""Offline speech synthesis with eSpeak NG (from the ``espeakng-loader`` wheel, through ctypes), with word and
phoneme timings.

This is pctalk's source of *real* speech when no recording is at hand: tests, the synthetic corpus, the quickstart
and ``pctalk generate --text``. eSpeak is a formant synthesiser: intelligible, robotic, and with exact phoneme timing.
"""

from __future__ import annotations

import ctypes
import re
import threading
from dataclasses import dataclass, field

import numpy as np
import torch

from pctalk.audio.io import resample

__all__ = ["Phoneme", "Speech", "Word", "synthesize"]

# speak_lib.h
_AUDIO_OUTPUT_SYNCHRONOUS = 0x02
_INITIALIZE_PHONEME_EVENTS = 0x0001
_INITIALIZE_DONT_EXIT = 0x8000
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_EVENT_PHONEME = 7
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM_RATE = 1
# eSpeak reports word starts in order but its text positions drift around some phrases ("too many"), so words are
# matched to these tokens by order.
_WORD = re.compile(r"[\w'’-]+")


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_Callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass(frozen=True)
class Word:
    """A word of the text and its time span in the audio (seconds)."""

    text: str
    start: float
    end: float


@dataclass(frozen=True)
class Phoneme:
    """An eSpeak phoneme mnemonic (e.g. ``'V``, ``u:``; ``_`` is a pause) and its time span (seconds)."""

    symbol: str
    start: float
    end: float


@dataclass
class Speech:
    """Synthesised speech: ``wav (N,)`` float32 mono at ``sample_rate``, with word and phoneme timings."""

    wav: torch.Tensor
    sample_rate: int
    words: list[Word] = field(default_factory=list)
    phonemes: list[Phoneme] = field(default_factory=list)

    @property
    def duration(self) -> float:
        """Length of the audio in seconds."""
        return self.wav.shape[-1] / self.sample_rate


class _Espeak:
    """One fresh load of the eSpeak NG library.

    eSpeak keeps state between syntheses (noise generators, timing accumulators: the same text comes out a few
    samples longer each time), so every :func:`synthesize` loads the library afresh and unloads it afterwards,
    which makes its output identical for identical input (about 4 ms per load). Calls are serialised.
    """

    _lock = threading.Lock()

    def __init__(self) -> None:
        import espeakng_loader

        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.lib.espeak_Initialize.restype = ctypes.c_int
        self.lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self.lib.espeak_SetSynthCallback.argtypes = [_Callback]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self.lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        data_path = espeakng_loader.get_data_path().encode()
        options = _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_DONT_EXIT
        self.sample_rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path, options)
        if self.sample_rate <= 0:
            raise RuntimeError(f"eSpeak NG failed to initialise (data at {data_path.decode()})")
        self.default_rate = self.lib.espeak_GetParameter(_PARAM_RATE, 0)
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, int, int, int, str]] = []
        self._callback = _Callback(self._on_audio)  # keep a reference: eSpeak calls it from C
        self.lib.espeak_SetSynthCallback(self._callback)

    def close(self) -> None:
        """Terminate eSpeak and unload the library, so the next load starts from a clean state."""
        import _ctypes

        self.lib.espeak_Terminate()
        _ctypes.dlclose(self.lib._handle)

    def _on_audio(self, wav, n: int, events) -> int:
        if wav and n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            ev = events[i]
            symbol = ev.id.string.decode("utf-8", "replace") if ev.type == _EVENT_PHONEME else ""
            self._events.append((ev.type, ev.text_position, ev.length, ev.audio_position, symbol))
            i += 1
        return 0

    def synth(self, text: str, voice: str, rate: int | None) -> tuple[np.ndarray, list[tuple]]:
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"eSpeak NG has no voice {voice!r} (try 'en', 'en-us', 'de', 'fr', ...)")
        self.lib.espeak_SetParameter(_PARAM_RATE, int(rate) if rate else self.default_rate, 0)
        self._chunks, self._events = [], []
        data = text.encode("utf-8")
        status = self.lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if status != 0:
            raise RuntimeError(f"eSpeak NG failed to synthesise {text!r} (status {status})")
        self.lib.espeak_Synchronize()
        samples = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        return samples, list(self._events)


def synthesize(text: str, voice: str = "en", rate: int | None = None, sample_rate: int | None = 16000) -> Speech:
    """Speak ``text`` with eSpeak NG.

    Args:
        text: what to say (UTF-8; punctuation gives pauses).
        voice: an eSpeak voice name, e.g. ``"en"``, ``"en-us"``.
        rate: speaking rate in words per minute (eSpeak's default, 175, when ``None``).
        sample_rate: resample to this rate (default 16 kHz, pctalk's rate); ``None`` keeps eSpeak's 22050 Hz.

    Returns:
        :class:`Speech` with the waveform and word and phoneme timings in seconds.
    """
    if not text.strip():
        raise ValueError("synthesize needs some text to speak, got an empty string")
    with _Espeak._lock:
        engine = _Espeak()
        try:
            samples, events = engine.synth(text, voice, rate)
            native_rate = engine.sample_rate
        finally:
            engine.close()
    wav = torch.from_numpy(samples.astype(np.float32) / 32768.0)
    rate_out = sample_rate or native_rate
    wav = resample(wav, native_rate, rate_out)
    duration = wav.shape[-1] / rate_out

    phoneme_events = [(pos / 1000.0, sym) for kind, _, _, pos, sym in events if kind == _EVENT_PHONEME]
    phonemes = [
        Phoneme(sym, start, phoneme_events[i + 1][0] if i + 1 < len(phoneme_events) else duration)
        for i, (start, sym) in enumerate(phoneme_events)
    ]
    word_events = [(pos / 1000.0, tpos - 1) for kind, tpos, _, pos, _ in events if kind == _EVENT_WORD]
    return Speech(wav=wav, sample_rate=rate_out, words=_words(text, word_events, duration), phonemes=phonemes)


def _words(text: str, events: list[tuple[float, int]], duration: float) -> list[Word]:
    """Match eSpeak's word events ``(start seconds, character offset)`` to the words of ``text``.

    eSpeak reports word starts in order, but its character offsets drift around some phrases ("too many" reports
    "many" inside "too") and it splits some tokens ("42" is "forty two"). When there are as many events as tokens
    they are matched in order; otherwise each event goes to the token holding its offset, and consecutive events of
    one token are merged.
    """
    tokens = [(m.group(), m.start(), m.end()) for m in _WORD.finditer(text)]
    if not tokens:
        return []
    if len(tokens) == len(events):
        owners = list(range(len(tokens)))
    else:
        owners = [
            next((j for j, (_, _, end) in enumerate(tokens) if offset < end), len(tokens) - 1) for _, offset in events
        ]
    spans: list[tuple[int, float]] = []
    for owner, (start, _) in zip(owners, events):
        if not spans or spans[-1][0] != owner:
            spans.append((owner, start))
    return [
        Word(tokens[owner][0], start, spans[i + 1][1] if i + 1 < len(spans) else duration)
        for i, (owner, start) in enumerate(spans)
    ]
