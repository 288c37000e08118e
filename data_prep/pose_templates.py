"""``pctalk-data pose-templates``: head-pose templates (pitch, yaw, roll, translation over time) from real clips, for
image-driven generation (``pctalk generate --pose-template FILE``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import webdataset as wds

from pctalk.data.schema import decode_sample
from pctalk.inference.pose import PoseTemplate

__all__ = ["pose_templates_command"]


def pose_templates_command(shards: Path, out: Path, count: int = 8, seconds: float = 10.0, split: str = "train") -> int:
    """Write head-pose templates taken from real clips: the pose of the first SECONDS of COUNT clips (the longest
    ones, for variety) as OUT/<identity>_<clip>.npz.

    Args:
        shards: a shard folder built by `pctalk-data build`.
        out: where the templates go.
        count: how many templates.
        seconds: length of each template (clips shorter than this are skipped).
        split: the split to take clips from.
    """
    listing = Path(shards) / f"{split}.txt"
    if not listing.is_file():
        raise FileNotFoundError(f"{listing} not found: build the shards first")
    frames = int(seconds * 25)
    urls = [str(Path(shards) / n) for n in listing.read_text().split()]
    clips = [
        c
        for c in map(decode_sample, wds.WebDataset(urls, shardshuffle=False, empty_check=False))
        if c.meta.n_frames >= frames
    ]
    if not clips:
        raise ValueError(f"no {split} clip of {shards} lasts {seconds} s; ask for shorter templates (--seconds)")
    clips.sort(key=lambda c: -c.meta.n_frames)
    out = Path(out)
    for clip in clips[:count]:
        m = clip.motion
        template = PoseTemplate(m.pitch[:frames], m.yaw[:frames], m.roll[:frames], m.t[:frames], name=clip.key)
        path = template.save(out / f"{clip.key.replace('/', '_')}.npz")
        print(
            f"{path}: {frames} frames, yaw {np.ptp(m.yaw[:frames]):.1f} deg, pitch {np.ptp(m.pitch[:frames]):.1f} deg"
        )
    return 0
