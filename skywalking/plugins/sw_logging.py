"""Standard ``logging``: every log record gets ``tid``, the current trace id (sw6 text form ``a.b.c`` under v6,
the sw8 id under v8; ``N/A`` outside a trace), so that formats can show it as ``%(tid)s``."""

from __future__ import annotations

import logging
from typing import Any

from skywalking.plugins import Plugin
from skywalking.trace.context import peek

NO_TRACE = "N/A"


def current_trace_id() -> str:
    """The trace id of the active span, or ``N/A``."""
    span = peek()
    trace_id = span.context.trace_id if span is not None else None
    return trace_id.value if trace_id is not None else NO_TRACE


class LoggingPlugin(Plugin):
    name = "sw_logging"
    modules = ("logging",)
    note = "adds `tid` (the trace id) to every log record, for `%(tid)s` in log formats"

    def __init__(self) -> None:
        super().__init__()
        self._factory: Any = None
        self._previous: Any = None

    def _install(self) -> None:
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            record.tid = current_trace_id()
            return record

        logging.setLogRecordFactory(factory)
        self._factory, self._previous = factory, previous

    def _uninstall(self) -> None:
        if logging.getLogRecordFactory() is self._factory:  # someone chained after us: leave theirs in place
            logging.setLogRecordFactory(self._previous)
        self._factory = self._previous = None
        self._restore()


plugin = LoggingPlugin()
