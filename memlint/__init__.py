"""memlint: a static linter that finds where ML models hit the memory wall."""

__version__ = "0.1.0"
