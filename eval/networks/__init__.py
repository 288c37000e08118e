"""The frozen networks the metrics run, each loading its original project's checkpoint unchanged."""
