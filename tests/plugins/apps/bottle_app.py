"""A Bottle app on wsgiref (Bottle's default server) for the plugin tests, traced by the agent (configured by SW_*
variables).

``python bottle_app.py <downstream>``: ``GET /items/<id>`` calls ``<downstream>/back?x=1`` with
``urllib.request``; ``GET /boom`` raises. Prints ``ready port=<port>`` once listening on 127.0.0.1.
"""

from __future__ import annotations

import sys
import urllib.request

import bottle

from skywalking import agent
from tests.plugins.apps.front import serve_wsgi

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


def main() -> None:
    serve_wsgi(app)


if __name__ == "__main__":
    try:
        main()
    finally:
        agent.stop()
