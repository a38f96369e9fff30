"""The calcdx version, single source for the package and its outputs."""

__version__ = "0.1.0"
