"""sw_starlette with a real FastAPI app on uvicorn (route templates on), called with sw6 by a traced caller;
checked against expected/starlette.json (the scenario of test_web.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from tests.plugins.test_web import check_front

HERE = Path(__file__).parent


def test_fastapi_entry_spans_continue_the_caller() -> None:
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    check_front([sys.executable, str(HERE / "apps" / "asgi_app.py")], "plugin-asgi", "starlette.json", 4,
                SW_PLUGIN_STARLETTE_ROUTE_TEMPLATE="true")


def test_a_traced_app_is_still_told_from_an_app_factory(reporter: object) -> None:
    """uvicorn calls the app with no argument to tell a factory from an app: the traced ``Starlette.__call__`` must
    raise TypeError at once, as the original does (an ``async`` wrapper returned a coroutine instead, and uvicorn
    served that coroutine as the app: every request failed under gunicorn's uvicorn worker)."""
    pytest.importorskip("starlette")
    import asyncio

    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from skywalking.plugins import sw_starlette

    assert sw_starlette.plugin._patched
    app = Starlette(routes=[Route("/", lambda request: PlainTextResponse("ok"))])
    with pytest.raises(TypeError):
        app()  # type: ignore[call-arg]
    assert asyncio.iscoroutinefunction(app.__call__)

    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b""}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "query_string": b"", "scheme": "http",
             "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 5000), "root_path": "", "app": app}
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 200
    (segment,) = reporter.segments  # type: ignore[attr-defined]
    assert segment.spans[0].op == "/"


def test_an_ignored_method_makes_no_span(start_agent: Any) -> None:
    pytest.importorskip("starlette")
    import asyncio

    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from tests.plugins.test_http import IGNORED
    from tests.plugins.test_web import check_server_ignores

    reporter = start_agent(plugin_http_ignore_method=IGNORED)
    app = Starlette(routes=[Route("/", lambda request: PlainTextResponse("ok"), methods=["GET", "POST"])])

    def call(method: str) -> int:
        sent: list[dict] = []

        async def receive() -> dict:
            return {"type": "http.request", "body": b""}

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {"type": "http", "method": method, "path": "/", "headers": [], "query_string": b"",
                 "scheme": "http", "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 5000), "root_path": "",
                 "app": app}
        asyncio.run(app(scope, receive, send))
        return sent[0]["status"]

    check_server_ignores(reporter, call)
