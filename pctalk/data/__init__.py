"""Data loading: the shard schema, the WebDataset pipeline and the data modules."""

from pctalk.data.base import BaseDataModule

__all__ = ["BaseDataModule"]
