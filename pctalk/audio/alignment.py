"""Word timings of a recording from its transcript: eSpeak NG speaks the transcript (its word events give the
words' times in the synthetic speech), and dynamic time warping between the two tracks' MFCCs maps those times onto
the recording, the TTS-and-DTW alignment of subtitle aligners. Good to a few frames on clear speech; give the
times yourself when it is not.
"""

from __future__ import annotations

import numpy as np
import torch

from pctalk.audio.tts import Word, synthesize

__all__ = ["align_words", "dtw_path"]

SAMPLE_RATE = 16000
HOP = 0.01  # MFCC frames: 10 ms
PAD = 0.3  # seconds of silence around the synthetic speech


def _features(wav: np.ndarray | torch.Tensor) -> np.ndarray:
    """``(N, 13)`` MFCC at 100 Hz, each coefficient standardised over the track (speaker and level differences
    matter less than the sounds' sequence)."""
    import python_speech_features

    x = wav.detach().cpu().numpy() if isinstance(wav, torch.Tensor) else np.asarray(wav)
    feats = python_speech_features.mfcc(x.astype(np.float64), SAMPLE_RATE, winstep=HOP)
    return (feats - feats.mean(0)) / (feats.std(0) + 1e-8)


def dtw_path(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The cheapest monotonic alignment of feature sequences ``a (N, F)`` and ``b (M, F)`` (Euclidean costs, steps
    ``(1, 0)``, ``(0, 1)``, ``(1, 1)``): ``(L, 2)`` index pairs from ``(0, 0)`` to ``(N − 1, M − 1)``."""
    from scipy.spatial.distance import cdist

    cost = cdist(a, b)
    n, m = cost.shape
    total = np.full((n + 1, m + 1), np.inf)
    total[0, 0] = 0.0
    for i in range(1, n + 1):  # rows in turn; within a row the left neighbour is a running minimum
        diagonal_or_up = np.minimum(total[i - 1, :-1], total[i - 1, 1:]) + cost[i - 1]
        row = total[i]
        for j in range(1, m + 1):
            row[j] = min(diagonal_or_up[j - 1], row[j - 1] + cost[i - 1, j - 1])
    path = [(n - 1, m - 1)]
    i, j = n, m
    while (i, j) != (1, 1):
        steps = [(i - 1, j - 1), (i - 1, j), (i, j - 1)]
        i, j = min((s for s in steps if s[0] >= 1 and s[1] >= 1), key=lambda s: total[s])
        path.append((i - 1, j - 1))
    return np.array(path[::-1])


def align_words(wav: np.ndarray | torch.Tensor, transcript: str, voice: str = "en") -> list[Word]:
    """The words of ``transcript`` with their start and end times (seconds) in ``wav`` (16 kHz mono speech).

    Raises:
        ValueError: an empty transcript, or a recording too short to align.
    """
    if not transcript.strip():
        raise ValueError("the transcript is empty: give the words the clip speaks")
    speech = synthesize(transcript, voice=voice)
    lead = int(PAD * SAMPLE_RATE)  # silence either side, for the recording's pauses to map onto
    padded = torch.cat([torch.zeros(lead), speech.wav.float(), torch.zeros(lead)])
    ours, theirs = _features(padded), _features(wav)
    if len(theirs) < 2:
        raise ValueError("the recording is too short to align words in")
    path = dtw_path(ours, theirs)
    # synthetic frame -> the recording's frames it maps to: take the first for a start, the last for an end
    first = np.full(len(ours), -1)
    last = np.full(len(ours), -1)
    for i, j in path:
        first[i] = j if first[i] < 0 else first[i]
        last[i] = j

    def at(t: float, table: np.ndarray) -> float:
        return float(table[min(len(ours) - 1, max(0, round(t / HOP)))] * HOP)

    words = [(w.text, at(w.start + PAD, first), at(w.end + PAD, last)) for w in speech.words]
    return [Word(text, start, max(start, end)) for text, start, end in words]
