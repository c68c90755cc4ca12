"""gradsight: find out why PyTorch parameters are not updating.

`gradsight.inspect(model, optimizer)` and `gradsight.watch(model, optimizer, every=N)` check a
live model; they import torch on first use, so `import gradsight` stays cheap.
"""

__version__ = "0.1.0"

__all__ = ["__version__", "inspect", "watch"]


def __getattr__(name):
    if name in ("inspect", "watch"):
        from gradsight.runtime import api

        return getattr(api, name)
    raise AttributeError(f"module 'gradsight' has no attribute {name!r}")
