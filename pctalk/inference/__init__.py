"""Inference: audio (or text) and a face image or video to a controllable talking-face video."""

from pctalk.inference.pipeline import Controls, DrivenMotion, EmotionControl, SourceFace, TalkingFacePipeline

__all__ = ["Controls", "DrivenMotion", "EmotionControl", "SourceFace", "TalkingFacePipeline"]
