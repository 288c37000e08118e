"""pctalk: PC-Talk, audio-driven talking-face generation with precise control on LivePortrait keypoints."""

__version__ = "0.1.0"
