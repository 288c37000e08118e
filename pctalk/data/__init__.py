"""Data loading: the shard schema, the WebDataset pipeline and the data modules."""

from pctalk.data.base import BaseDataModule
from pctalk.data.datamodule import ShardDataModule

__all__ = ["BaseDataModule", "ShardDataModule"]
