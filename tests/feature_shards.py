"""A copy of a shard folder with stored audio-encoder features, as ``pctalk-data build --audio-features`` writes."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
import webdataset as wds

from pctalk.audio.encoder import load_audio_encoder
from pctalk.audio.mel import frame_windows
from pctalk.checkpoints.info import state_sha256
from pctalk.data.schema import decode_sample, encode_sample


def with_audio_features(shards: Path, out: Path, encoder_file: Path) -> Path:
    """Copy ``shards`` to ``out``, adding ``audio_feat.npy`` from ``encoder_file`` and its hash in the metadata."""
    encoder = load_audio_encoder(encoder_file).eval()
    digest = state_sha256(encoder.state_dict())
    shutil.copytree(shards, out, ignore=shutil.ignore_patterns("*.tar"))
    for tar in sorted(shards.glob("*.tar")):
        with wds.TarWriter(str(out / tar.name)) as sink:
            for sample in wds.WebDataset(str(tar), shardshuffle=False, empty_check=False):
                clip = decode_sample(sample)
                with torch.no_grad():
                    clip.audio_feat = encoder.encode(frame_windows(clip.mel, len(clip.motion))).numpy()
                clip.meta.extra["audio_feat_sha256"] = digest
                sink.write(encode_sample(clip))
    return out
