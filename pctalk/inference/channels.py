"""Head pose, blinks and gaze as separate channels, each taken from one place.

A channel is one of:

- ``source``: the source's own: an image's pose and eyes held still, a video's own frame by frame.
- ``video:PATH``: a driving video's: its head motion relative to its first frame (LivePortrait's relative mode), its
  blinks (from its eye landmarks' open ratio, or from its eye keypoints when the cropper has no landmarks) and its
  gaze (read from its eye keypoints, :func:`pctalk.control.eyes.eye_signals`). The video is ping-ponged to the
  audio's length, as a source video is.
- ``template`` or ``template:NAME``: built-in natural motion. Pose: ``builtin`` (the default) or a ``.npz`` from
  ``pctalk-data pose-templates``, relative to the source's pose; blink: natural blink timing
  (:func:`~pctalk.control.eyes.natural_blinks`); gaze: natural fixations and saccades
  (:func:`~pctalk.control.eyes.natural_gaze`).
- ``timeline``: keyframes in the ``--controls`` timeline: ``pose:pitch``, ``pose:yaw``, ``pose:roll`` (degrees) and
  ``pose:x``, ``pose:y`` (LivePortrait's translation units) added to the source's pose; ``blink`` (closure, 0 open
  to 1 closed); ``gaze:x``, ``gaze:y`` (LivePortrait's eyeball-direction units). A missing track is 0; a timeline
  with a channel's track makes that channel ``timeline`` unless another was given.

Defaults: an image gets ``template`` pose and blinks and a ``source`` gaze; a video ``source`` for all three. On a
video source, blinks and gaze from a template, a timeline or another video add to the video's own eyes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["CHANNELS", "KINDS", "Channel", "resolve_channel"]

CHANNELS = ("pose", "blink", "gaze")
KINDS = ("source", "video", "template", "timeline")
#: the timeline tracks of each channel
TRACKS = {
    "pose": ("pose:pitch", "pose:yaw", "pose:roll", "pose:x", "pose:y"),
    "blink": ("blink",),
    "gaze": ("gaze:x", "gaze:y"),
}


@dataclass(frozen=True)
class Channel:
    """Where a channel comes from: ``kind`` (one of :data:`KINDS`) and its argument (the driving video, or the
    template's name or file)."""

    kind: str
    arg: str = ""

    @classmethod
    def parse(cls, spec: str, channel: str) -> Channel:
        """``source``, ``video:PATH``, ``template``, ``template:NAME`` or ``timeline``.

        Raises:
            ValueError: another kind, ``video`` without a file, or a template for a channel that has only one.
        """
        kind, _, arg = str(spec).partition(":")
        if kind not in KINDS:
            raise ValueError(f"bad --{channel} {spec!r}: use source, video:PATH, template[:NAME] or timeline")
        if kind == "video" and not arg:
            raise ValueError(f"--{channel} video needs the driving video: video:PATH, e.g. video:driving.mp4")
        if kind in ("source", "timeline") and arg:
            raise ValueError(f"bad --{channel} {spec!r}: {kind} takes no argument")
        if kind == "template" and arg and channel != "pose":
            raise ValueError(f"--{channel} has one built-in template: use --{channel} template")
        return cls(kind, arg or ("builtin" if kind == "template" and channel == "pose" else ""))

    def __str__(self) -> str:
        return f"{self.kind}:{self.arg}" if self.arg else self.kind

    def check(self, channel: str) -> None:
        """The files it names exist (before any model loads)."""
        if self.kind == "video" and not Path(self.arg).is_file():
            raise FileNotFoundError(f"--{channel} video:{self.arg}: no such video")
        if self.kind == "template" and self.arg not in ("", "builtin") and not Path(self.arg).is_file():
            raise FileNotFoundError(
                f"--{channel} template:{self.arg}: no such pose template; use 'builtin' or a file from "
                f"`pctalk-data pose-templates`"
            )


def resolve_channel(
    channel: str, spec: str | None, is_video: bool, timeline_tracks: list[str], pose_template: str = "builtin"
) -> Channel:
    """The channel a generation uses: ``spec`` if given, else ``timeline`` when the timeline keys the channel, else
    the default for the source (see the module's docstring; ``pose_template`` is the older ``--pose-template``).

    Raises:
        ValueError: the timeline keys the channel but ``spec`` names another kind, or ``timeline`` is asked for
            and the timeline has none of the channel's tracks.
    """
    keyed = [t for t in timeline_tracks if t in TRACKS[channel]]
    if spec is not None:
        chosen = Channel.parse(spec, channel)
        if keyed and chosen.kind != "timeline":
            raise ValueError(f"the timeline keys {', '.join(keyed)} but --{channel} is {chosen}; drop one of them")
        if chosen.kind == "timeline" and not keyed:
            raise ValueError(
                f"--{channel} timeline: the timeline (--controls) has none of {', '.join(TRACKS[channel])}"
            )
        return chosen
    if keyed:
        return Channel("timeline")
    if is_video or channel == "gaze":
        return Channel("source")
    if channel == "pose":
        return Channel("source") if pose_template == "static" else Channel("template", pose_template)
    return Channel("template")
