"""gRPC services for the sw_grpc test, traced by the agent (configured by SW_* variables). Generic handlers with
bytes in and out: no generated code.

``sync-server`` / ``aio-server``: ``demo.Greeter`` on ``grpc.server`` / ``grpc.aio.server`` with ``Hello``
(unary), ``Count`` (server streaming, a local span ``/count/step`` between two responses), ``Sum`` (client
streaming), ``Chat`` (both streaming), ``Ignored`` (unary) and ``Fail`` (aborts: INVALID_ARGUMENT on the sync
server, NOT_FOUND on the aio one).
``front <sync target> <aio target>``: an ``http.server`` handler; ``GET /front`` calls every method but ``Fail``
on the sync server with a sync channel and ``Hello``, ``Count``, ``Sum``, ``Chat`` on the aio server with a
``grpc.aio`` channel; ``GET /front-fail`` calls ``Fail`` on both and answers 502.
Prints ``ready port=<port>`` once listening on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc

from skywalking import agent
from skywalking.trace.context import get_context

agent.start()

SERVICE = "demo.Greeter"


def method(name: str) -> str:
    return f"/{SERVICE}/{name}"


# -- sync server ------------------------------------------------------------------------------------

def hello(request: bytes, context: Any) -> bytes:
    return b"hello " + request


def count(request: bytes, context: Any) -> Iterator[bytes]:
    yield b"0"
    with get_context().new_local_span("/count/step"):  # inside the RPC's entry span, after a response
        pass
    yield b"1"


def total(requests: Iterator[bytes], context: Any) -> bytes:
    return str(sum(len(r) for r in requests)).encode()


def chat(requests: Iterator[bytes], context: Any) -> Iterator[bytes]:
    for r in requests:
        yield r.upper()


def fail(request: bytes, context: Any) -> bytes:
    context.abort(grpc.StatusCode.INVALID_ARGUMENT, "refused")
    return b""


# -- aio server -------------------------------------------------------------------------------------

async def ahello(request: bytes, context: Any) -> bytes:
    return b"hello " + request


async def acount(request: bytes, context: Any) -> AsyncIterator[bytes]:
    yield b"0"
    with get_context().new_local_span("/count/step"):
        await asyncio.sleep(0)
    yield b"1"


async def atotal(requests: AsyncIterator[bytes], context: Any) -> bytes:
    return str(sum([len(r) async for r in requests])).encode()


async def achat(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
    async for r in requests:
        yield r.upper()


async def afail(request: bytes, context: Any) -> bytes:
    await context.abort(grpc.StatusCode.NOT_FOUND, "nothing here")
    return b""


def handlers(hello: Any, count: Any, total: Any, chat: Any, fail: Any) -> Any:
    return grpc.method_handlers_generic_handler(SERVICE, {
        "Hello": grpc.unary_unary_rpc_method_handler(hello),
        "Count": grpc.unary_stream_rpc_method_handler(count),
        "Sum": grpc.stream_unary_rpc_method_handler(total),
        "Chat": grpc.stream_stream_rpc_method_handler(chat),
        "Ignored": grpc.unary_unary_rpc_method_handler(hello),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
    })


def serve_sync() -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4),
                         handlers=[handlers(hello, count, total, chat, fail)])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"ready port={port}", flush=True)
    server.wait_for_termination()


async def serve_aio() -> None:
    server = grpc.aio.server(handlers=[handlers(ahello, acount, atotal, achat, afail)])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"ready port={port}", flush=True)
    await server.wait_for_termination()


# -- front ------------------------------------------------------------------------------------------

def call_sync(target: str, fail: bool) -> list[str]:
    with grpc.insecure_channel(target) as channel:
        if fail:
            try:
                channel.unary_unary(method("Fail"))(b"x", timeout=10)
            except grpc.RpcError as e:
                return [e.code().name]
            return ["OK"]
        return [
            channel.unary_unary(method("Hello"))(b"sync", timeout=10).decode(),
            b",".join(channel.unary_stream(method("Count"))(b"x", timeout=10)).decode(),
            channel.stream_unary(method("Sum"))(iter([b"ab", b"c"]), timeout=10).decode(),
            b",".join(channel.stream_stream(method("Chat"))(iter([b"a", b"b"]), timeout=10)).decode(),
            channel.unary_unary(method("Ignored"))(b"x", timeout=10).decode(),
        ]


async def call_aio(target: str, fail: bool) -> list[str]:
    async def requests() -> AsyncIterator[bytes]:
        yield b"ab"
        yield b"c"

    async with grpc.aio.insecure_channel(target) as channel:
        if fail:
            try:
                await channel.unary_unary(method("Fail"))(b"x", timeout=10)
            except grpc.RpcError as e:
                return [e.code().name]
            return ["OK"]
        return [
            (await channel.unary_unary(method("Hello"))(b"aio", timeout=10)).decode(),
            b",".join([r async for r in channel.unary_stream(method("Count"))(b"x", timeout=10)]).decode(),
            (await channel.stream_unary(method("Sum"))(requests(), timeout=10)).decode(),
            b",".join([r async for r in channel.stream_stream(method("Chat"))(requests(), timeout=10)]).decode(),
        ]


class Front(BaseHTTPRequestHandler):
    sync_target = aio_target = ""

    def do_GET(self) -> None:
        fail = self.path.startswith("/front-fail")
        results = call_sync(self.sync_target, fail) + asyncio.run(call_aio(self.aio_target, fail))
        body = json.dumps({"results": results}).encode()
        self.send_response(502 if fail else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def main() -> None:
    mode = sys.argv[1]
    try:
        if mode == "sync-server":
            serve_sync()
        elif mode == "aio-server":
            asyncio.run(serve_aio())
        else:
            Front.sync_target, Front.aio_target = sys.argv[2], sys.argv[3]
            server = ThreadingHTTPServer(("127.0.0.1", 0), Front)
            print(f"ready port={server.server_address[1]}", flush=True)
            server.serve_forever()
    finally:
        agent.stop()


if __name__ == "__main__":
    main()
