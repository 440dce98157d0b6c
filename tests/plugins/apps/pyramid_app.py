"""A Pyramid app on wsgiref for the plugin tests, traced by the agent (configured by SW_* variables).

``python pyramid_app.py <downstream>``: ``GET /items/{item_id}`` calls ``<downstream>/back?x=1`` with
``urllib.request``; ``GET /boom`` raises, and an exception view for ``RuntimeError`` answers 500 (the usual way a
Pyramid app reports a failure). Prints ``ready port=<port>`` once listening on 127.0.0.1.
"""

from __future__ import annotations

import sys
import urllib.request
from typing import Any

from pyramid.config import Configurator
from pyramid.response import Response

from skywalking import agent
from tests.plugins.apps.front import serve_wsgi

agent.start()
DOWNSTREAM = sys.argv[1]


def item(request: Any) -> dict:
    with urllib.request.urlopen(f"{DOWNSTREAM}/back?x=1", timeout=10) as resp:
        return {"item": int(request.matchdict["item_id"]), "downstream": resp.read().decode()}


def boom(request: Any) -> dict:
    raise RuntimeError("boom")


def failed(exc: Exception, request: Any) -> Response:
    return Response(f"failed: {exc}", status=500)


def make_app() -> Any:
    with Configurator() as config:
        config.add_route("item", "/items/{item_id}")
        config.add_view(item, route_name="item", renderer="json")
        config.add_route("boom", "/boom")
        config.add_view(boom, route_name="boom", renderer="json")
        config.add_exception_view(failed, context=RuntimeError)
        return config.make_wsgi_app()


def main() -> None:
    serve_wsgi(make_app())


if __name__ == "__main__":
    try:
        main()
    finally:
        agent.stop()
