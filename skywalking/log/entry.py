"""What the log reporter sends for one record, wire-neutral, and how it is made.

On the logging thread only ``capture()`` runs: the record, its message rendered (the arguments may change
afterwards), the trace context and the reporting identity. ``build()`` runs on the sender thread: the layout,
the tags, safe mode.
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

from skywalking import config
from skywalking.log.formatter import SWFormatter
from skywalking.trace.context import peek
from skywalking.trace.tracer import TRACER
from skywalking.utils.filter import scrub

NO_TRACE = "N/A"


class LogEntry(NamedTuple):
    timestamp_ms: int
    service: str
    instance: str
    endpoint: str | None
    text: str
    tags: list[tuple[str, str]]
    trace: tuple[str, str, int] | None  # trace id, segment id, span id


class Captured(NamedTuple):
    record: logging.LogRecord
    message: str
    identity: Any  # (service, instance)
    trace: tuple[str, str, int] | None
    endpoint: str | None


def capture(record: logging.LogRecord) -> Captured:
    """The hot-path half: a few attribute reads and the rendered message."""
    span = peek()
    trace = endpoint = None
    if span is not None:
        ctx = span.context
        seg = ctx.current_segment
        if seg is not None:
            trace = (seg.related_traces[0].value, seg.segment_id.value, span.sid)
            endpoint = ctx.primary_endpoint
    return Captured(record, record.getMessage(), TRACER.identity, trace, endpoint)


_formatter: tuple[str, int, SWFormatter] | None = None


def _layout_formatter() -> SWFormatter:
    global _formatter
    key = (config.agent_log_reporter_layout, config.agent_cause_exception_depth)
    if _formatter is None or _formatter[:2] != key:
        _formatter = (*key, SWFormatter(key[0], key[1]))
    return _formatter[2]


def build(c: Captured) -> LogEntry:
    """The off-thread half (see the module docstring)."""
    record = c.record
    tags = [("level", record.levelname), ("logger", record.name), ("thread", record.threadName or "")]
    if config.agent_log_reporter_formatted:
        text = _layout_formatter().render(record, c.message, {"tid": c.trace[0] if c.trace else NO_TRACE})
    else:
        text = str(record.msg)
        args = record.args if isinstance(record.args, tuple) else (record.args,) if record.args else ()
        tags.extend((f"argument.{i}", str(arg)) for i, arg in enumerate(args))
        if record.exc_info:
            tags.append(("exception", _layout_formatter().formatException(record.exc_info)))
    if config.agent_log_reporter_safe_mode:
        text = scrub(text)
        tags = [(k, scrub(v)) for k, v in tags]
    service, instance = c.identity[0], c.identity[1]
    return LogEntry(int(record.created * 1000), service, instance, c.endpoint, text, tags, c.trace)
