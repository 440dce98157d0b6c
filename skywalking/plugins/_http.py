"""Helpers shared by the HTTP plugins: peers, URLs without credentials, status tags and error rules."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import SplitResult, parse_qsl

from skywalking import Component, Kind, Layer, config
from skywalking.plugins._peer import host_port
from skywalking.trace.carrier import inbound_carrier, inbound_header_names
from skywalking.trace.context import get_context, peek
from skywalking.trace.span import Span
from skywalking.trace.tags import TagHttpMethod, TagHttpParams, TagHttpStatusCode, TagHttpURL
from skywalking.utils.filter import without_credentials


def ignored_method(method: Any) -> bool:
    """True when requests with this HTTP method are not traced (``plugin_http_ignore_method``): every HTTP
    plugin, server and client, asks this first and then leaves the request alone (no span, no header)."""
    if isinstance(method, (bytes, bytearray)):
        method = method.decode("latin-1")
    return config.ignore_http_method_check(str(method or "GET"))


def route_templates(alias: bool = False) -> bool:
    """Whether entry spans are named after route templates (``plugin_http_route_template``, or a
    framework's own older option given as ``alias``)."""
    return bool(config.plugin_http_route_template or alias)


def entry_span_of(component: Component) -> Span | None:
    """The active span if it is an entry span of ``component`` (the framework's own request span)."""
    span = peek()
    return span if span is not None and span.kind is Kind.Entry and span.component is component else None


def rename_entry_span(component: Component, op: str | None) -> None:
    """Name the active entry span of ``component`` ``op`` (a route template found once the request was routed,
    before the handler runs: its calls carry the template as their parent endpoint); nothing when either is
    missing."""
    span = entry_span_of(component) if op else None
    if span is not None:
        span.op = op


def url_without_credentials(parts: SplitResult) -> str:
    """The URL with any ``user:password@`` removed (the query is kept)."""
    return without_credentials(parts).geturl()


def http_exit_span(parts: SplitResult, method: str, component: Component) -> Span:
    """The exit span (not started yet) of a client call to ``parts``: op = path, peer = ``host:port`` (the
    port from the scheme when absent), layer Http, tagged with the method and the URL without credentials."""
    port = parts.port or (443 if parts.scheme in ("https", "wss") else 80)
    span = get_context().new_exit_span(op=parts.path or "/", peer=host_port(parts.hostname or "", port),
                                       component=component)
    span.layer = Layer.Http
    span.tag(TagHttpMethod(str(method).upper())).tag(TagHttpURL(url_without_credentials(parts)))
    return span


def with_headers(args: tuple[Any, ...], kwargs: dict[str, Any], at: int | None,
                 extra: dict[str, str]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """A call's ``args``/``kwargs`` with ``extra`` merged into its ``headers`` parameter (positional number
    ``at`` when given that way, else the keyword); the caller's own mapping is not modified."""
    if not extra:
        return args, kwargs
    if at is not None and len(args) > at:
        return (*args[:at], {**(args[at] or {}), **extra}, *args[at + 1:]), kwargs
    return args, {**kwargs, "headers": {**dict(kwargs.get("headers") or {}), **extra}}


def tag_response(span: Any, status: Any) -> None:
    """``http.status_code``, and the span marked as an error from 400 on."""
    if status is None:
        return
    span.tag(TagHttpStatusCode(status))
    try:
        if int(status) >= 400:
            span.error_occurred = True
    except (TypeError, ValueError):
        pass


def raw_headers(raw: Iterable[tuple[bytes, bytes]], *extra: str) -> dict[str, str]:
    """From ASGI-style ``(name, value)`` byte pairs, the headers this agent reads plus ``extra`` names
    (lower-case names; Latin-1, as HTTP/1.1 header bytes are)."""
    wanted = (*inbound_header_names(), *extra)
    found = {}
    for key, value in raw:
        name = key.decode("latin-1").lower()
        if name in wanted:
            found[name] = value.decode("latin-1")
    return found


# -- server side ----------------------------------------------------------------------------------

def http_entry_span(op: str, header: Callable[[str], str | None], inherit: Component | None = None) -> Span:
    """The entry span (not started) of one request, continuing the caller's header (``header(name)`` reads
    one). With ``inherit``, an entry span of that component already active (the generic WSGI one, say) is
    taken over instead of nesting a second one."""
    return get_context().new_entry_span(op=op or "/", carrier=inbound_carrier(header), inherit=inherit)


def describe_entry(span: Span, component: Component, method: str, url: str, peer: str | None,
                   query: str = "", collect_params: bool = False) -> None:
    """Layer, component, peer and tags of a started entry span (after ``start()``: a taken-over span is
    described from scratch); ``http.params`` from ``query`` when ``collect_params``."""
    span.layer, span.component = Layer.Http, component
    if peer:
        span.peer = peer
    span.tag(TagHttpMethod(method)).tag(TagHttpURL(url))
    if collect_params and query:
        span.tag(TagHttpParams(http_params(query)))


def http_params(query: str) -> str:
    """``http.params``: ``name=[v1,v2]`` per parameter, one per line, cut at
    ``plugin_http_http_params_length_threshold``."""
    values: dict[str, list[str]] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        values.setdefault(name, []).append(value)
    text = "\n".join(f"{name}=[{','.join(vals)}]" for name, vals in values.items())
    limit = config.plugin_http_http_params_length_threshold
    return text if len(text) <= limit else text[:limit] + "..."


def wsgi_header(environ: dict[str, Any]) -> Callable[[str], str | None]:
    """A header reader over a WSGI environ (``sw6`` → ``HTTP_SW6``)."""
    return lambda name: environ.get("HTTP_" + name.upper().replace("-", "_"))


def wsgi_url(environ: dict[str, Any]) -> str:
    """The request URL of a WSGI environ, query included."""
    host = environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME', '')}:{environ.get('SERVER_PORT', '')}"
    query = environ.get("QUERY_STRING")
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "/")
    return f"{environ.get('wsgi.url_scheme', 'http')}://{host}{path}" + (f"?{query}" if query else "")


def wsgi_start_response(span: Span, start_response: Callable[..., Any]) -> Callable[..., Any]:
    """A WSGI ``start_response`` that tags ``span`` with the status first."""
    def traced(status: str, headers: Any, exc_info: Any = None) -> Any:
        tag_response(span, status.split(" ", 1)[0])
        return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

    return traced


def wsgi_app_call(component: Component, wrapped: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                  collect_params: bool = False, prepare: Callable[[dict[str, Any]], None] | None = None) -> Any:
    """A framework's WSGI application called as ``app(environ, start_response)``, in an entry span of
    ``component`` (taking a ``wsgiref`` request span over). Left untraced: another call shape, an ignored method,
    an app called by another app of the framework (the outer span covers it). ``prepare(environ)`` runs inside
    the span before the app. An exception that escapes the app marks the span 500 (the server answers that)."""
    if len(args) != 2 or kwargs or not isinstance(args[0], dict):
        return wrapped(*args, **kwargs)
    environ, start_response = args
    method = environ.get("REQUEST_METHOD", "GET")
    if ignored_method(method) or entry_span_of(component) is not None:
        return wrapped(*args, **kwargs)
    span = http_entry_span(environ.get("PATH_INFO", "/"), wsgi_header(environ), inherit=Component.General)
    with span:
        describe_entry(span, component, method, wsgi_url(environ), wsgi_peer(environ),
                       environ.get("QUERY_STRING", ""), collect_params)
        if prepare is not None:
            prepare(environ)
        try:
            return wrapped(environ, wsgi_start_response(span, start_response))
        except Exception:
            tag_response(span, 500)
            raise


def asgi_url(scope: dict[str, Any], host: str | None, root_path: bool = False) -> str:
    """The request URL of an ASGI ``http`` scope (``root_path`` before the path when asked)."""
    host = host or ":".join(str(p) for p in scope.get("server") or ("", ""))
    query = scope.get("query_string", b"").decode("latin-1")
    prefix = scope.get("root_path", "") if root_path else ""
    return f"{scope.get('scheme', 'http')}://{host}{prefix}{scope.get('path', '/')}" + (f"?{query}" if query else "")


async def asgi_call(span: Span, wrapped: Callable[..., Any], scope: dict[str, Any], receive: Any, send: Any) -> Any:
    """Run an ASGI application inside the started ``span``: the status of its response start is tagged; no
    response at all counts as 500 (what the server answers then)."""
    started = False

    async def traced_send(message: dict[str, Any]) -> None:
        nonlocal started
        if message.get("type") == "http.response.start" and not started:
            started = True
            tag_response(span, message.get("status"))
        await send(message)

    try:
        return await wrapped(scope, receive, traced_send)
    finally:
        if not started:
            tag_response(span, 500)


def raised_on_entry_span() -> None:
    """Record the exception being handled on the active entry span (for frameworks' "turn it into a 500"
    hooks, called inside their ``except``)."""
    span = peek()
    if span is not None and span.kind is Kind.Entry:
        span.raised()


def wsgi_peer(environ: dict[str, Any]) -> str | None:
    """``address:port`` of the client, when the server tells."""
    addr = environ.get("REMOTE_ADDR")
    if not addr:
        return None
    return host_port(addr, environ.get("REMOTE_PORT"))
