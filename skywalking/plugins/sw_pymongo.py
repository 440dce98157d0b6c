"""``pymongo`` 4.x (``MongoClient``, and ``AsyncMongoClient`` from pymongo 4.9): an exit span
``MongoDB/<Command>Operation`` per command round trip, the command name with its first letter upper-cased
(``find`` -> ``MongoDB/FindOperation``, ``getMore`` -> ``MongoDB/GetMoreOperation``, ``insert``, ``update``,
``delete``, ``aggregate``, ``killCursors``, ``findAndModify``, ...). Iterating a cursor gives one span per
``getMore``; ``insert_many`` and ``bulk_write`` give one span per batch command pymongo sends.

How: a ``pymongo.monitoring.CommandListener`` of ours is added to the ``event_listeners`` of every client built
while the plugin is installed (``MongoClient.__init__`` and ``AsyncMongoClient.__init__`` are wrapped; the
caller's own listeners are kept). pymongo calls it in the thread / asyncio task that runs the command, right
before the request is sent and right after the reply is read (or the command fails), so the span covers the round
trip and is the active span in the caller's context meanwhile.

Peer = ``host:port`` of the server that answered (the socket path for a unix socket), layer Database, component
MongoDB (9); tags ``db.type`` = ``MongoDB``, ``db.instance`` (the database) and ``db.statement``: the command name,
followed when ``plugin_pymongo_trace_parameters`` is on by the command document as relaxed Extended JSON
(collection, filter, sort, inserted documents, updates, deletes, pipeline; the fields the driver adds, ``$db``,
``$clusterTime``, ``$readPreference``, ``lsid``, ``txnNumber`` and the like, left out), that JSON cut to
``plugin_pymongo_parameters_max_length`` characters with ``...`` appended (0 or less: the name alone).

A command that fails (the server answers ``ok: 0``, the connection breaks) is an error span carrying the traceback
of the exception pymongo is handling when it reports the failure (for a broken connection on older pymongo, the
socket's ``OSError`` that it then raises as ``AutoReconnect``); a write whose reply lists ``writeErrors`` or a
``writeConcernError`` is an error span with the server's message. pymongo raises its own exception to the
application, untouched. An unacknowledged write (``w=0``) has no reply: its span covers the send.

Never traced: the connection handshake and heartbeats (pymongo reports neither as commands), ``hello`` /
``isMaster`` sent by the application, authentication (``saslStart``, ``saslContinue``, ``authenticate``,
``getnonce``); ``killCursors`` and ``endSessions`` outside a trace (pymongo's own clean-up from its background
thread or at ``close()``); anything inside another exit span; clients built before the plugin was installed.
Motor (not tested) runs pymongo in worker threads: its commands would be traced there, each outside the caller's
trace."""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

from skywalking import Component, Kind, Layer, Log, LogItem, config
from skywalking.loggings import logger
from skywalking.plugins import Plugin
from skywalking.plugins._peer import host_port
from skywalking.trace.context import get_context, peek
from skywalking.trace.noop import NoopSpan
from skywalking.trace.span import Span
from skywalking.trace.tags import TagDbInstance, TagDbStatement, TagDbType

# commands that never get a span: hello / isMaster (the handshake's command) sent by the application, and
# authentication
_NEVER = frozenset({"hello", "isMaster", "ismaster", "saslStart", "saslstart", "saslContinue", "saslcontinue",
                    "authenticate", "getnonce", "copydbgetnonce", "copydbsaslstart"})
# pymongo's clean-up commands: traced only inside a trace (else sent by its background thread or at exit)
_CLEANUP = frozenset({"killCursors", "endSessions"})
# fields of the command document the driver adds for sessions, transactions and routing: not in db.statement
_DRIVER_FIELDS = frozenset({"lsid", "txnNumber", "autocommit", "startTransaction", "apiVersion", "apiStrict",
                            "apiDeprecationErrors"})
_CACHE_MAX = 512  # operation names and peers cached (few of each; the cap bounds a misuse)

# the span of the command running in this thread / task, between its started and finished events
_current: ContextVar[Span | None] = ContextVar("sw_pymongo_span", default=None)
_ops: dict[str, str] = {}
_peers: dict[Any, str | None] = {}
_json_util: Any = None  # bson.json_util and its relaxed options, imported with the plugin
_json_options: Any = None


def _op(name: str) -> str:
    op = _ops.get(name)
    if op is None:
        op = f"MongoDB/{name[:1].upper()}{name[1:]}Operation"
        if len(_ops) < _CACHE_MAX:
            _ops[name] = op
    return op


def _peer(address: Any) -> str | None:
    """``host:port`` of a server address as pymongo gives it (``(host, port)``; ``(path, None)`` for a unix
    socket: the path)."""
    peer = _peers.get(address)
    if peer is None and isinstance(address, tuple) and len(address) == 2 and address[0]:
        peer = host_port(str(address[0]), address[1])
        if len(_peers) < _CACHE_MAX:
            _peers[address] = peer
    return peer


def _statement(name: str, command: Any) -> str:
    """``db.statement``: the name, then (when configured) the command document cut to the configured length."""
    if not config.plugin_pymongo_trace_parameters:
        return name
    limit = config.plugin_pymongo_parameters_max_length
    if limit <= 0 or not isinstance(command, Mapping):
        return name
    shown = {k: v for k, v in command.items() if k not in _DRIVER_FIELDS and not str(k).startswith("$")}
    return f"{name} {_json_cut(shown, limit)}"


