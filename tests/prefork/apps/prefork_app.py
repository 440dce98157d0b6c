"""The app the pre-fork tests serve: ``GET /`` answers ``pid=<worker pid>``.

``app`` is a Flask (WSGI) app, ``asgi`` a Starlette (ASGI) app for gunicorn's uvicorn worker. With
``SW_TEST_START_IN_APP=1`` the module starts the agent itself, as an app loaded with ``--preload`` would. Each
request logs one WARNING record (the log reporter sends it under v8).
"""

from __future__ import annotations

import logging
import os

if os.environ.get("SW_TEST_START_IN_APP") == "1":
    from skywalking import agent

    agent.start()

from flask import Flask

app = Flask(__name__)


@app.route("/")
def index() -> str:
    logging.getLogger("prefork.app").warning("served by %d", os.getpid())  # reported under v8
    return f"pid={os.getpid()}\n"


def _asgi() -> object:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def root(request: object) -> PlainTextResponse:
        return PlainTextResponse(f"pid={os.getpid()}\n")

    return Starlette(routes=[Route("/", root)])


asgi = _asgi()
