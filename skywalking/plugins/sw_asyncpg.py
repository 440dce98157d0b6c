"""``asyncpg`` (0.27+): an exit span ``PostgreSQL/AsyncPG/<operation>`` for each statement, named after the
protocol operation that runs it, so every public API is covered, pools included:

* ``bind_execute``: ``execute`` with arguments, ``fetch``, ``fetchrow``, ``fetchval`` (``Connection._execute``: the
  span also covers preparing the statement when it is not cached, so bad SQL is an error span), the same methods of
  a prepared statement, and the first batch of an iterated cursor;
* ``bind_execute_many``: ``executemany``, ``fetchmany`` (0.30+), one span for all rows;
* ``query``: ``execute`` without arguments (the simple query protocol; transactions' ``BEGIN``/``COMMIT`` too);
* ``prepare``: ``Connection.prepare``;
* ``bind`` and ``execute``: a cursor opened with ``await con.cursor(...)``, and each batch a cursor fetches;
* ``copy_in`` / ``copy_out``: the ``copy_*`` methods.

A span covers the round trip. Peer = ``host:port`` of the connection (the socket path for a unix socket), layer
Database, component AsyncPG (7016); tags ``db.type`` = ``PostgreSQL``, ``db.instance`` (database name),
``db.statement`` (cut to 2048 characters in the tag, never in the query) and ``db.sql.parameters`` when
``plugin_sql_parameters_max_length`` > 0 (the first row of an ``executemany`` given as a list). A failing call marks
its span as an error; the exception reaches the application unchanged.

Hooks: ``Protocol.__init__`` records the address and database (``asyncpg.protocol.Protocol`` is a Python subclass
of the Cython protocol, so its methods can be wrapped on the class) and the protocol's statement methods;
``Connection._execute``, ``_executemany`` and ``prepare``. ``Connection.reset`` (run by a pool on every release) and
the type introspection asyncpg runs on its own are not traced. Not traced either: preparing a cursor's statement."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from skywalking import Component
from skywalking.loggings import logger
from skywalking.plugins import Plugin
from skywalking.plugins._sql import exit_span, first_row
from skywalking.trace.context import suppress_tracing
from skywalking.trace.span import Span

Describe = Callable[[tuple[Any, ...], Mapping[str, Any]], tuple[Any, Any]]  # (statement, parameters)


def _arg(args: tuple[Any, ...], kwargs: Mapping[str, Any], index: int, name: str) -> Any:
    return args[index] if len(args) > index else kwargs.get(name)


def _state_query(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
    return getattr(_arg(args, kwargs, 0, "state"), "query", None)


_CALLS: dict[str, Describe] = {
    "query": lambda a, k: (_arg(a, k, 0, "query"), None),
    "bind_execute": lambda a, k: (_state_query(a, k), _arg(a, k, 1, "args") or None),
    "bind_execute_many": lambda a, k: (_state_query(a, k), first_row(_arg(a, k, 1, "args"))),
    "bind": lambda a, k: (_state_query(a, k), _arg(a, k, 1, "args") or None),
    "execute": lambda a, k: (_state_query(a, k), None),
    "copy_in": lambda a, k: (_arg(a, k, 0, "copy_stmt"), None),
    "copy_out": lambda a, k: (_arg(a, k, 0, "copy_stmt"), None),
}


def _init(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    result = wrapped(*args, **kwargs)
    try:
        addr, params = _arg(args, kwargs, 0, "addr"), _arg(args, kwargs, 2, "con_params")
        host: str | None
        port: Any
        if isinstance(addr, (tuple, list)) and len(addr) >= 2:
            host, port = str(addr[0]), addr[1]
        else:  # a unix socket path
            host, port = (str(addr) if addr else None), None
        instance._sw_target = (host, port, getattr(params, "database", None))
    except Exception:
        logger.debug("sw_asyncpg: connection address not recorded", exc_info=True)
    return result


# Connection methods: (operation, how to read the statement and parameters)
_CONNECTION_CALLS: dict[str, tuple[str, Describe]] = {
    "_execute": ("bind_execute", lambda a, k: (_arg(a, k, 0, "query"), _arg(a, k, 1, "args") or None)),
    "_executemany": ("bind_execute_many", lambda a, k: (_arg(a, k, 0, "query"), first_row(_arg(a, k, 1, "args")))),
    "prepare": ("prepare", lambda a, k: (_arg(a, k, 0, "query"), None)),
}


def _span(protocol: Any, call: str, describe: Describe, args: tuple[Any, ...],
          kwargs: Mapping[str, Any]) -> Span | None:
    """The exit span (not started) of operation ``call`` on ``protocol``; None when it is not to be traced."""
    try:
        host, port, database = getattr(protocol, "_sw_target", (None, None, None))
        statement, params = describe(args, kwargs)
        return exit_span(f"PostgreSQL/AsyncPG/{call}", host, port, Component.AsyncPG, "PostgreSQL", database,
                         statement, params)
    except Exception:  # never into the application: run the call untraced
        logger.debug("sw_asyncpg: no span for a %s", call, exc_info=True)
        return None


def _statement(call: str, describe: Describe, on_connection: bool = False) -> Any:
    async def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        span = _span(getattr(instance, "_protocol", None) if on_connection else instance, call, describe, args, kwargs)
        if span is None:
            return await wrapped(*args, **kwargs)
        with span:
            return await wrapped(*args, **kwargs)

    return wrapper


async def _untraced(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    with suppress_tracing():
        return await wrapped(*args, **kwargs)


class AsyncpgPlugin(Plugin):
    name = "sw_asyncpg"
    instruments = ("asyncpg>=0.27",)
    modules = ("asyncpg",)
    note = ("asyncpg, pools included (`Connection._execute`, `_executemany`, `prepare`; the protocol's `query`, "
            "`bind_execute`, `bind_execute_many`, `bind`, `execute`, `copy_in`, `copy_out`)")

    def _install(self) -> None:
        # by module name: the hook may run before asyncpg.protocol is set on its package
        self.wrap("asyncpg.protocol", "Protocol.__init__", _init)
        for call, describe in _CALLS.items():
            self.wrap("asyncpg.protocol", f"Protocol.{call}", _statement(call, describe))
        for method, (call, describe) in _CONNECTION_CALLS.items():
            self.wrap("asyncpg.connection", f"Connection.{method}", _statement(call, describe, on_connection=True))
        connection = importlib.import_module("asyncpg.connection").Connection
        for housekeeping in ("reset", "_introspect_types", "_introspect_type"):
            if hasattr(connection, housekeeping):
                self.wrap("asyncpg.connection", f"Connection.{housekeeping}", _untraced)


plugin = AsyncpgPlugin()
