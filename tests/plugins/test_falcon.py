"""sw_falcon with real Falcon apps, ``falcon.App`` on wsgiref and ``falcon.asgi.App`` on uvicorn: a caller that
sends sw6 as a SkyWalking 6.6.0 service would, URI templates as operation names, checked against
expected/falcon.json (the scenario of test_web.py); then, in process (a wsgiref server on 127.0.0.1, and ASGI calls
straight into the app): the raw path without route templates, an ignored method, an sw8 caller, exceptions and
error handlers, uninstall."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

falcon = pytest.importorskip("falcon")
falcon_asgi = pytest.importorskip("falcon.asgi")

from skywalking import Component  # noqa: E402
from skywalking.plugins import sw_falcon  # noqa: E402
from tests.plugins.test_http import IGNORED  # noqa: E402
from tests.plugins.test_web import check_front, check_server_ignores  # noqa: E402
from tests.plugins.wsgi import entry, request, served, sw8, tags  # noqa: E402

HERE = Path(__file__).parent


@pytest.mark.parametrize("mode", ["wsgi", "asgi"])
def test_falcon_entry_spans_continue_the_caller(mode: str) -> None:
    if mode == "asgi":
        pytest.importorskip("uvicorn")
    check_front([sys.executable, str(HERE / "apps" / "falcon_app.py"), mode], "plugin-falcon", "falcon.json", 4,
                SW_PLUGIN_HTTP_ROUTE_TEMPLATE="true")


# -- in process --------------------------------------------------------------------------------------------------

def asgi_request(app: Any, method: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """One HTTP request straight into an ASGI app: the status and body it sent."""
    sent: list[dict[str, Any]] = []
    path, _, query = path.partition("?")
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
             "method": method, "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
             "query_string": query.encode(), "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 5000),
             "headers": [(b"host", b"127.0.0.1:8000")] + [(k.encode(), v.encode()) for k, v in (headers or {}).items()]}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


class Item:
    def on_get(self, req: Any, resp: Any, item_id: str) -> None:
        resp.text = f"item {item_id}"

    on_post = on_get


class AsyncItem:
    async def on_get(self, req: Any, resp: Any, item_id: str) -> None:
        resp.text = f"item {item_id}"

    on_post = on_get


class Failing:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def on_get(self, req: Any, resp: Any) -> None:
        raise self.exc


class AsyncFailing(Failing):
    async def on_get(self, req: Any, resp: Any) -> None:  # type: ignore[override]
        raise self.exc


def wsgi_app(**routes: Any) -> Any:
    app = falcon.App()
    app.add_route("/items/{item_id}", Item())
    for name, resource in routes.items():
        app.add_route(f"/{name}", resource)
    return app


def asgi_app(**routes: Any) -> Any:
    app = falcon_asgi.App()
    app.add_route("/items/{item_id}", AsyncItem())
    for name, resource in routes.items():
        app.add_route(f"/{name}", resource)
    return app


def test_without_route_templates_the_path_names_the_span(start_agent: Any) -> None:
    reporter = start_agent()
    with served(wsgi_app()) as port:
        assert request(port, "GET", "/items/7?q=1") == (200, b"item 7")
    span = entry(reporter)
    assert span.op == "/items/7" and span.component is Component.Falcon and not span.error_occurred
    assert tags(span) == {"http.method": "GET", "http.url": f"http://127.0.0.1:{port}/items/7?q=1",
                          "http.status_code": "200"}


def test_asgi_span_and_template(start_agent: Any) -> None:
    reporter = start_agent(plugin_http_route_template=True)
    assert asgi_request(asgi_app(), "GET", "/items/7?q=1") == (200, b"item 7")
    span = entry(reporter)
    assert span.op == "/items/{item_id}" and span.component is Component.Falcon and not span.error_occurred
    assert span.peer == "127.0.0.1:5000"
    assert tags(span) == {"http.method": "GET", "http.url": "http://127.0.0.1:8000/items/7?q=1",
                          "http.status_code": "200"}


def test_no_route_keeps_the_path(start_agent: Any) -> None:
    reporter = start_agent(plugin_http_route_template=True)
    with served(wsgi_app()) as port:
        assert request(port, "GET", "/nowhere")[0] == 404
    span = entry(reporter)
    assert span.op == "/nowhere" and span.error_occurred and not span.logs  # an HTTPError is a response


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_an_ignored_method_makes_no_span(kind: str, start_agent: Any) -> None:
    reporter = start_agent(plugin_http_ignore_method=IGNORED)
    if kind == "asgi":
        app = asgi_app()
        check_server_ignores(reporter, lambda method: asgi_request(app, method, "/items/1")[0])
        return
    with served(wsgi_app()) as port:
        check_server_ignores(reporter, lambda method: request(port, method, "/items/1")[0])


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_an_sw8_caller_is_continued(kind: str, start_agent: Any) -> None:
    reporter = start_agent(agent_protocol_version="v8", plugin_http_route_template=True)
    header = sw8("java8-trace.1.1", "java8-seg.1.1", 3, "java8", "java8-1", "/java", "127.0.0.1:8000")
    if kind == "asgi":
        assert asgi_request(asgi_app(), "GET", "/items/9", {"sw8": header})[0] == 200
    else:
        with served(wsgi_app()) as port:
            assert request(port, "GET", "/items/9", {"sw8": header})[0] == 200
    span = entry(reporter)
    assert span.op == "/items/{item_id}"
    (ref,) = span.refs
    assert (str(ref.trace_id), str(ref.segment_id), ref.span_id) == ("java8-trace.1.1", "java8-seg.1.1", 3)
    assert (ref.service, ref.service_instance, ref.endpoint, ref.client_address) == \
        ("java8", "java8-1", "/java", "127.0.0.1:8000")


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_an_exception_is_logged_and_the_answer_stays_falcons(kind: str, start_agent: Any) -> None:
    if kind == "asgi":
        app = asgi_app(boom=AsyncFailing(RuntimeError("boom")))
        untraced = asgi_request(app, "GET", "/boom")  # before the agent starts: no span around it
        reporter = start_agent()
        assert asgi_request(app, "GET", "/boom") == untraced
    else:
        with served(wsgi_app(boom=Failing(RuntimeError("boom")))) as port:
            untraced = request(port, "GET", "/boom")
            reporter = start_agent()
            assert request(port, "GET", "/boom") == untraced
    assert untraced[0] == 500
    span = entry(reporter)
    assert span.error_occurred and tags(span)["http.status_code"] == "500"
    assert "RuntimeError: boom" in span.logs[0].items[0].val


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_an_error_handler_gets_the_very_exception(kind: str, start_agent: Any) -> None:
    raised = LookupError("mine")
    handled: list[BaseException] = []

    def on_error(req: Any, resp: Any, ex: BaseException, params: Any) -> None:
        handled.append(ex)
        resp.status = falcon.HTTP_409
        resp.text = "conflict"

    async def on_error_async(req: Any, resp: Any, ex: BaseException, params: Any) -> None:
        on_error(req, resp, ex, params)

    reporter = start_agent()
    if kind == "asgi":
        app = asgi_app(boom=AsyncFailing(raised))
        app.add_error_handler(LookupError, on_error_async)
        assert asgi_request(app, "GET", "/boom") == (409, b"conflict")
    else:
        app = wsgi_app(boom=Failing(raised))
        app.add_error_handler(LookupError, on_error)
        with served(app) as port:
            assert request(port, "GET", "/boom") == (409, b"conflict")
    assert handled == [raised] and handled[0] is raised
    span = entry(reporter)
    assert span.error_occurred and tags(span)["http.status_code"] == "409"
    assert "LookupError" in span.logs[0].items[0].val


def test_uninstall_restores_the_originals(start_agent: Any) -> None:
    import falcon.app
    import falcon.asgi.app
    import wrapt

    reporter = start_agent()
    targets = ((falcon.app.App, "__call__"), (falcon.app.App, "_get_responder"), (falcon.app.App, "_handle_exception"),
               (falcon.asgi.app.App, "__call__"), (falcon.asgi.app.App, "_handle_exception"))
    patched = [vars(cls)[name] for cls, name in targets]
    assert all(isinstance(f, wrapt.FunctionWrapper) for f in patched)
    sw_falcon.plugin.uninstall()
    try:
        assert [vars(cls)[name] for cls, name in targets] == [f.__wrapped__ for f in patched]
        assert asgi_request(asgi_app(), "GET", "/items/1")[0] == 200  # nothing traced
        with served(wsgi_app()) as port:
            assert request(port, "GET", "/items/1")[0] == 200
        assert entry(reporter).component is Component.General  # wsgiref's span, not taken over
    finally:
        sw_falcon.plugin.install()
    assert isinstance(vars(falcon.asgi.app.App)["__call__"], wrapt.FunctionWrapper)
