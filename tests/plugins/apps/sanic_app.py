"""A Sanic application traced by the agent (configured by SW_* variables), for tests/plugins/test_sanic.py.

``python sanic_app.py <downstream>``: ``GET /items/<id>`` calls ``<downstream>/back?x=1`` (``urllib.request``) and
answers JSON, ``GET /boom`` raises, ``GET /teapot`` answers 418 through a ``SanicException``, the websocket route
``/ws`` echoes one message. Runs Sanic's own
server in this one process; prints ``ready port=<port>`` once listening on 127.0.0.1.
"""

from __future__ import annotations

import socket
import sys
import urllib.request
from typing import Any

from skywalking import agent

agent.start()
DOWNSTREAM = sys.argv[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    from sanic import Sanic
    from sanic.exceptions import SanicException
    from sanic.response import json

    app = Sanic("plugin_sanic")
    port = free_port()

    @app.get("/items/<item_id:int>")
    async def item(request: object, item_id: int) -> object:
        with urllib.request.urlopen(f"{DOWNSTREAM}/back?x=1", timeout=10) as resp:
            downstream = resp.read().decode()
        return json({"item": item_id, "downstream": downstream})

    @app.get("/boom")
    async def boom(request: object) -> object:
        raise RuntimeError("boom")

    @app.get("/teapot")
    async def teapot(request: object) -> object:
        raise SanicException("short and stout", status_code=418)

    @app.websocket("/ws")
    async def echo(request: object, ws: Any) -> None:
        await ws.send(await ws.recv())

    @app.after_server_start
    async def ready(*_: object) -> None:
        print(f"ready port={port}", flush=True)

    app.run(host="127.0.0.1", port=port, single_process=True, access_log=False, motd=False)


if __name__ == "__main__":
    try:
        main()
    finally:
        agent.stop()
