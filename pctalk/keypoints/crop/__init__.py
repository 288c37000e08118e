"""Face detection, LivePortrait's crop, and paste-back (see :mod:`pctalk.keypoints.crop.cropper`)."""

from pctalk.keypoints.crop.cropper import (
    CROP_SIZE,
    Crop,
    FaceCropper,
    FaceNotFoundError,
    face_box,
    paste_back,
    soft_mask,
)

__all__ = ["CROP_SIZE", "Crop", "FaceCropper", "FaceNotFoundError", "face_box", "paste_back", "soft_mask"]
