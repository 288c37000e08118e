"""LivePortrait's networks, one per file, with LivePortrait's parameter names."""

from pctalk.keypoints.networks.appearance_encoder import AppearanceEncoder
from pctalk.keypoints.networks.decoder import SPADEDecoder
from pctalk.keypoints.networks.motion_extractor import MotionExtractor
from pctalk.keypoints.networks.stitching import RetargetingMLP, StitchingRetargeting
from pctalk.keypoints.networks.warping import WarpingNetwork

__all__ = [
    "AppearanceEncoder",
    "MotionExtractor",
    "RetargetingMLP",
    "SPADEDecoder",
    "StitchingRetargeting",
    "WarpingNetwork",
]
