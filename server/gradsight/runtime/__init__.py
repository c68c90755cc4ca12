"""Runtime checks of a live PyTorch model: the probe injected into a debuggee, the
classification of its layers and the mapping of layer names to source lines."""
