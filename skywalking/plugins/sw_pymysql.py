"""``pymysql`` (PyMySQL 1.0.2+): an exit span ``Mysql/PyMySQL/execute`` around ``Cursor.execute`` and one span
``Mysql/PyMySQL/executemany`` around ``Cursor.executemany`` (the statements it runs inside are not spans of their
own). Every cursor class inherits these methods (``DictCursor``, ``SSCursor``, ...). Peer = ``host:port`` of the
cursor's connection (the socket path for a unix socket), layer Database, component PyMysql (7003); tags
``db.type`` (``mysql``), ``db.instance`` (the database given to ``connect()`` or the last ``select_db()``),
``db.statement`` (the SQL as passed, placeholders kept, cut to 2048 characters in the tag only) and, when
``plugin_sql_parameters_max_length`` > 0, ``db.sql.parameters`` (the first row for ``executemany``).
A call that raises marks its span as an error; the exception reaches the caller unchanged. The span covers the
call only: rows an ``SSCursor`` streams afterwards are not in it. ``callproc`` and ``Connection.query`` are not
traced."""

from __future__ import annotations

import weakref
from typing import Any

from skywalking import Component
from skywalking.loggings import logger
from skywalking.plugins import Plugin, _sql
from skywalking.trace.span import Span

# database chosen by Connection.select_db() (PyMySQL keeps the one given to connect() in ``connection.db``)
_selected: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _statement(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
    """(query, parameters) of ``execute(query, args=None)`` / ``executemany(query, args)``."""
    query = args[0] if args else kwargs.get("query")
    params = args[1] if len(args) > 1 else kwargs.get("args")
    return query, params


def _database(conn: Any) -> Any:
    try:
        return _selected.get(conn, conn.db) if _selected else conn.db
    except TypeError:  # an unhashable connection subclass: what connect() was given
        return getattr(conn, "db", None)


def _span(cursor: Any, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Span | None:
    """The exit span of ``cursor.<method>(...)``; None when the call is not to be traced."""
    try:
        query, params = _statement(args, kwargs)
        conn = getattr(cursor, "connection", None)
        if query is None or conn is None:  # a closed cursor or a bad call: the library raises its own error
            return None
        if method == "executemany":
            params = _sql.first_row(params)
        unix_socket = getattr(conn, "unix_socket", None)
        if unix_socket:
            host, port = unix_socket, None
        else:
            host, port = getattr(conn, "host", None), getattr(conn, "port", None)
        database = _database(conn)
        return _sql.exit_span(f"Mysql/PyMySQL/{method}", host, port, Component.PyMysql, "mysql", database, query,
                              params)
    except Exception:  # never into the application: run the statement untraced
        logger.debug("sw_pymysql: no span for %s", method, exc_info=True)
        return None


def _select_db(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    result = wrapped(*args, **kwargs)
    try:
        _selected[instance] = args[0] if args else kwargs["db"]
    except Exception:
        logger.debug("sw_pymysql: select_db not recorded", exc_info=True)
    return result


class PyMySQLPlugin(Plugin):
    name = "sw_pymysql"
    instruments = ("PyMySQL>=1.0.2",)
    modules = ("pymysql",)
    note = "PyMySQL (`Cursor.execute`, `Cursor.executemany`)"

    def _install(self) -> None:
        self.wrap("pymysql.cursors", "Cursor.execute", _sql.call_in_span(_span, "execute"))
        self.wrap("pymysql.cursors", "Cursor.executemany", _sql.call_in_span(_span, "executemany"))
        self.wrap("pymysql.connections", "Connection.select_db", _select_db)


plugin = PyMySQLPlugin()
