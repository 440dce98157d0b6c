"""What the SQL plugins share: the Database exit span and its ``db.*`` tags.

``db.statement`` is the SQL text cut to ``STATEMENT_MAX`` characters (the query sent is never touched);
``db.sql.parameters`` is recorded only when ``plugin_sql_parameters_max_length`` > 0, as ``[p1, p2, ...]`` cut to
that many characters (upstream's option, same name and meaning). ``executemany`` records its first row.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from skywalking import Component, Kind, Layer, config
from skywalking.plugins._peer import host_port
from skywalking.trace.context import get_context
from skywalking.trace.span import Span
from skywalking.trace.tags import TagDbInstance, TagDbSqlParameters, TagDbStatement, TagDbType

STATEMENT_MAX = 2048  # characters of db.statement (Java's plugin.jdbc.sql_body_max_length default)

# a driver plugin's span maker: (cursor, method name, call args, call kwargs) -> the exit span, or None (untraced)
SpanFor = Callable[[Any, str, Any, Any], Span | None]
Wrapper = Callable[[Any, Any, Any, Any], Any]


def call_in_span(span_for: SpanFor, method: str) -> Wrapper:
    """A ``Plugin.wrap`` wrapper for a cursor's ``method``: the call inside the span ``span_for`` makes."""
    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        span = span_for(instance, method, args, kwargs)
        if span is None:
            return wrapped(*args, **kwargs)
        with span:
            return wrapped(*args, **kwargs)

    return wrapper


def call_in_span_async(span_for: SpanFor, method: str) -> Wrapper:
    """``call_in_span`` for a coroutine method (the span covers the awaited call)."""
    async def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        span = span_for(instance, method, args, kwargs)
        if span is None:
            return await wrapped(*args, **kwargs)
        with span:
            return await wrapped(*args, **kwargs)

    return wrapper


def text(value: Any) -> str:
    """SQL given as str, bytes or a driver's composed object (``psycopg.sql.Composed``: its ``repr`` otherwise)."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    as_string = getattr(value, "as_string", None)
    if callable(as_string):
        try:
            return str(as_string(None))
        except Exception:  # needs a connection on some versions: fall back to the repr
            pass
    return str(value)


def first_row(rows: Any) -> Any:
    """The first row of ``executemany``'s rows, read only from a sequence (an iterator would be consumed): None
    otherwise."""
    if isinstance(rows, Sequence) and not isinstance(rows, (str, bytes)) and rows:
        return rows[0]
    return None


def parameters(params: Any) -> str | None:
    """``db.sql.parameters`` for ``params`` (a sequence or mapping), or None when not recorded."""
    limit = config.plugin_sql_parameters_max_length
    if limit <= 0 or params is None:
        return None
    if isinstance(params, Mapping):
        shown = ", ".join(f"{k}={v!r}" for k, v in params.items())
    elif isinstance(params, Sequence) and not isinstance(params, (str, bytes)):
        shown = ", ".join(repr(p) for p in params)
    else:
        shown = repr(params)
    shown = f"[{shown}]"
    return shown if len(shown) <= limit else shown[:limit] + "..."


def exit_span(op: str, host: Any, port: Any, component: Component, db_type: str, instance: Any,
              statement: Any, params: Any = None) -> Span | None:
    """A Database exit span (not started) for one statement; None inside another exit span (a driver built on
    another traced driver, e.g. an ORM's pool) so that a call is recorded once."""
    context = get_context()
    active = context.active_span
    if active is not None and active.kind is Kind.Exit:
        return None
    peer = host_port(str(host), port) if host else None
    span = context.new_exit_span(op=op, peer=peer, component=component)
    span.layer = Layer.Database
    span.tag(TagDbType(db_type))
    if instance:
        span.tag(TagDbInstance(text(instance)))
    if statement is not None:
        span.tag(TagDbStatement(text(statement)[:STATEMENT_MAX]))
    shown = parameters(params)
    if shown is not None:
        span.tag(TagDbSqlParameters(shown))
    return span
