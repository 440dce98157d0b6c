"""``MySQLdb`` (mysqlclient 2.1+): an exit span ``Mysql/MysqlClient/execute`` around ``BaseCursor.execute`` and one
span ``Mysql/MysqlClient/executemany`` around ``BaseCursor.executemany`` (the statements it runs inside are not spans
of their own); every cursor class inherits them. ``Connection.__init__`` is wrapped to remember where a connection
goes (the C connection does not say on 2.1), ``Connection.select_db`` to follow a change of database. Peer =
``host:port`` given to ``connect()`` (``localhost:3306`` by default; the socket path when ``unix_socket`` is given
with no host or ``localhost``), layer Database, component MysqlClient (7013); tags ``db.type`` (``mysql``),
``db.instance``, ``db.statement`` (the SQL as passed, placeholders kept, cut to 2048 characters in the tag only)
and, when ``plugin_sql_parameters_max_length`` > 0, ``db.sql.parameters`` (the first row for ``executemany``).
A call that raises marks its span as an error; the exception reaches the caller unchanged. PyMySQL installed as
``MySQLdb`` (``pymysql.install_as_MySQLdb()``) is left to sw_pymysql. ``callproc`` and ``Connection.query`` are
not traced."""

from __future__ import annotations

import sys
import weakref
from typing import Any

from skywalking import Component
from skywalking.loggings import logger
from skywalking.plugins import Plugin, _sql
from skywalking.trace.span import Span

# connection -> [host, port, unix socket, database], from the arguments of Connection.__init__ and select_db()
_where: weakref.WeakKeyDictionary[Any, list[Any]] = weakref.WeakKeyDictionary()
_PARAMS = ("host", "user", "password", "database", "port", "unix_socket")  # the C connection's positional order
_ALIASES = {"passwd": "password", "db": "database"}


def _address(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
    given = dict(zip(_PARAMS, args, strict=False))
    for key, value in kwargs.items():
        given.setdefault(_ALIASES.get(key, key), value)
    return [given.get("host"), given.get("port"), given.get("unix_socket"), given.get("database")]


def _init(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    result = wrapped(*args, **kwargs)
    try:
        _where[instance] = _address(args, kwargs)
    except Exception:
        logger.debug("sw_mysqlclient: connection address not recorded", exc_info=True)
    return result


def _select_db(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    result = wrapped(*args, **kwargs)
    try:
        where = _where.get(instance)
        if where is not None:
            where[3] = args[0] if args else kwargs["db"]
    except Exception:
        logger.debug("sw_mysqlclient: select_db not recorded", exc_info=True)
    return result


def _connection_address(conn: Any) -> tuple[Any, Any, Any]:
    """(host, port, database) of ``conn``; host is the socket path for a unix socket."""
    try:
        where = _where.get(conn)
    except TypeError:  # an unhashable connection subclass
        where = None
    if where is None:  # made before the plugin was installed: what mysqlclient 2.2+ keeps on the connection
        where = [getattr(conn, "host", None), getattr(conn, "port", None), None, getattr(conn, "database", None)]
    host, port, unix_socket, database = where
    if unix_socket and host in (None, "", "localhost"):
        return unix_socket, None, database
    return host or "localhost", port or 3306, database


def _span(cursor: Any, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Span | None:
    """The exit span of ``cursor.<method>(...)``; None when the call is not to be traced."""
    try:
        query = args[0] if args else kwargs.get("query")
        params = args[1] if len(args) > 1 else kwargs.get("args")
        conn = getattr(cursor, "connection", None)
        if query is None or conn is None:  # a closed cursor or a bad call: the library raises its own error
            return None
        if method == "executemany":
            params = _sql.first_row(params)
        host, port, database = _connection_address(conn)
        return _sql.exit_span(f"Mysql/MysqlClient/{method}", host, port, Component.MysqlClient, "mysql", database,
                              query, params)
    except Exception:  # never into the application: run the statement untraced
        logger.debug("sw_mysqlclient: no span for %s", method, exc_info=True)
        return None


class MysqlclientPlugin(Plugin):
    name = "sw_mysqlclient"
    instruments = ("mysqlclient>=2.1",)
    modules = ("MySQLdb",)
    note = "mysqlclient, `MySQLdb` (`BaseCursor.execute`, `BaseCursor.executemany`)"

    def _install(self) -> None:
        module = sys.modules.get("MySQLdb")
        if module is not None and getattr(module, "__name__", "") != "MySQLdb":
            # pymysql.install_as_MySQLdb(): the real package may be installed too, but this is PyMySQL
            logger.info("plugin sw_mysqlclient: MySQLdb is %s here; sw_pymysql traces it", module.__name__)
            return
        self.wrap("MySQLdb.connections", "Connection.__init__", _init)
        self.wrap("MySQLdb.connections", "Connection.select_db", _select_db)
        self.wrap("MySQLdb.cursors", "BaseCursor.execute", _sql.call_in_span(_span, "execute"))
        self.wrap("MySQLdb.cursors", "BaseCursor.executemany", _sql.call_in_span(_span, "executemany"))


plugin = MysqlclientPlugin()
