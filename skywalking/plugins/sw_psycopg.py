"""``psycopg`` 3 (3.1+, sync and async): an exit span ``PostgreSQL/Psycopg/<method>`` around ``execute``,
``executemany`` and ``stream`` of ``Cursor`` and ``AsyncCursor`` and ``execute`` of ``ServerCursor`` and
``AsyncServerCursor``, patched on the classes, so every cursor is traced whoever made its connection
(``Connection.execute``, ``psycopg_pool`` pools, ``ClientCursor``, ``RawCursor`` and user subclasses included).
An ``execute`` span covers the round trip; an ``executemany`` is one span for all its rows; a ``stream`` span lasts
from the first row asked for until the stream is exhausted, closed or fails (it is not the active span while the
application handles rows). Peer = ``host:port`` of the connection (the socket path for a unix socket), layer
Database, component Psycopg (7010); tags ``db.type`` = ``PostgreSQL``, ``db.instance`` (database name),
``db.statement`` (``sql.Composed`` rendered for the connection; cut to 2048 characters in the tag, never in the
query) and ``db.sql.parameters`` when ``plugin_sql_parameters_max_length`` > 0 (the first row of an
``executemany``). A failing call marks its span as an error; the exception reaches the application unchanged.
In pipeline mode a span covers queueing the statement only. Not traced: ``copy()``, fetches of server-side
cursors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

from skywalking import Component
from skywalking.loggings import logger
from skywalking.plugins import Plugin
from skywalking.plugins._sql import call_in_span, call_in_span_async, exit_span, first_row
from skywalking.trace.span import Span


def _arg(args: tuple[Any, ...], kwargs: Mapping[str, Any], index: int, name: str) -> Any:
    return args[index] if len(args) > index else kwargs.get(name)


def _span(cursor: Any, method: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Span | None:
    """The exit span (not started) of ``cursor.<method>(*args, **kwargs)``; None when it is not to be traced."""
    try:
        query = _arg(args, kwargs, 0, "query")
        if method == "executemany":
            rows = _arg(args, kwargs, 1, "params_seq")
            params = first_row(rows)
        else:
            params = _arg(args, kwargs, 1, "params")
        as_string = getattr(query, "as_string", None)
        if callable(as_string):  # sql.Composed / sql.SQL: rendered with the connection's encoding and quoting
            query = as_string(cursor)
        info = cursor.connection.info
        host, port = info.host, info.port
        if host and host.startswith("/"):  # unix socket directory
            host, port = f"{host}/.s.PGSQL.{port}", None
        return exit_span(f"PostgreSQL/Psycopg/{method}", host, port, Component.Psycopg, "PostgreSQL", info.dbname,
                         query, params)
    except Exception:  # never into the application: run the call untraced
        logger.debug("sw_psycopg: no span for a %s", method, exc_info=True)
        return None


def _open(span: Span) -> None:
    """Start ``span`` and leave it open but not active: rows are handled by the application between steps."""
    span.start()
    span.prepare_async()
    span.stop()


def _traced_rows(make: Callable[[], Span | None], rows: Iterator[Any]) -> Iterator[Any]:
    """``rows`` in a span made when the first row is asked for: psycopg sends the query then, and the segment
    live at ``stream()`` time may be over by then (a streamed HTTP response body)."""
    span = make()
    if span is None:
        yield from rows
        return
    _open(span)
    try:
        yield from rows  # close() and throw() reach psycopg's generator, which ends the query
    except Exception:
        span.raised()
        raise
    finally:
        span.async_finish()


async def _traced_rows_async(make: Callable[[], Span | None], rows: AsyncIterator[Any]) -> AsyncIterator[Any]:
    span = make()
    if span is None:
        async for row in rows:
            yield row
        return
    _open(span)
    try:
        async for row in rows:
            yield row
    except Exception:
        span.raised()
        raise
    finally:
        span.async_finish()
        aclose = getattr(rows, "aclose", None)
        if aclose is not None:
            await aclose()  # psycopg's generator ends the query when closed early


def _stream(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    rows = wrapped(*args, **kwargs)
    return _traced_rows(lambda: _span(instance, "stream", args, kwargs), rows)


def _stream_async(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    rows = wrapped(*args, **kwargs)
    return _traced_rows_async(lambda: _span(instance, "stream", args, kwargs), rows)


class PsycopgPlugin(Plugin):
    name = "sw_psycopg"
    instruments = ("psycopg>=3.1",)
    modules = ("psycopg",)
    note = ("psycopg 3, sync and async (`Cursor`/`AsyncCursor` `execute`, `executemany`, `stream`; server-side "
            "cursors' `execute`); pools included")

    def _install(self) -> None:
        self.wrap("psycopg", "Cursor.execute", call_in_span(_span, "execute"))
        self.wrap("psycopg", "Cursor.executemany", call_in_span(_span, "executemany"))
        self.wrap("psycopg", "Cursor.stream", _stream)
        self.wrap("psycopg", "AsyncCursor.execute", call_in_span_async(_span, "execute"))
        self.wrap("psycopg", "AsyncCursor.executemany", call_in_span_async(_span, "executemany"))
        self.wrap("psycopg", "AsyncCursor.stream", _stream_async)
        self.wrap("psycopg", "ServerCursor.execute", call_in_span(_span, "execute"))
        self.wrap("psycopg", "AsyncServerCursor.execute", call_in_span_async(_span, "execute"))


plugin = PsycopgPlugin()
