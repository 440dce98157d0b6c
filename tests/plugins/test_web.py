"""Web framework servers (Flask on werkzeug, Django on wsgiref and on uvicorn, aiohttp): a request from a caller
that sends sw6 as a SkyWalking 6.6.0 service would, which calls a downstream, and one untraced request whose
view raises; checked against expected/<framework>.json."""

from __future__ import annotations

import asyncio
import sys
import time
import types
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from skywalking import Kind
from skywalking.reporter.memory import MemoryReporter
from tests.plugins.harness import Services, port_of
from tests.plugins.test_http import IGNORED, start

HERE = Path(__file__).parent


def check_front(app: list[str], name: str, expected: str, segments: int, **settings: str) -> None:
    """Start the back end, the collector and the front ``app`` (a command, traced as ``name`` with the SW_*
    ``settings``), send it ``/items/7?q=1`` from a caller that sends sw6 and an untraced ``/boom``, and check the
    segments received against ``expected/<expected>``."""
    with Services() as services:
        _, back_port = start(services, "back", "plugin-back")
        front_port = port_of(services.start(app + [f"http://127.0.0.1:{back_port}"], name, **settings))
        assert services.call_front(front_port, "/items/7?q=1")["item"] == 7
        with pytest.raises(urllib.error.HTTPError) as failed:
            urllib.request.urlopen(f"http://127.0.0.1:{front_port}/boom", timeout=10)
        assert failed.value.code == 500
        services.check(expected, segments=segments, front=front_port, back=back_port)


@pytest.mark.parametrize(("framework", "needs", "expected"), [
    ("flask", ("flask",), "flask.json"),
    ("django", ("django",), "django.json"),
    ("django-asgi", ("django", "uvicorn"), "django-asgi.json"),
    ("aiohttp", ("aiohttp",), "aiohttp-server.json"),
])
def test_framework_entry_spans(framework: str, needs: tuple[str, ...], expected: str) -> None:
    for module in needs:
        pytest.importorskip(module)
    check_front([sys.executable, str(HERE / "apps" / "web_app.py"), framework], "plugin-web", expected,
                5 if framework == "django-asgi" else 4)


def check_server_ignores(reporter: MemoryReporter, call: Callable[[str], int]) -> None:
    """``call(method)`` sends one request to a traced server; a GET (ignored) makes no span, a POST right after
    makes one entry span: the only segment."""
    assert call("GET") == 200
    assert call("POST") == 200
    assert reporter.wait_for(1)
    time.sleep(0.1)  # nothing more arrives
    (segment,) = reporter.segments
    (span,) = segment.spans
    assert span.kind is Kind.Entry
    assert [tag.val for tag in span.tags if tag.key == "http.method"] == ["POST"]


def test_flask_ignored_method(start_agent: Any) -> None:
    flask = pytest.importorskip("flask")
    reporter = start_agent(plugin_http_ignore_method=IGNORED)
    app = flask.Flask("ignored")
    app.add_url_rule("/x", "x", lambda: "ok", methods=["GET", "POST"])
    client = app.test_client()
    check_server_ignores(reporter, lambda method: client.open("/x", method=method).status_code)


def django_client() -> Any:
    """A Django test client for this process's only Django settings (web_app.py runs in its own process): ``/x``
    and ``/items/<int:item_id>``."""
    pytest.importorskip("django")
    import django
    from django.conf import settings
    from django.http import HttpResponse
    from django.test import Client
    from django.urls import path

    if not settings.configured:
        urls = types.ModuleType("in_process_urls")
        urls.urlpatterns = [path("x", lambda request: HttpResponse("ok")),  # type: ignore[attr-defined]
                            path("items/<int:item_id>", lambda request, item_id: HttpResponse(str(item_id)))]
        settings.configure(DEBUG=False, ALLOWED_HOSTS=["*"], SECRET_KEY="test", MIDDLEWARE=[], INSTALLED_APPS=[],
                           ROOT_URLCONF=urls)
        django.setup()
    return Client()


def test_django_ignored_method(start_agent: Any) -> None:
    client = django_client()
    reporter = start_agent(plugin_http_ignore_method=IGNORED)
    check_server_ignores(reporter, lambda method: client.generic(method, "/x").status_code)


def entry_ops(reporter: MemoryReporter, count: int) -> list[str]:
    assert reporter.wait_for(count)
    return [seg.spans[-1].op for seg in reporter.segments if seg.spans[-1].kind is Kind.Entry]


@pytest.mark.parametrize("on", [True, False])
def test_flask_names_spans_after_the_matched_rule_with_route_templates(start_agent: Any, on: bool) -> None:
    flask = pytest.importorskip("flask")
    reporter = start_agent(plugin_http_route_template=on)
    app = flask.Flask("routes")
    app.add_url_rule("/items/<int:item_id>", "item", lambda item_id: str(item_id))
    client = app.test_client()
    assert client.get("/items/7").status_code == 200 and client.get("/nowhere").status_code == 404
    assert entry_ops(reporter, 2) == (["/items/<int:item_id>", "/nowhere"] if on else ["/items/7", "/nowhere"])


@pytest.mark.parametrize("on", [True, False])
def test_django_names_spans_after_the_matched_pattern_with_route_templates(start_agent: Any, on: bool) -> None:
    client = django_client()
    reporter = start_agent(plugin_http_route_template=on)
    assert client.get("/items/7").status_code == 200 and client.get("/nowhere").status_code == 404
    assert entry_ops(reporter, 2) == (["/items/<int:item_id>", "/nowhere"] if on else ["/items/7", "/nowhere"])


def test_aiohttp_server_ignored_method(start_agent: Any) -> None:
    pytest.importorskip("aiohttp")
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    reporter = start_agent(plugin_http_ignore_method=IGNORED)

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def run() -> None:
        app = web.Application()
        app.router.add_route("*", "/x", ok)
        async with TestClient(TestServer(app)) as client:
            statuses = [(await client.request(method, "/x")).status for method in ("GET", "POST")]
        assert statuses == [200, 200]

    asyncio.run(run())
    # the POST: the test client's exit span (sw_aiohttp's client side) and the server's entry span; the GET: nothing
    assert reporter.wait_for(2)
    time.sleep(0.1)
    assert sorted(seg.spans[0].kind.name for seg in reporter.segments) == sorted([Kind.Entry.name, Kind.Exit.name])
    for segment in reporter.segments:
        assert [tag.val for tag in segment.spans[0].tags if tag.key == "http.method"] == ["POST"]


@pytest.mark.parametrize("on", [True, False])
def test_aiohttp_names_spans_after_the_matched_resource_with_route_templates(start_agent: Any, on: bool) -> None:
    pytest.importorskip("aiohttp")
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    reporter = start_agent(plugin_http_route_template=on)

    async def item(request: web.Request) -> web.Response:
        return web.Response(text=request.match_info["item_id"])

    async def fetch() -> None:
        app = web.Application()
        app.router.add_get("/items/{item_id}", item)
        async with TestServer(app) as server:
            loop = asyncio.get_running_loop()
            statuses = [await loop.run_in_executor(None, _status, str(server.make_url(path)))
                        for path in ("/items/7", "/nowhere")]
        assert statuses == [200, 404]

    asyncio.run(fetch())
    ops = sorted(seg.spans[-1].op for seg in reporter.segments if seg.spans[-1].kind is Kind.Entry)
    assert ops == (["/items/{item_id}", "/nowhere"] if on else ["/items/7", "/nowhere"])


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code

