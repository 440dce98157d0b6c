"""A FastAPI app on uvicorn for the plugin tests, traced by the agent (configured by SW_* variables).

``GET /items/{item_id}`` calls the downstream ``/back`` with ``urllib.request``; ``GET /boom`` raises.
Prints ``ready port=<port>`` once uvicorn listens on 127.0.0.1.
"""

from __future__ import annotations

import sys
import urllib.request

from fastapi import FastAPI

from skywalking import agent
from tests.plugins.apps.front import serve_uvicorn

agent.start()
app = FastAPI()
DOWNSTREAM = sys.argv[1]


@app.get("/items/{item_id}")
async def item(item_id: int) -> dict:
    with urllib.request.urlopen(f"{DOWNSTREAM}/back?x=1", timeout=10) as resp:  # blocking is fine in a test
        return {"item": item_id, "downstream": resp.read().decode()}


@app.get("/boom")
async def boom() -> dict:
    raise RuntimeError("boom")


def main() -> None:
    serve_uvicorn(app)


if __name__ == "__main__":
    main()
