"""The keypoint engine: LivePortrait's networks, its implicit-keypoint math, rendering and face cropping.

- :mod:`pctalk.keypoints.regions`: which keypoints belong to the lips, eyes, brows.
- :mod:`pctalk.keypoints.transform`: head-pose bins to degrees, rotations, the keypoint transform.
- :mod:`pctalk.keypoints.config`: network sizes; :mod:`pctalk.keypoints.networks`: one network per file.
- :mod:`pctalk.keypoints.liveportrait`: the frozen model, :class:`Motion`, loading the public checkpoints.
- :mod:`pctalk.keypoints.crop`: face detection, cropping and paste-back.
"""
