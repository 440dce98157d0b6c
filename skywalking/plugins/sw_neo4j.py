"""``neo4j`` (the Neo4j Python driver 5.x and 6.x, sync and async): an exit span per Cypher query sent, patched on the
classes so every driver, session and transaction is traced:

* ``Neo4j/Session/run`` and ``Neo4j/AsyncSession/run``: ``Session.run`` / ``AsyncSession.run`` (auto-commit
  queries);
* ``Neo4j/Transaction/run`` and ``Neo4j/AsyncTransaction/run``: ``run`` of explicit transactions
  (``begin_transaction``) and of managed ones (``execute_read``, ``execute_write``, and ``Driver.execute_query``,
  which runs its query in a managed transaction), all of them ``TransactionBase.run`` / ``AsyncTransactionBase.run``.

A span covers what ``run`` does: taking a connection, sending the query and waiting for the server's answer to it,
so a query the server refuses (syntax, parameters, authentication) is an error span; records fetched later, while
the application reads the result, are not part of it. Peer = ``host:port`` the driver was given (the session's pool
address; the connection's address in a transaction), layer Database, component Neo4j (112); tags ``db.type`` =
``Neo4j``, ``db.instance`` (the database the session or transaction names; absent for the default database until
the driver has learnt its name), ``db.statement`` (the query text, a ``neo4j.Query``'s ``text``; cut to 2048
characters in the tag, never in the query) and ``db.sql.parameters`` when ``plugin_sql_parameters_max_length`` > 0:
the parameters (the mapping and the keyword arguments merged, as the driver does) as ``[<JSON>]`` (values JSON
cannot hold as their ``str()``), cut to that many characters. A failing call marks its span as an error; the
exception reaches the application unchanged. A query run inside another exit span is not recorded twice."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from skywalking import Component, config
from skywalking.loggings import logger
from skywalking.plugins import Plugin
from skywalking.plugins._sql import exit_span
from skywalking.trace.span import Span
from skywalking.trace.tags import TagDbSqlParameters

Target = Callable[[Any], tuple[Any, Any]]  # instance -> (address, database)


def _session_target(session: Any) -> tuple[Any, Any]:
    return getattr(session._pool, "address", None), getattr(session._config, "database", None)


def _transaction_target(tx: Any) -> tuple[Any, Any]:
    return getattr(tx._connection, "unresolved_address", None), getattr(tx, "_database", None)


def _parameters(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str | None:
    """``db.sql.parameters``: the query's parameters as ``[<JSON>]``, or None when not recorded."""
    limit = config.plugin_sql_parameters_max_length
    if limit <= 0:
        return None
    params = dict(args[1] if len(args) > 1 and args[1] else kwargs.get("parameters") or {})
    params.update((k, v) for k, v in kwargs.items() if k not in ("query", "parameters"))
    if not params:
        return None
    shown = f"[{json.dumps(params, ensure_ascii=False, default=str)}]"
    return shown if len(shown) <= limit else shown[:limit] + "..."


def _span(op: str, target: Target, instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Span | None:
    """The exit span (not started) of ``instance.run(*args, **kwargs)``; None when it is not to be traced."""
    try:
        query = args[0] if args else kwargs.get("query")
        address, database = target(instance)
        host, port = (getattr(address, "host", None), getattr(address, "port", None)) if address else (None, None)
        span = exit_span(op, host, port, Component.Neo4j, "Neo4j", database, getattr(query, "text", query))
        if span is not None:
            shown = _parameters(args, kwargs)
            if shown is not None:
                span.tag(TagDbSqlParameters(shown))
        return span
    except Exception:  # never into the application: run the query untraced
        logger.debug("sw_neo4j: no span for a %s", op, exc_info=True)
        return None


def _run(op: str, target: Target) -> Callable[[Any, Any, Any, Any], Any]:
    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        span = _span(op, target, instance, args, kwargs)
        if span is None:
            return wrapped(*args, **kwargs)
        with span:
            return wrapped(*args, **kwargs)

    return wrapper


def _run_async(op: str, target: Target) -> Callable[[Any, Any, Any, Any], Any]:
    async def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        span = _span(op, target, instance, args, kwargs)
        if span is None:
            return await wrapped(*args, **kwargs)
        with span:
            return await wrapped(*args, **kwargs)

    return wrapper


class Neo4jPlugin(Plugin):
    name = "sw_neo4j"
    instruments = ("neo4j>=5.0",)
    modules = ("neo4j",)
    note = ("Neo4j driver, sync and async (`Session.run`, `AsyncSession.run`, `TransactionBase.run`, "
            "`AsyncTransactionBase.run`: explicit and managed transactions, `Driver.execute_query`)")

    def _install(self) -> None:
        # by module name: the hook may run before the submodules are set on their packages
        self.wrap("neo4j._sync.work.session", "Session.run", _run("Neo4j/Session/run", _session_target))
        self.wrap("neo4j._sync.work.transaction", "TransactionBase.run",
                  _run("Neo4j/Transaction/run", _transaction_target))
        self.wrap("neo4j._async.work.session", "AsyncSession.run",
                  _run_async("Neo4j/AsyncSession/run", _session_target))
        self.wrap("neo4j._async.work.transaction", "AsyncTransactionBase.run",
                  _run_async("Neo4j/AsyncTransaction/run", _transaction_target))


plugin = Neo4jPlugin()