def _json_cut(value: Any, limit: int) -> str:
    """``value`` as relaxed Extended JSON, cut to ``limit`` characters (+ ``...``); encoding stops past the limit,
    so a large insert is not encoded whole."""
    parts: list[str] = []
    size = 0

    def put(text: str) -> bool:
        nonlocal size
        parts.append(text)
        size += len(text)
        return size > limit

    def walk(item: Any) -> bool:  # True once past the limit
        if isinstance(item, Mapping):
            if put("{"):
                return True
            for i, (key, sub) in enumerate(item.items()):
                if (i and put(", ")) or put(json.dumps(str(key)) + ": ") or walk(sub):
                    return True
            return put("}")
        if isinstance(item, (list, tuple)):
            if put("["):
                return True
            for i, sub in enumerate(item):
                if (i and put(", ")) or walk(sub):
                    return True
            return put("]")
        try:
            return put(_json_util.dumps(item, json_options=_json_options))
        except Exception:  # a type bson cannot write as JSON: its text
            return put(json.dumps(str(item)))

    walk(value)
    text = "".join(parts)
    return text if size <= limit else text[:limit] + "..."


def _close_stale(span: Span) -> None:
    """A span whose command never reported its end (older pymongo publishes no failure for a ``BaseException``
    such as ``KeyboardInterrupt``): end it as an error so that the caller's context is not left inside it."""
    span.error_occurred = True
    span.logs = [Log(items=[LogItem("event", "error"), LogItem("message", "the command did not report its end")])]
    span.stop()


def _started(_: Any, event: Any) -> None:
    if not plugin.installed:
        return
    try:
        stale = _current.get()
        if stale is not None:
            _current.set(None)
            _close_stale(stale)
        name = event.command_name
        if name in _NEVER:
            return
        active = peek()
        if active is not None and active.kind is Kind.Exit:  # the caller's own exit span stands for this call
            return
        if active is None and name in _CLEANUP:
            return
        span = get_context().new_exit_span(op=_op(name), peer=_peer(event.connection_id),
                                           component=Component.MongoDB)
        if isinstance(span, NoopSpan):
            return
        span.layer = Layer.Database
        span.tag(TagDbType("MongoDB")).tag(TagDbInstance(event.database_name))
        span.tag(TagDbStatement(_statement(name, event.command)))
        span.start()
        _current.set(span)
    except Exception:  # never into pymongo or the application: this command goes untraced
        logger.debug("sw_pymongo: no span for a command", exc_info=True)


def _write_error(reply: Any) -> str | None:
    """The first write error or write concern error of a write command's reply, as text; None without one."""
    if not isinstance(reply, Mapping):
        return None
    errors = reply.get("writeErrors")
    if errors:
        first = errors[0]
        return f"{first.get('code')}: {first.get('errmsg')}" if isinstance(first, Mapping) else str(first)
    concern = reply.get("writeConcernError")
    if concern:
        return f"{concern.get('code')}: {concern.get('errmsg')}" if isinstance(concern, Mapping) else str(concern)
    return None


def _succeeded(_: Any, event: Any) -> None:
    span = _current.get()
    if span is None:
        return
    _current.set(None)
    try:
        try:
            error = _write_error(event.reply)
            if error is not None:
                span.error_occurred = True
                span.logs = [Log(items=[LogItem("event", "error"), LogItem("error.kind", "WriteError"),
                                        LogItem("message", error)])]
        finally:
            span.stop()
    except Exception:
        logger.debug("sw_pymongo: reply not recorded", exc_info=True)


def _failed(_: Any, event: Any) -> None:
    span = _current.get()
    if span is None:
        return
    _current.set(None)
    try:
        try:
            span.raised()  # pymongo reports a failure while handling the exception: its traceback
            if not span.logs:
                span.logs = [Log(items=[LogItem("event", "error"), LogItem("message", str(event.failure))])]
        finally:
            span.stop()
    except Exception:
        logger.debug("sw_pymongo: failure not recorded", exc_info=True)


_listener: Any = None  # the one listener instance, made on install (its class needs pymongo)


def _with_listener(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``MongoClient.__init__``: our listener appended to the caller's ``event_listeners`` (theirs kept, first)."""
    try:
        key = next((k for k in kwargs if k.lower() == "event_listeners"), "event_listeners")
        given = kwargs.get(key)
        listeners = list(given) if given else []
        if _listener is not None and _listener not in listeners:
            kwargs[key] = [*listeners, _listener]
    except Exception:  # e.g. a value pymongo will refuse itself: leave it to pymongo's own message
        logger.debug("sw_pymongo: client not traced", exc_info=True)
    return wrapped(*args, **kwargs)


class PymongoPlugin(Plugin):
    name = "sw_pymongo"
    instruments = ("pymongo>=4.0",)
    modules = ("pymongo",)
    note = ("pymongo 4, `MongoClient` and `AsyncMongoClient` (4.9+): a command listener added by their `__init__`, "
            "one span per command round trip")

    def _install(self) -> None:
        global _listener, _json_util, _json_options
        monitoring = importlib.import_module("pymongo.monitoring")
        json_util = importlib.import_module("bson.json_util")
        _json_util, _json_options = json_util, json_util.RELAXED_JSON_OPTIONS
        if _listener is None:
            methods = {"started": _started, "succeeded": _succeeded, "failed": _failed}
            _listener = type("SkyWalkingCommandListener", (monitoring.CommandListener,), methods)()
        self.wrap("pymongo.mongo_client", "MongoClient.__init__", _with_listener)
        self.when_imported("pymongo.asynchronous.mongo_client", self._install_async)

    def _install_async(self) -> None:
        self.wrap("pymongo.asynchronous.mongo_client", "AsyncMongoClient.__init__", _with_listener)


plugin = PymongoPlugin()
