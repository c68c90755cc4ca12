"""gradsight: find out why PyTorch parameters are not updating."""

__version__ = "0.1.0"
