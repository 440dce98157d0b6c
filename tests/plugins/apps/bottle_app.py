"""A Bottle app on wsgiref (Bottle's default server) for the plugin tests, traced by the agent (configured by SW_*
variables).

``python bottle_app.py <downstream>``: ``GET /items/<id>`` calls ``<downstream>/back?x=1`` with
``urllib.request``; ``GET /boom`` raises. Prints ``ready port=<port>`` once listening on 127.0.0.1.
"""

from __future__ import annotations

import sys
import urllib.request
from wsgiref.simple_server import WSGIRequestHandler, make_server

import bottle

from skywalking import agent

agent.start()
DOWNSTREAM = sys.argv[1]
app = bottle.Bottle()


@app.get("/items/<item_id:int>")
def item(item_id: int) -> dict:
    with urllib.request.urlopen(f"{DOWNSTREAM}/back?x=1", timeout=10) as resp:
        return {"item": item_id, "downstream": resp.read().decode()}


@app.get("/boom")
def boom() -> dict:
    raise RuntimeError("boom")


class Quiet(WSGIRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def main() -> None:
    server = make_server("127.0.0.1", 0, app, handler_class=Quiet)
    print(f"ready port={server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    try:
        main()
    finally:
        agent.stop()
