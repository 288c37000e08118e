"""Data preparation: raw HDTF / MEAD / augmented / synthetic clips to WebDataset shards (``pctalk-data``)."""
