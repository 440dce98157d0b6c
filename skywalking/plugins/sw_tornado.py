"""Tornado: an entry span per request around ``RequestHandler._execute`` (``prepare``, the handler method,
``finish``), continuing the caller's ``sw6``/``sw8`` header.

Tornado answers a handler's exception itself (``send_error``): ``log_exception`` is where it is seen, and the
span records it there. With route templates on, the op is the matched ``URLSpec``'s pattern written back as a
path (``/items/([0-9]+)`` -> ``/items/{0}``, ``(?P<id>...)`` -> ``{id}``); a pattern that cannot be written back
(alternatives, wildcards outside a group) and requests no rule matched keep the path.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

from skywalking import Component
from skywalking.plugins import Plugin
from skywalking.plugins._http import (
    describe_entry,
    http_entry_span,
    ignored_method,
    raised_on_entry_span,
    route_templates,
    tag_response,
)
from skywalking.plugins._peer import address_peer

_templates: dict[str, str | None] = {}  # pattern -> its readable form (None: not reversible); one per rule
_SPECIAL = frozenset(".^$*+?{}[]|")


def readable(pattern: str) -> str | None:
    """``/items/([0-9]+)$`` -> ``/items/{0}``, ``(?P<id>\\d+)`` -> ``{id}``; None when the pattern is more than
    literal text and capturing groups."""
    if pattern in _templates:
        return _templates[pattern]
    text = pattern.removeprefix("^")
    text = text[:-1] if text.endswith("$") and not text.endswith("\\$") else text
    out: list[str] = []
    i, n, pos = 0, len(text), 0
    result: str | None = None
    while i < n:
        ch = text[i]
        if ch == "\\":
            if i + 1 >= n or text[i + 1].isalnum():  # \d, \w ...: a class, not a literal
                break
            out.append(text[i + 1])
            i += 2
        elif ch == "(":
            end, depth = i, 0
            while end < n:
                if text[end] == "\\":
                    end += 2
                    continue
                depth += (text[end] == "(") - (text[end] == ")")
                if depth == 0:
                    break
                end += 1
            if end >= n:
                break
            named = re.match(r"\(\?P<(\w+)>", text[i:end])
            if named:
                out.append("{" + named.group(1) + "}")
            elif text.startswith("(?", i):  # non-capturing, look-around: not a path part
                break
            else:
                out.append("{" + str(pos) + "}")
                pos += 1
            i = end + 1
        elif ch in _SPECIAL:
            break
        else:
            out.append(ch)
            i += 1
    else:
        result = "".join(out) or "/"
    if len(_templates) < 1024:
        _templates[pattern] = result
    return result


def route_template(handler: Any) -> str | None:
    """The readable pattern of the rule that routed ``handler``'s request (nested routers included)."""
    request, target = handler.request, type(handler)
    rules = list(getattr(getattr(handler.application, "default_router", None), "rules", None) or ())
    for _ in range(4):  # routers nest (hosts, then paths); bounded
        nested = None
        for rule in rules:
            if rule.matcher.match(request) is None:
                continue
            if rule.target is target:
                regex = getattr(rule.matcher, "regex", None)
                return readable(regex.pattern) if regex is not None else None
            if getattr(rule.target, "rules", None) is not None:
                nested = rule.target.rules
                break
        if nested is None:
            return None
        rules = nested
    return None


async def _execute(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    request = instance.request
    if ignored_method(request.method):
        return await wrapped(*args, **kwargs)
    op = request.path
    if route_templates():
        try:
            op = route_template(instance) or op
        except Exception:  # a router of the application's own making: keep the path
            pass
    span = http_entry_span(op, request.headers.get)
    with span:
        context = getattr(request.connection, "context", None)
        peer = address_peer(getattr(context, "address", None)) or request.remote_ip
        describe_entry(span, Component.Tornado, request.method, request.full_url(), peer)
        try:
            return await wrapped(*args, **kwargs)
        finally:
            tag_response(span, instance.get_status())


def _log_exception(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``log_exception(typ, value, tb)``: Tornado caught a handler's exception (inside its ``except``); an
    ``HTTPError`` is an answer, its status says enough."""
    try:
        value = args[1] if len(args) > 1 else kwargs.get("value")
        if not isinstance(value, _http_error()):
            raised_on_entry_span()
    except Exception:  # never into the application
        pass
    return wrapped(*args, **kwargs)


def _http_error() -> type:
    return importlib.import_module("tornado.web").HTTPError


class TornadoPlugin(Plugin):
    name = "sw_tornado"
    instruments = ("tornado>=6.0",)
    modules = ("tornado.web",)
    note = "Tornado applications (`RequestHandler._execute`; errors through `log_exception`)"

    def _install(self) -> None:
        self.wrap("tornado.web", "RequestHandler._execute", _execute)
        self.wrap("tornado.web", "RequestHandler.log_exception", _log_exception)


plugin = TornadoPlugin()
