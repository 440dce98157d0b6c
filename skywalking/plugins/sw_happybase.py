"""``happybase`` (HBase through its Thrift gateway, happybase 1.2+): an exit span per table call, patched on the classes
so every connection (pools included) is traced:

* ``HBase/<op>/<table>/<row>`` for ``Table.row``, ``rows`` (``<row>`` = the first key asked for), ``cells``, ``put``
  and ``delete``: the span covers the whole call, every Thrift round trip it makes included (``delete`` without
  columns first reads the column families);
* ``HBase/scan/<table>/<start>`` for ``Table.scan`` (``<start>`` = ``row_start``, else ``row_prefix``, else empty):
  ``scan()`` returns a generator that sends nothing until the first row is asked for, so the span starts then and
  lasts until the scan is exhausted, closed or fails, covering opening the scanner, every batch
  (``scannerGetList``) and closing it; it is not the active span while the application handles rows;
* ``HBase/create/<table>`` for ``Connection.create_table``.

``<table>`` is the name sent to the server (``table_prefix`` included); keys and names are decoded as UTF-8, other
bytes and control characters shown as ``\\x..`` escapes. Peer = ``host:port`` of the connection, layer Database,
component HBase (94), tag ``db.type`` = ``HBase``. A failing call marks its span as an error; the exception
(``Hbase_thrift.IOError``, ``IllegalArgument``, a transport error) reaches the application unchanged. Not traced:
``Table.batch()`` used directly, counters, ``families``/``regions``, the other ``Connection`` calls (``tables``,
``delete_table``, ...)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from skywalking import Component
from skywalking.loggings import logger
from skywalking.plugins import Plugin
from skywalking.plugins._sql import exit_span
from skywalking.trace.span import Span


def _text(value: Any) -> str:
    """A row key or table name for an operation name: UTF-8 text as it is, other bytes and control characters
    escaped (``\\xff``, ``\\x00``)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        text = bytes(value).decode("utf-8", "backslashreplace")
    else:
        text = "" if value is None else str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _arg(args: tuple[Any, ...], kwargs: Mapping[str, Any], index: int, name: str) -> Any:
    return args[index] if len(args) > index else kwargs.get(name)


def _span(connection: Any, op: str) -> Span | None:
    """The exit span (not started) of one call over ``connection``; None when it is not to be traced."""
    return exit_span(op, getattr(connection, "host", None), getattr(connection, "port", None), Component.HBase,
                     "HBase", None, None)


def _first(rows: Any) -> Any:
    if isinstance(rows, Sequence) and not isinstance(rows, (str, bytes)) and rows:
        return rows[0]
    return None


# Table methods: how to read the row key from the call
_ROW_OF: dict[str, Callable[[tuple[Any, ...], Mapping[str, Any]], Any]] = {
    "row": lambda a, k: _arg(a, k, 0, "row"),
    "rows": lambda a, k: _first(_arg(a, k, 0, "rows")),
    "cells": lambda a, k: _arg(a, k, 0, "row"),
    "put": lambda a, k: _arg(a, k, 0, "row"),
    "delete": lambda a, k: _arg(a, k, 0, "row"),
}


def _table_span(table: Any, method: str, row: Any) -> Span | None:
    try:
        return _span(table.connection, f"HBase/{method}/{_text(table.name)}/{_text(row)}")
    except Exception:  # never into the application: run the call untraced
        logger.debug("sw_happybase: no span for a %s", method, exc_info=True)
        return None


def _table_call(method: str) -> Callable[[Any, Any, Any, Any], Any]:
    row_of = _ROW_OF[method]

    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        try:
            row = row_of(args, kwargs)
        except Exception:
            row = None
        span = _table_span(instance, method, row)
        if span is None:
            return wrapped(*args, **kwargs)
        with span:
            return wrapped(*args, **kwargs)

    return wrapper


def _traced_scan(table: Any, start: Any, rows: Iterator[Any]) -> Iterator[Any]:
    """``rows`` (happybase's scan generator) in a span made when the first row is asked for."""
    span = _table_span(table, "scan", start)
    if span is None:
        yield from rows
        return
    span.start()
    span.prepare_async()  # open, but not the active span while the application handles rows
    span.stop()
    try:
        yield from rows  # close() reaches happybase's generator, which closes the scanner
    except Exception:
        span.raised()
        raise
    finally:
        span.async_finish()


def _scan(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    rows = wrapped(*args, **kwargs)
    try:
        start = _arg(args, kwargs, 0, "row_start")
        if start is None:
            start = _arg(args, kwargs, 2, "row_prefix")
    except Exception:
        start = None
    return _traced_scan(instance, start, rows)


def _create_table(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    span: Span | None
    try:
        name = _arg(args, kwargs, 0, "name")
        table_name = getattr(instance, "_table_name", None)
        span = _span(instance, f"HBase/create/{_text(table_name(name) if callable(table_name) else name)}")
    except Exception:
        logger.debug("sw_happybase: no span for a create_table", exc_info=True)
        span = None
    if span is None:
        return wrapped(*args, **kwargs)
    with span:
        return wrapped(*args, **kwargs)


class HappybasePlugin(Plugin):
    name = "sw_happybase"
    instruments = ("happybase>=1.2",)
    modules = ("happybase",)
    note = ("HBase through happybase (`Table.row`, `rows`, `cells`, `scan`, `put`, `delete`; "
            "`Connection.create_table`)")

    def _install(self) -> None:
        for method in _ROW_OF:
            self.wrap("happybase.table", f"Table.{method}", _table_call(method))
        self.wrap("happybase.table", "Table.scan", _scan)
        self.wrap("happybase.connection", "Connection.create_table", _create_table)


plugin = HappybasePlugin()
