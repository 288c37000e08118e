"""Quickstart (until the LAC stage lands): run the real audio front end end to end, offline.

eSpeak NG speaks a sentence; the Wav2Lip mel recipe cuts one window per video frame; per-frame loudness and the
word / phoneme timings are printed; the speech is written as a wav and as an mp4 whose frames show the mel window
and loudness of each video frame, with the speech muxed in. Outputs go to ``outputs/quickstart/``.

    python experiments/quickstart/front_end.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from pctalk.audio.loudness import frame_loudness
from pctalk.audio.mel import audio_windows, num_frames
from pctalk.audio.tts import synthesize
from pctalk.media import write_audio, write_video

TEXT = "The duck ate too many bees. Then it flew away over the lake."


def frame_image(window: torch.Tensor, loudness_db: float) -> np.ndarray:
    """A 128x160 picture of one frame's mel window (80x16, scaled up) with a loudness bar."""
    mel = ((window[0].flip(0) + 4) / 8 * 255).clamp(0, 255).to(torch.uint8).numpy()  # low bands at the bottom
    image = np.zeros((160, 128, 3), np.uint8)
    image[:, :128] = np.kron(mel, np.ones((2, 8), np.uint8))[:, :, None]
    bar = int(np.clip((loudness_db + 60) / 60, 0, 1) * 128)
    image[150:, :bar] = (255, 80, 40)
    return image


def main(out_dir: str = "outputs/quickstart") -> int:
    out = Path(out_dir)
    speech = synthesize(TEXT)
    n = num_frames(len(speech.wav))
    windows = audio_windows(speech.wav)
    loudness = frame_loudness(speech.wav, n)
    print(f"spoke {TEXT!r}: {speech.duration:.2f} s, {n} video frames at 25 fps, windows {tuple(windows.shape)}")
    print("words:    " + "  ".join(f"{w.text}@{w.start:.2f}s" for w in speech.words))
    print("phonemes: " + " ".join(p.symbol for p in speech.phonemes))
    print(f"loudness: {loudness.min():.1f} .. {loudness.max():.1f} dBFS per frame")
    wav_path = write_audio(out / "speech.wav", speech.wav)
    video_path = write_video(
        out / "mel_windows.mp4", (frame_image(w, float(db)) for w, db in zip(windows, loudness)), audio=speech.wav
    )
    print(f"wrote {wav_path} and {video_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
