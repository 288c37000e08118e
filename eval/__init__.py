"""Evaluation: the paper's metrics as DDP-ready torchmetrics and the benchmark runner (``pctalk-eval``)."""
