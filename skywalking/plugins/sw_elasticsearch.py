"""``elasticsearch`` (elasticsearch-py 8.x and 9.x, sync and ``AsyncElasticsearch``): an exit span
``Elasticsearch/<METHOD><path>`` (the path without its query string, document ids included, e.g.
``Elasticsearch/PUT/books/_doc/1``) around ``elastic_transport``'s ``Transport.perform_request`` and
``AsyncTransport.perform_request``, the one call every API method of the client ends in.

One span per request, covering serialization, the client's own retries (on other nodes too) and the
deserialized answer; the HTTP client underneath (urllib3, requests, aiohttp, httpx) adds no span of its own, and
no header is sent to the cluster. Peer = ``host:port`` of the node that answered, or, when none did (connection
errors), the configured nodes joined by ``,``. Layer Database, component Elasticsearch (47), tags ``db.type``
(``Elasticsearch``) and, with ``plugin_elasticsearch_trace_dsl``, ``db.statement``: the request body as sent (JSON,
or NDJSON for ``bulk``), cut to ``STATEMENT_MAX`` (2048) characters.

Errors: an exception (connection error, timeout, a body that does not serialize) marks the span and reaches the
application unchanged; an answer with status 400 or above marks the span and logs the status with Elasticsearch's
``error.type`` and ``reason``, except a 404 to a ``HEAD`` (the client's ``exists`` answers "no" that way). The
transport cannot see a client's ``ignore_status``: such answers are still error spans. A call made inside another
exit span (the user's own) is not traced."""

from __future__ import annotations

import json
from typing import Any

from skywalking import Component, Layer, Log, LogItem, config
from skywalking.loggings import logger
from skywalking.plugins import Plugin
from skywalking.plugins._peer import host_port
from skywalking.trace.context import get_context, inside_exit_span
from skywalking.trace.span import Span
from skywalking.trace.tags import TagDbStatement, TagDbType

STATEMENT_MAX = 2048  # characters of db.statement (the body sent is never touched)
_DB_TYPE = TagDbType("Elasticsearch")  # tags are never modified: one object serves every span


def _text(body: Any, transport: Any, headers: Any) -> str:
    """The request body as the transport sends it (its own serializer for the request's content type)."""
    if isinstance(body, (bytes, bytearray)):
        return bytes(body).decode("utf-8", "replace")
    if isinstance(body, str):
        return body
    try:
        mimetype = headers.get("content-type") or headers.get("Content-Type")
        return _text(transport.serializers.dumps(body, mimetype=mimetype), transport, headers)
    except Exception:  # the transport will refuse it too; record what we can
        return json.dumps(body, default=str)


def _start(transport: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Span | None:
    """The started span of ``perform_request(method, target, ...)``; None when it is not to be traced."""
    if inside_exit_span():
        return None
    try:
        method = args[0] if args else kwargs["method"]
        target = args[1] if len(args) > 1 else kwargs["target"]
        span = get_context().new_exit_span(op=f"Elasticsearch/{method}{target.partition('?')[0]}",
                                           component=Component.Elasticsearch)
        span.layer = Layer.Database
        span.tag(_DB_TYPE)
        body = kwargs.get("body")
        if body is not None and config.plugin_elasticsearch_trace_dsl:
            span.tag(TagDbStatement(_text(body, transport, kwargs.get("headers") or {})[:STATEMENT_MAX]))
        return span.start()
    except Exception:  # never into the application: the request runs untraced
        logger.debug("sw_elasticsearch: no span for a request", exc_info=True)
        return None


def _nodes(transport: Any) -> str | None:
    """The configured nodes, ``host:port`` joined by ``,``."""
    nodes = [host_port(node.host, node.port) for node in transport.node_pool.all()]
    return ",".join(nodes) or None


def _answered(span: Span, transport: Any, method: Any, result: Any) -> None:
    """Peer and error state from the transport's answer: ``(meta, body)``."""
    try:
        meta, body = result[0], result[1]
        node = meta.node
        span.peer = host_port(node.host, node.port) if node is not None else _nodes(transport)
        status = meta.status
        if status >= 400 and not (status == 404 and method == "HEAD"):
            span.error_occurred = True
            error = body.get("error") if isinstance(body, dict) else None
            items = [LogItem("event", "error"), LogItem("http.status_code", str(status))]
            if isinstance(error, dict):  # Elasticsearch's error body: {"error": {"type", "reason", ...}, "status"}
                items += [LogItem("error.kind", str(error.get("type"))), LogItem("message", str(error.get("reason")))]
            elif error is not None:
                items.append(LogItem("message", str(error)))
            span.logs = [Log(items=items)]
    except Exception:
        logger.debug("sw_elasticsearch: unreadable answer", exc_info=True)


def _failed(span: Span, transport: Any) -> None:
    """Called in the ``except`` block of a request that raised: no node gave an answer."""
    span.raised()
    try:
        span.peer = _nodes(transport)
    except Exception:
        logger.debug("sw_elasticsearch: no node list", exc_info=True)


def _method(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return args[0] if args else kwargs.get("method")


def _perform_request(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    span = _start(instance, args, kwargs)
    if span is None:
        return wrapped(*args, **kwargs)
    try:
        result = wrapped(*args, **kwargs)
    except Exception:
        _failed(span, instance)
        raise
    else:
        _answered(span, instance, _method(args, kwargs), result)
        return result
    finally:
        span.stop()


async def _perform_request_async(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    span = _start(instance, args, kwargs)
    if span is None:
        return await wrapped(*args, **kwargs)
    try:
        result = await wrapped(*args, **kwargs)
    except Exception:
        _failed(span, instance)
        raise
    else:
        _answered(span, instance, _method(args, kwargs), result)
        return result
    finally:
        span.stop()


class ElasticsearchPlugin(Plugin):
    name = "sw_elasticsearch"
    instruments = ("elasticsearch>=8.0", "elastic-transport>=8.0")
    modules = ("elastic_transport",)
    note = ("elasticsearch-py 8 and 9, sync and `AsyncElasticsearch` (`elastic_transport`'s `Transport` / "
            "`AsyncTransport.perform_request`)")

    def _install(self) -> None:
        # modules by name: an import hook may run before the submodules are set on their package
        self.wrap("elastic_transport._transport", "Transport.perform_request", _perform_request)
        self.wrap("elastic_transport._async_transport", "AsyncTransport.perform_request", _perform_request_async)


plugin = ElasticsearchPlugin()
