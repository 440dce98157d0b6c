"""``psycopg2`` (2.9.2+, also installed as ``psycopg2-binary``): an exit span ``PostgreSQL/Psycopg/<method>`` around
each ``execute``, ``executemany`` and ``callproc`` of a cursor, covering the round trip to the server (an
``executemany`` is one span for all its rows). Peer = ``host:port`` of the connection (the socket path for a unix
socket), layer Database, component Psycopg (7010); tags ``db.type`` = ``PostgreSQL``, ``db.instance`` (database
name), ``db.statement`` (cut to 2048 characters in the tag, never in the query) and ``db.sql.parameters`` when
``plugin_sql_parameters_max_length`` > 0 (the first row of an ``executemany``). A failing call marks its span as an
error; the exception reaches the application unchanged.

psycopg2's cursor and connection are C types whose methods cannot be patched, so ``psycopg2.connect`` is wrapped to
pass a subclass of the chosen ``connection_factory`` (``extensions.connection`` by default), whose ``cursor()`` in
turn builds its cursor from a subclass of the chosen ``cursor_factory`` (``DictCursor``, ``RealDictCursor``, ...)
that adds the spans. No proxy is involved: connections and cursors stay real psycopg2 objects (``isinstance`` holds),
so ``extensions.register_type``, ``extras.register_uuid``/``register_hstore``/``register_json``, ``execute_values``
and ``copy_*`` accept them. Not traced: connections made before the plugin was installed or by a
``connection_factory`` that is a plain function, async (``async_=True``) connections, ``copy_*`` and server-side
(named) cursor fetches."""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Mapping
from typing import Any

from packaging.requirements import Requirement
from packaging.version import InvalidVersion, Version

from skywalking import Component
from skywalking.loggings import logger
from skywalking.plugins import Plugin
from skywalking.plugins._sql import exit_span, first_row
from skywalking.trace.span import Span

_DISTRIBUTIONS = ("psycopg2", "psycopg2-binary")  # one module, two distributions


def _span(cursor: Any, method: str, statement: Any, params: Any) -> Span | None:
    """The exit span (not started) of one call on ``cursor``; None when it is not to be traced."""
    if not plugin.installed:
        return None
    try:
        conn = cursor.connection
        if getattr(conn, "async_", 0):
            return None
        info = conn.info
        host, port = info.host, info.port
        if host and host.startswith("/"):  # unix socket directory
            host, port = f"{host}/.s.PGSQL.{port}", None
        return exit_span(f"PostgreSQL/Psycopg/{method}", host, port, Component.Psycopg, "PostgreSQL", info.dbname,
                         statement, params)
    except Exception:  # never into the application: run the call untraced
        logger.debug("sw_psycopg2: no span for a %s", method, exc_info=True)
        return None


def _arg(args: tuple[Any, ...], kwargs: Mapping[str, Any], index: int, name: str) -> Any:
    return args[index] if len(args) > index else kwargs.get(name)


class _Classes:
    """The traced connection and cursor bases, built once psycopg2 is imported."""

    connection: Any = None
    cursor: Any = None
    connections: dict[type, type] = {}
    cursors: dict[type, type] = {}


def _build() -> None:
    if _Classes.connection is not None:
        return
    extensions: Any = importlib.import_module("psycopg2.extensions")

    class TracedCursor(extensions.cursor):
        """Spans around the statement-running methods; ``super()`` reaches the C cursor."""

        def execute(self, *args: Any, **kwargs: Any) -> Any:
            span = _span(self, "execute", _arg(args, kwargs, 0, "query"), _arg(args, kwargs, 1, "vars"))
            if span is None:
                return super().execute(*args, **kwargs)
            with span:
                return super().execute(*args, **kwargs)

        def executemany(self, *args: Any, **kwargs: Any) -> Any:
            span = _span(self, "executemany", _arg(args, kwargs, 0, "query"),
                         first_row(_arg(args, kwargs, 1, "vars_list")))
            if span is None:
                return super().executemany(*args, **kwargs)
            with span:
                return super().executemany(*args, **kwargs)

        def callproc(self, *args: Any, **kwargs: Any) -> Any:
            span = _span(self, "callproc", _arg(args, kwargs, 0, "procname"), _arg(args, kwargs, 1, "parameters"))
            if span is None:
                return super().callproc(*args, **kwargs)
            with span:
                return super().callproc(*args, **kwargs)

    class TracedConnection(extensions.connection):
        """Builds every cursor from a traced subclass of the cursor factory asked for."""

        def cursor(self, *args: Any, **kwargs: Any) -> Any:
            try:
                factory = _arg(args, kwargs, 1, "cursor_factory") or self.cursor_factory or extensions.cursor
                traced = _traced(factory, _Classes.cursor, _Classes.cursors, extensions.cursor)
                if traced is not None:
                    if len(args) > 1:
                        args = (args[0], traced, *args[2:])
                    else:
                        kwargs["cursor_factory"] = traced
            except Exception:
                logger.debug("sw_psycopg2: cursor left untraced", exc_info=True)
            return super().cursor(*args, **kwargs)

    _Classes.cursor, _Classes.connection = TracedCursor, TracedConnection


def _traced(factory: Any, mixin: type, cache: dict[type, type], base: type) -> type | None:
    """``factory`` with ``mixin`` placed just above the C ``base`` in its MRO (so the factory's own overrides
    run first and the span covers only the C call); None when ``factory`` is not a subclass of ``base``."""
    if not isinstance(factory, type) or not issubclass(factory, base):
        return None
    if issubclass(factory, mixin):
        return factory
    if factory is base:
        return mixin
    traced = cache.get(factory)
    if traced is None:
        traced = type(factory.__name__, (factory, mixin),
                      {"__module__": factory.__module__, "__qualname__": factory.__qualname__})
        cache[factory] = traced
    return traced


def _connect(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    try:
        extensions: Any = importlib.import_module("psycopg2.extensions")
        factory = _arg(args, kwargs, 1, "connection_factory") or extensions.connection
        traced = _traced(factory, _Classes.connection, _Classes.connections, extensions.connection)
        if traced is not None:
            if len(args) > 1:
                args = (args[0], traced, *args[2:])
            else:
                kwargs = {**kwargs, "connection_factory": traced}
    except Exception:
        logger.debug("sw_psycopg2: connection left untraced", exc_info=True)
    return wrapped(*args, **kwargs)


class Psycopg2Plugin(Plugin):
    name = "sw_psycopg2"
    instruments = ("psycopg2>=2.9.2",)
    modules = ("psycopg2",)
    note = ("psycopg2 or psycopg2-binary (`connect` passes traced subclasses of the connection and cursor factories: "
            "`execute`, `executemany`, `callproc`)")

    def check_versions(self) -> tuple[bool, str]:
        """As declared, for whichever of ``psycopg2`` and ``psycopg2-binary`` is installed."""
        spec = Requirement(self.instruments[0]).specifier
        for dist in _DISTRIBUTIONS:
            try:
                installed = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                continue
            try:
                if spec.contains(Version(installed), prereleases=True):
                    return True, ""
            except InvalidVersion:
                return False, f"{dist} has an unparsable version {installed!r}"
            return False, f"{dist} {installed} is outside the supported range {spec}"
        return False, "psycopg2 is not installed"

    def _install(self) -> None:
        _build()
        self.wrap("psycopg2", "connect", _connect)


plugin = Psycopg2Plugin()
