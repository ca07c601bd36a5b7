"""torch's log output, kept instead of printed while memlint reads or captures a model.

torch's loggers write to stderr through handlers of their own (torch.export.load logs the whole
traceback of a damaged archive, symbolic shapes warn about guards): a failure must reach the
user as memlint's one line, never after torch's. `kept_logs` holds those records, the failure's
message can quote the error they carry (`logged_error`), and memlint's debug log repeats them
(`--debug`). Imports no torch: it works on the logging module's loggers by name.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

log = logging.getLogger(__name__)
# The open kept_logs contexts (nested ones each keep every record), and how many of them filter
# each handler: one filter serves them all, removed when the last context leaves.
_active: list[tuple[str, list[logging.LogRecord]]] = []
_filtered: dict[logging.Handler, int] = {}


def _keep(record: logging.LogRecord) -> bool:
    kept = False
    for prefix, records in _active:
        if record.name == prefix or record.name.startswith(prefix + "."):
            kept = True
            if not any(r is record for r in records):
                records.append(record)
    return not kept


@contextlib.contextmanager
def kept_logs(prefix: str = "torch") -> Iterator[list[logging.LogRecord]]:
    """Inside, the records of the logger `prefix` and its children are kept in the yielded list
    (in order, each once) instead of reaching any handler; memlint's debug log repeats them."""
    records: list[logging.LogRecord] = []
    loggers = [logging.getLogger(prefix), logging.getLogger()] + [
        logger for name, logger in list(logging.Logger.manager.loggerDict.items())
        if name.startswith(prefix + ".") and isinstance(logger, logging.Logger)
    ]
    handlers = {h for logger in loggers for h in logger.handlers}
    if logging.lastResort is not None:
        handlers.add(logging.lastResort)
    _active.append((prefix, records))
    for handler in handlers:
        _filtered[handler] = _filtered.get(handler, 0) + 1
        handler.addFilter(_keep)
    try:
        yield records
    finally:
        del _active[next(i for i, (_, r) in enumerate(_active) if r is records)]
        for handler in handlers:
            _filtered[handler] -= 1
            if not _filtered[handler]:
                del _filtered[handler]
                handler.removeFilter(_keep)
        for record in records:
            log.debug("%s: %s", record.name, record.getMessage(), exc_info=record.exc_info)


def logged_error(records: list[logging.LogRecord]) -> str:
    """The first sentence of the last exception a kept record carries ("PytorchStreamReader
    failed reading zip archive: invalid header or archive is corrupted"), or ""."""
    for record in reversed(records):
        if record.exc_info and record.exc_info[1] is not None:
            lines = [line.strip() for line in str(record.exc_info[1]).splitlines() if line.strip()]
            if lines:
                return lines[0].split(". ", 1)[0].rstrip(".")
    return ""
