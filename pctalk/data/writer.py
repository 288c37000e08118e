"""Writing shards safely: one job's samples go to per-split shards under temporary names, renamed only when the
shard is complete, and a per-job manifest records every clip as written or skipped so a rerun resumes.

A manifest line is committed only after the shard holding the clip has been renamed into place, so a job killed
at any moment leaves no truncated ``.tar`` for readers and no clip recorded that is not really in a shard; the
rerun deletes the stale ``.tar.tmp`` and redoes its clips, and records the clips of a shard that was renamed but
not yet recorded (a kill between the two), so that none is written twice.
"""

from __future__ import annotations

import json
import os
import re
import tarfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import webdataset as wds

from pctalk.data.schema import SPLITS, Clip, encode_sample
from pctalk.weights.io import atomic_write

__all__ = ["ShardSink", "append_records", "read_manifests", "write_index"]

_SHARD = re.compile(r"(?P<split>[a-z]+)-j(?P<job>\d{3})-(?P<index>\d{6})\.tar$")


def append_records(path: Path, records: list[dict[str, Any]]) -> None:
    """Append JSON lines to ``path`` and fsync them."""
    if not records:
        return
    with open(path, "a") as fh:
        for record in records:
            fh.write(json.dumps(record) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def read_manifests(
    out_dir: str | os.PathLike[str], job: int | None = None, prefix: str = "manifest"
) -> list[dict[str, Any]]:
    """Every record of every job's manifest (or of one job's); ``prefix`` names the kind of manifest."""
    pattern = f"{prefix}-j*.jsonl" if job is None else f"{prefix}-j{job:03d}.jsonl"
    records = []
    for path in sorted(Path(out_dir).glob(pattern)):
        for line in path.read_text().splitlines():
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:  # a line cut by a kill mid-write: its clip is simply redone
                    continue
    return records


class ShardSink:
    """Shards and manifest of one job of a (possibly array) build.

    Args:
        out_dir: the shard folder.
        job: this job's index; shard names are ``<split>-j<job>-<NNNNNN>.tar``.
        maxcount: samples per shard.
    """

    def __init__(self, out_dir: str | os.PathLike[str], job: int = 0, maxcount: int = 64) -> None:
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.job, self.maxcount = job, max(1, maxcount)
        self.manifest = self.out / f"manifest-j{job:03d}.jsonl"
        for stale in self.out.glob(f"*-j{job:03d}-*.tar.tmp"):
            stale.unlink()  # a shard a killed run never finished: its clips are not in the manifest
        self.done = {r["key"]: r for r in read_manifests(self.out, job)}
        self._reconcile()
        self._writers: dict[str, wds.ShardWriter] = {}
        self._pending: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.written = sum(r["status"] == "written" for r in self.done.values())

    def _reconcile(self) -> None:
        """Commit the manifest lines of shards a killed run renamed into place but did not record (a kill between
        the rename and the manifest's fsync): their clips are in a shard, so the rerun must not write them again."""
        recorded = {r.get("shard") for r in self.done.values()}
        for shard in sorted(self.out.glob(f"*-j{self.job:03d}-*.tar")):
            if shard.name in recorded or not _SHARD.search(shard.name):
                continue
            records = [
                {"key": meta["key"], "status": "written", "split": meta["split"], "n_frames": meta["n_frames"],
                 "shard": shard.name, "recovered": True}
                for meta in _shard_metas(shard)
            ]  # fmt: skip
            append_records(self.manifest, records)
            self.done.update({r["key"]: r for r in records})

    def _next_index(self, split: str) -> int:
        indices = [
            int(m["index"]) for p in self.out.glob(f"{split}-j{self.job:03d}-*.tar") if (m := _SHARD.search(p.name))
        ]
        return max(indices, default=-1) + 1

    def _writer(self, split: str) -> wds.ShardWriter:
        if split not in self._writers:
            pattern = str(self.out / f"{split}-j{self.job:03d}-%06d.tar.tmp")
            self._writers[split] = wds.ShardWriter(
                pattern, maxcount=self.maxcount, post=self._finalise, start_shard=self._next_index(split), verbose=0
            )
        return self._writers[split]

    def _finalise(self, tmp_name: str) -> None:
        tmp = Path(tmp_name)
        split = tmp.name.split("-", 1)[0]
        records, self._pending[split] = self._pending[split], []
        if not records:
            tmp.unlink(missing_ok=True)
            return
        final = tmp.with_name(tmp.name.removesuffix(".tmp"))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        for r in records:
            r["shard"] = final.name
        append_records(self.manifest, records)
        self.written += len(records)
        self.done.update({r["key"]: r for r in records})

    def write(self, clip: Clip, **info: Any) -> None:
        """Add ``clip`` to its split's current shard (committed to the manifest when that shard is renamed)."""
        split = clip.meta.split
        if split not in SPLITS:
            raise ValueError(f"{clip.key}: unknown split {split!r}")
        writer = self._writer(split)
        writer.write(encode_sample(clip))
        self._pending[split].append(
            {
                "key": clip.key,
                "status": "written",
                "split": split,
                "n_frames": clip.meta.n_frames,
                "style_id": clip.meta.style_id,
                **info,
            }
        )

    def skip(self, key: str, reason: str, **info: Any) -> None:
        """Record that ``key`` was skipped, and why (committed at once)."""
        record = {"key": key, "status": "skipped", "reason": reason, **info}
        append_records(self.manifest, [record])
        self.done[key] = record

    def close(self) -> None:
        """Finish and rename every open shard."""
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()

    def __enter__(self) -> ShardSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _shard_metas(shard: Path) -> list[dict[str, Any]]:
    """The key, split and frame count of every sample of a shard, from its ``meta.json`` members only."""
    metas = []
    with tarfile.open(shard) as tar:
        for member in tar:
            if member.name.endswith(".meta.json"):
                meta = json.loads(tar.extractfile(member).read())  # type: ignore[union-attr]
                metas.append({"key": member.name.removesuffix(".meta.json"), **meta})
    return metas


def write_index(out_dir: str | os.PathLike[str]) -> dict[str, int]:
    """Write ``sizes.json`` (shard -> samples), ``frames.json`` (shard -> video frames, which size training epochs),
    ``style_counts.json`` (style id -> training clips and frames, for the checkpoints' style table) and
    ``<split>.txt`` (one shard per line) from every job's manifest, counting only shards that exist. Returns the
    sizes."""
    out = Path(out_dir)
    sizes: dict[str, int] = defaultdict(int)
    frames: dict[str, int] = defaultdict(int)
    styles: dict[int, dict[str, int]] = defaultdict(lambda: {"clips": 0, "frames": 0})
    for record in read_manifests(out):
        if record.get("status") == "written" and (out / record.get("shard", "")).is_file():
            sizes[record["shard"]] += 1
            frames[record["shard"]] += int(record.get("n_frames", 0))
            if record.get("split") == "train" and int(record.get("style_id", -1)) >= 0:
                styles[int(record["style_id"])]["clips"] += 1
                styles[int(record["style_id"])]["frames"] += int(record.get("n_frames", 0))
    counts = {str(k): styles[k] for k in sorted(styles)}
    atomic_write(out / "style_counts.json", lambda tmp: tmp.write_text(json.dumps(counts, indent=1)))
    sizes = dict(sorted(sizes.items()))
    atomic_write(out / "sizes.json", lambda tmp: tmp.write_text(json.dumps(sizes, indent=1)))
    atomic_write(out / "frames.json", lambda tmp: tmp.write_text(json.dumps(dict(sorted(frames.items())), indent=1)))
    for split in SPLITS:
        names = [name for name in sizes if name.startswith(f"{split}-")]
        atomic_write(out / f"{split}.txt", lambda tmp, names=names: tmp.write_text("".join(f"{n}\n" for n in names)))
    return sizes
