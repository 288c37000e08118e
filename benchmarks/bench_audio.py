"""Audio front end throughput: seconds of audio turned into per-frame features per second of wall time.

Measures mel spectrogram + per-frame windows + audio encoder on 60 s of eSpeak speech, in fp32 (exact) and bf16
(autocast, channels-last), eager and ``torch.compile``-d. Target: >= 100x real time on a 2-core CPU.

    python benchmarks/bench_audio.py
"""

from __future__ import annotations

import torch

from common import machine, timeit
from pctalk.audio.encoder import AudioEncoder, encode_windows
from pctalk.audio.mel import audio_windows
from pctalk.audio.tts import synthesize

TEXT = (
    "The duck ate too many bees. Then it flew away over the lake, singing loudly, "
    "while the children on the shore counted the clouds and laughed at the wind."
)


def main(seconds: float = 60.0) -> None:
    torch.manual_seed(0)
    speech = synthesize(TEXT).wav
    wav = speech.repeat(int(seconds * 16000 // len(speech)) + 1)[: int(seconds * 16000)]
    encoder = AudioEncoder().eval()
    compiled = torch.compile(encoder)
    print(f"machine: {machine()}")
    print(f"audio: {seconds:.0f} s of speech ({int(seconds * 25)} video frames)")
    mel_s = timeit(lambda: audio_windows(wav))
    print(f"{'mel + windows':<34} {seconds / mel_s:8.0f}x real time")
    for name, net in (("eager", encoder), ("compiled", compiled)):
        for precision in ("fp32", "bf16"):
            t = timeit(
                lambda net=net, precision=precision: encode_windows(net, audio_windows(wav), precision=precision)
            )
            print(f"{'mel + windows + encoder, ' + name + ' ' + precision:<34} {seconds / t:8.0f}x real time")


if __name__ == "__main__":
    main()
