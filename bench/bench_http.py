"""End-to-end HTTP benchmark processes (driven by bench/run.py ``--only http``).

``--role front``: a FastAPI app on uvicorn whose ``GET /items/{item_id}`` calls the downstream with a shared
``httpx.AsyncClient``; ``--impl baseline`` runs it without an agent, ``upstream``/``ours`` start the agent of the
venv it runs in (``from skywalking import agent, config``, the API both share) reporting to ``--collector``.
``--role downstream``: a minimal asyncio HTTP/1.1 server answering every request with a small JSON body (the same
for every leg, never traced).
Both print ``ready port=<port>`` once listening on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import sys

BODY = b'{"downstream":"ok"}'
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " + str(len(BODY)).encode()
            + b"\r\n\r\n" + BODY)


async def downstream(port: int) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                if length:
                    await reader.readexactly(length)
                writer.write(RESPONSE)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    print(f"ready port={port}", flush=True)
    async with server:
        await server.serve_forever()


def front(impl: str, port: int, target: str, collector: str) -> None:
    if impl != "baseline":
        from skywalking import agent, config

        # tracing only: upstream's meter, log and profile reporters off (ours has none under v6)
        config.init(agent_collector_backend_services=collector, agent_name=f"bench-http-{impl}",
                    agent_logging_level="WARNING", agent_meter_reporter_active=False,
                    agent_log_reporter_active=False, agent_profile_active=False)
        agent.start()
        import skywalking

        found = "ours" if getattr(skywalking, "__distribution__", None) == "company-skywalking" else "upstream"
        if found != impl:
            sys.exit(f"expected the {impl} agent in {sys.executable}, found {found}")

    import httpx
    import uvicorn
    from fastapi import FastAPI

    app = FastAPI()
    client: httpx.AsyncClient | None = None

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict:
        nonlocal client
        if client is None:
            client = httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=64))
        resp = await client.get(f"{target}/back?item={item_id}")
        return {"item": item_id, "downstream": resp.json()}

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", access_log=False,
                                           lifespan="off"))

    async def serve() -> None:
        # SIGTERM (run.py stopping the leg) ends uvicorn cleanly, so the agent flushes at exit
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, lambda: setattr(server, "should_exit", True))
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.02)
        print(f"ready port={port}", flush=True)
        await task

    asyncio.run(serve())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=("front", "downstream"), required=True)
    parser.add_argument("--impl", choices=("baseline", "upstream", "ours"), default="baseline")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--downstream", default="")
    parser.add_argument("--collector", default="")
    args = parser.parse_args()
    port = args.port
    if not port:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    if args.role == "downstream":
        asyncio.run(downstream(port))
    else:
        front(args.impl, port, args.downstream, args.collector)


if __name__ == "__main__":
    main()
