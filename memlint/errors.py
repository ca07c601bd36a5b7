"""Errors memlint raises. Only cli.py and pytest_plugin.py format them for people."""

from __future__ import annotations


class MemlintError(Exception):
    """Base class: the tool could not do its job (exit code 2)."""


class ModelLoadError(MemlintError):
    """The model file is missing, unreadable, corrupt or not a model."""


class DimError(MemlintError):
    """Symbolic dims are malformed, unknown or left unbound under --strict-dims."""


class ShapeInferenceError(MemlintError):
    """Shapes could not be inferred for the graph."""


class HardwareError(MemlintError):
    """An unknown hardware name or a malformed hardware file."""


class LlmError(MemlintError):
    """An LLM scenario flag does not apply to the model, or its values contradict each other."""


class ConfigError(MemlintError):
    """A malformed configuration file or option."""


class RegistrationError(MemlintError):
    """A cost formula or rule registered twice, or a malformed registration."""


class OutputError(MemlintError):
    """The report could not be written."""


class ConfirmError(MemlintError):
    """A measured run (--confirm) or a calibration could not be set up or did not complete."""


# What code that reads shapes raises when a node's shapes are not what its op defines (a rank
# short of the op's, a missing dim, an axis out of range): an IndexError or KeyError
# (LookupError) or a ValueError (numpy's shape errors included).
# Where cost formulas are called (costs.registry.cost_of) and where rules visit nodes
# (engine._check), these mean "this node does not fit": the node is left unresolved or
# skipped, with a debug log line naming it. Any other exception (TypeError, AttributeError,
# AssertionError, ZeroDivisionError, ...) is a bug in the formula or rule and still stops the
# run, naming both.
SHAPE_MISMATCH: tuple[type[Exception], ...] = (LookupError, ValueError)


def first_line(exc: BaseException, limit: int = 240) -> str:
    """An exception from another library (torch, onnxruntime, user code) as one short line for
    a memlint error: its first non-empty line (else its type's name), cut at `limit`."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
