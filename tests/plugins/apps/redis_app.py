"""A service for the sw_redis test, traced by the agent (configured by SW_* variables).

``redis_app.py <port> <unix socket>``: an ``http.server`` handler whose ``GET /redis`` runs, against the redis
server on 127.0.0.1:<port> (database 1): SET, GET, a transaction pipeline, INCR (sent as INCRBY) of a
non-integer (fails), a WATCH/GET/MULTI optimistic transaction, PING over the unix socket (database 0), then with
``redis.asyncio``: HSET, HGET, HGET of a string key (fails) and a non-transaction pipeline. Answers JSON; nothing
touches redis outside a request. Prints ``ready port=<port>`` once listening on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from skywalking import agent
from tests.plugins.apps.front import serve_json

agent.start()

import redis  # noqa: E402  (after the agent: patched on import)
import redis.asyncio  # noqa: E402

PORT, SOCKET = int(sys.argv[1]), sys.argv[2]


def run_sync() -> dict[str, Any]:
    r = redis.Redis(host="127.0.0.1", port=PORT, db=1)
    r.set("sw:greeting", "hello")
    out: dict[str, Any] = {"get": r.get("sw:greeting").decode()}
    pipe = r.pipeline()
    pipe.incr("sw:n").expire("sw:n", 60).get("sw:n")
    out["multi"] = [str(v) for v in pipe.execute()]
    try:
        r.incr("sw:greeting")
    except redis.ResponseError as e:
        out["incr_error"] = str(e)
    with r.pipeline() as pipe:
        pipe.watch("sw:n")
        value = int(pipe.get("sw:n"))
        pipe.multi()
        pipe.set("sw:n", value + 1)
        out["watched"] = [str(v) for v in pipe.execute()]
    r.close()
    unix = redis.Redis(unix_socket_path=SOCKET)
    out["ping"] = unix.ping()
    unix.close()
    return out


async def run_async() -> dict[str, Any]:
    r = redis.asyncio.Redis(host="127.0.0.1", port=PORT, db=1)
    out: dict[str, Any] = {"hset": await r.hset("sw:h", "f", "v"), "hget": (await r.hget("sw:h", "f")).decode()}
    try:
        await r.hget("sw:greeting", "f")
    except redis.ResponseError as e:
        out["hget_error"] = str(e)
    pipe = r.pipeline(transaction=False)
    pipe.lpush("sw:l", "a")
    pipe.lrange("sw:l", 0, -1)
    out["pipeline"] = [str(v) for v in await pipe.execute()]
    await (r.aclose() if hasattr(r, "aclose") else r.close())  # aclose() from redis 5.0.1
    return out


def main() -> None:
    serve_json(lambda path: {"sync": run_sync(), "async": asyncio.run(run_async())})


if __name__ == "__main__":
    main()
