"""The package version, importable without importing memlint's API."""

__version__ = "0.1.0"
