"""Sizes of LivePortrait's networks. Defaults are the official sizes (``src/config/models.yaml`` of
KwaiVGI/LivePortrait), which the public checkpoints need; :meth:`LivePortraitConfig.tiny` is for tests."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "AppearanceEncoderConfig",
    "DecoderConfig",
    "DenseMotionConfig",
    "LivePortraitConfig",
    "MotionExtractorConfig",
    "StitchingConfig",
    "WarpingConfig",
]


@dataclass
class MotionExtractorConfig:
    """Motion extractor M (ConvNeXt V2)."""

    depths: tuple[int, ...] = (3, 3, 9, 3)
    """Blocks per stage."""
    dims: tuple[int, ...] = (96, 192, 384, 768)
    """Channels per stage."""
    num_kp: int = 21
    """Implicit keypoints."""
    num_bins: int = 66
    """Head-pose bins per angle."""


@dataclass
class AppearanceEncoderConfig:
    """Appearance feature extractor F."""

    block_expansion: int = 64
    num_down_blocks: int = 2
    max_features: int = 512
    """Channels before the reshape; must equal reshape_channel x reshape_depth."""
    reshape_channel: int = 32
    reshape_depth: int = 16
    num_resblocks: int = 6


@dataclass
class DenseMotionConfig:
    """Dense motion network inside W."""

    block_expansion: int = 32
    max_features: int = 1024
    num_blocks: int = 5
    reshape_depth: int = 16
    compress: int = 4


@dataclass
class WarpingConfig:
    """Warping module W."""

    block_expansion: int = 64
    max_features: int = 512
    num_down_blocks: int = 2
    reshape_channel: int = 32
    estimate_occlusion_map: bool = True
    dense_motion: DenseMotionConfig = field(default_factory=DenseMotionConfig)


@dataclass
class DecoderConfig:
    """SPADE decoder G."""

    upscale: int = 2
    """Pixel-shuffle factor: 256 crops render at 512."""
    block_expansion: int = 64
    max_features: int = 512
    num_down_blocks: int = 2
    out_channels: int = 64
    spade_hidden: int = 128


@dataclass
class StitchingConfig:
    """Stitching and retargeting MLPs: (input size, hidden sizes, output size) each."""

    stitching: tuple[int, tuple[int, ...], int] = (126, (128, 128, 64), 65)
    lip: tuple[int, tuple[int, ...], int] = (65, (128, 128, 64), 63)
    eye: tuple[int, tuple[int, ...], int] = (66, (256, 256, 128, 128, 64), 63)


@dataclass
class LivePortraitConfig:
    """All of LivePortrait's sizes."""

    input_size: int = 256
    """Side of the square RGB crops the networks take."""
    motion_extractor: MotionExtractorConfig = field(default_factory=MotionExtractorConfig)
    appearance_encoder: AppearanceEncoderConfig = field(default_factory=AppearanceEncoderConfig)
    warping: WarpingConfig = field(default_factory=WarpingConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    stitching: StitchingConfig = field(default_factory=StitchingConfig)

    @property
    def num_kp(self) -> int:
        return self.motion_extractor.num_kp

    @property
    def output_size(self) -> int:
        """Side of the rendered image."""
        feature = self.input_size // 2**self.appearance_encoder.num_down_blocks
        return feature * 4 * max(1, self.decoder.upscale)

    @classmethod
    def tiny(cls, spade_hidden: int = 16) -> LivePortraitConfig:
        """Small sizes with every structural feature kept: 64x64 crops render at 128x128 in milliseconds.
        (LivePortrait's own code fixes ``spade_hidden`` at 128; pass that to compare with it.)"""
        return cls(
            input_size=64,
            motion_extractor=MotionExtractorConfig(depths=(1, 1, 2, 1), dims=(8, 16, 16, 32)),
            appearance_encoder=AppearanceEncoderConfig(
                block_expansion=4, max_features=16, reshape_channel=4, reshape_depth=4, num_resblocks=2
            ),
            warping=WarpingConfig(
                block_expansion=4,
                max_features=16,
                reshape_channel=4,
                dense_motion=DenseMotionConfig(
                    block_expansion=4, max_features=16, num_blocks=2, reshape_depth=4, compress=2
                ),
            ),
            decoder=DecoderConfig(block_expansion=4, max_features=16, out_channels=8, spade_hidden=spade_hidden),
            stitching=StitchingConfig(stitching=(126, (16, 16), 65), lip=(65, (16,), 63), eye=(66, (16, 16), 63)),
        )
