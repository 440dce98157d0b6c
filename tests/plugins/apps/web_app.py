"""Web framework apps for the plugin tests, traced by the agent (configured by SW_* variables).

``python web_app.py <framework> <downstream>``, framework one of ``flask`` (on werkzeug), ``django`` (WSGI on
wsgiref, whose request span Django takes over), ``django-asgi`` (on uvicorn), ``aiohttp``. Each answers
``GET /items/<id>`` by calling ``<downstream>/back?x=1`` (with ``urllib.request``; aiohttp with its client), and
``GET /boom`` by raising. Django on uvicorn runs its sync views in threads: the call is a cross-thread segment.
Prints ``ready port=<port>`` once listening on 127.0.0.1.
"""

from __future__ import annotations

import socket
import sys
import urllib.request

from skywalking import agent
from tests.plugins.apps.front import serve_uvicorn, serve_wsgi

agent.start()
FRAMEWORK, DOWNSTREAM = sys.argv[1], sys.argv[2]


def call_back() -> str:
    with urllib.request.urlopen(f"{DOWNSTREAM}/back?x=1", timeout=10) as resp:
        return resp.read().decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_flask() -> None:
    from flask import Flask
    from werkzeug.serving import make_server

    app = Flask(__name__)

    @app.get("/items/<int:item_id>")
    def item(item_id: int) -> dict:
        return {"item": item_id, "downstream": call_back()}

    @app.get("/boom")
    def boom() -> dict:
        raise RuntimeError("boom")

    server = make_server("127.0.0.1", 0, app, threaded=True)
    print(f"ready port={server.port}", flush=True)
    server.serve_forever()


def django_app(asgi: bool) -> object:
    from django.conf import settings
    from django.http import JsonResponse
    from django.urls import path

    def item(request: object, item_id: int) -> JsonResponse:
        return JsonResponse({"item": item_id, "downstream": call_back()})

    def boom(request: object) -> JsonResponse:
        raise RuntimeError("boom")

    sys.modules[__name__].urlpatterns = [path("items/<int:item_id>", item), path("boom", boom)]  # type: ignore[attr-defined]
    settings.configure(DEBUG=False, ALLOWED_HOSTS=["*"], ROOT_URLCONF=__name__, SECRET_KEY="test", MIDDLEWARE=[],
                       LOGGING_CONFIG=None)
    if asgi:
        from django.core.asgi import get_asgi_application

        return get_asgi_application()
    from django.core.wsgi import get_wsgi_application

    return get_wsgi_application()


def run_django() -> None:
    serve_wsgi(django_app(asgi=False))


def run_django_asgi() -> None:
    serve_uvicorn(django_app(asgi=True))


def run_aiohttp() -> None:
    import asyncio

    import aiohttp
    from aiohttp import web

    async def item(request: web.Request) -> web.Response:
        async with aiohttp.ClientSession() as session, session.get(f"{DOWNSTREAM}/back?x=1") as resp:
            downstream = await resp.text()
        return web.json_response({"item": int(request.match_info["item_id"]), "downstream": downstream})

    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("boom")

    async def serve() -> None:
        app = web.Application()
        app.add_routes([web.get("/items/{item_id}", item), web.get("/boom", boom)])
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        print(f"ready port={port}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":
    runners = {"flask": run_flask, "django": run_django, "django-asgi": run_django_asgi, "aiohttp": run_aiohttp}
    try:
        runners[FRAMEWORK]()
    finally:
        agent.stop()
