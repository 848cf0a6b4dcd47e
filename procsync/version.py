"""The version of procsync (a leaf: `procsync.__version__` and the API document read it)."""

__version__ = "0.1.0"
