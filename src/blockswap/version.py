"""The package's version: a module of its own, so that modules the package imports can read it."""

__version__ = "0.1.0"
