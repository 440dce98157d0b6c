"""A FastAPI app on uvicorn for the plugin tests, traced by the agent (configured by SW_* variables).

``GET /items/{item_id}`` calls the downstream ``/back`` with ``urllib.request``; ``GET /boom`` raises.
Prints ``ready port=<port>`` once uvicorn listens on 127.0.0.1.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
import urllib.request

import uvicorn
from fastapi import FastAPI

from skywalking import agent

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
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    print(f"ready port={port}", flush=True)
    thread.join()


if __name__ == "__main__":
    main()
