"""A Tornado application traced by the agent (configured by SW_* variables), for tests/plugins/test_tornado.py.

``python tornado_app.py <downstream>``: ``GET /items/<id>`` calls ``<downstream>/back?x=1`` (``urllib.request``)
and answers JSON, ``GET /boom`` raises, ``GET /teapot`` answers 418 through ``HTTPError``. Prints
``ready port=<port>`` once listening on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import sys
import urllib.request

from skywalking import agent

agent.start()
DOWNSTREAM = sys.argv[1]


async def main() -> None:
    import tornado.web
    from tornado.httpserver import HTTPServer
    from tornado.netutil import bind_sockets

    class Item(tornado.web.RequestHandler):
        def get(self, item_id: str) -> None:
            with urllib.request.urlopen(f"{DOWNSTREAM}/back?x=1", timeout=10) as resp:
                downstream = resp.read().decode()
            self.write(json.dumps({"item": int(item_id), "downstream": downstream}))

    class Boom(tornado.web.RequestHandler):
        def get(self) -> None:
            raise RuntimeError("boom")

    class Teapot(tornado.web.RequestHandler):
        def get(self) -> None:
            raise tornado.web.HTTPError(418)

    app = tornado.web.Application([(r"/items/(?P<item_id>[0-9]+)", Item), (r"/boom", Boom), (r"/teapot", Teapot)])
    sockets = bind_sockets(0, "127.0.0.1")
    server = HTTPServer(app)
    server.add_sockets(sockets)
    print(f"ready port={sockets[0].getsockname()[1]}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    finally:
        agent.stop()
