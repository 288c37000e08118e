"""Controls: pure functions on motion tensors (lip scale, loudness, style editing; emotion composition)."""
