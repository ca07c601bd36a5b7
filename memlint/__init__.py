"""memlint: a static linter that finds where ML models hit the memory wall."""

from memlint._version import __version__


def lint(*args, **kwargs):  # noqa: ANN002, ANN003, ANN201 - re-export without importing onnx eagerly
    """See memlint.api.lint."""
    from memlint.api import lint as _lint

    return _lint(*args, **kwargs)
