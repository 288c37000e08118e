"""The audio front end: loading, Wav2Lip mel windows, the audio encoder, the SyncNet expert, loudness, offline speech.

Submodules import lazily: ``pctalk.audio.mel`` needs no network code, ``pctalk.audio.tts`` no torch models.
"""

from pctalk.audio.io import AudioLoadError, SilentAudioError, ensure_audible, load_audio, resample

__all__ = ["AudioLoadError", "SilentAudioError", "ensure_audible", "load_audio", "resample"]
