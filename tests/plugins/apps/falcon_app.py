"""A Falcon app for the plugin tests, traced by the agent (configured by SW_* variables).

``python falcon_app.py wsgi|asgi <downstream>``: ``falcon.App`` on wsgiref or ``falcon.asgi.App`` on uvicorn.
``GET /items/{item_id:int}`` calls ``<downstream>/back?x=1`` with ``urllib.request`` (blocking, fine in a test);
``GET /boom`` raises (Falcon's default error handler answers 500). Prints ``ready port=<port>`` once listening on
127.0.0.1.
"""

from __future__ import annotations

import sys
import urllib.request
from typing import Any

import falcon

from skywalking import agent
from tests.plugins.apps.front import serve_uvicorn, serve_wsgi

agent.start()
MODE, DOWNSTREAM = sys.argv[1], sys.argv[2]


def fetch() -> str:
    with urllib.request.urlopen(f"{DOWNSTREAM}/back?x=1", timeout=10) as resp:
        return resp.read().decode()


class Item:
    def on_get(self, req: Any, resp: Any, item_id: int) -> None:
        resp.media = {"item": item_id, "downstream": fetch()}


class Boom:
    def on_get(self, req: Any, resp: Any) -> None:
        raise RuntimeError("boom")


class AsyncItem:
    async def on_get(self, req: Any, resp: Any, item_id: int) -> None:
        resp.media = {"item": item_id, "downstream": fetch()}


class AsyncBoom:
    async def on_get(self, req: Any, resp: Any) -> None:
        raise RuntimeError("boom")


def run_wsgi() -> None:
    app = falcon.App()
    app.add_route("/items/{item_id:int}", Item())
    app.add_route("/boom", Boom())
    serve_wsgi(app)


def run_asgi() -> None:
    import falcon.asgi

    app = falcon.asgi.App()
    app.add_route("/items/{item_id:int}", AsyncItem())
    app.add_route("/boom", AsyncBoom())
    serve_uvicorn(app)


if __name__ == "__main__":
    try:
        run_asgi() if MODE == "asgi" else run_wsgi()
    finally:
        agent.stop()
