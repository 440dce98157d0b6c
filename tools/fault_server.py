"""A misbehaving OAP for the fault tests (tests/faults) and benchmark (bench/bench_faults.py), on 127.0.0.1.

``python fault_server.py <mode> [upstream]``; prints ``ready port=<port>``.

* ``error``: a gRPC server that answers every call with INTERNAL.
* ``slow``: a gRPC server that never answers (each call waits until its deadline).
* ``reset``: a TCP proxy to ``upstream`` (a collector) that resets every connection (RST) once it has carried
  16 KiB from the agent: registration gets through, collect streams are cut in the middle.
"""

from __future__ import annotations

import socket
import struct
import sys
import threading
import time
from concurrent import futures

import grpc

RESET_AFTER = 16 * 1024


class AnyMethod(grpc.GenericRpcHandler):
    def __init__(self, mode: str) -> None:
        self.mode = mode

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        def unary(request: bytes, context: grpc.ServicerContext) -> bytes:
            return self._answer(context)

        def stream(requests: object, context: grpc.ServicerContext) -> bytes:
            for _ in requests:  # type: ignore[attr-defined]
                if self.mode == "error":
                    break
            return self._answer(context)

        if details.method.endswith("/collect"):
            return grpc.stream_unary_rpc_method_handler(stream)
        return grpc.unary_unary_rpc_method_handler(unary)

    def _answer(self, context: grpc.ServicerContext) -> bytes:
        if self.mode == "slow":
            while context.is_active():
                time.sleep(0.1)
            return b""
        context.abort(grpc.StatusCode.INTERNAL, "fault server: internal error")
        return b""


def serve_grpc(mode: str) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
    server.add_generic_rpc_handlers((AnyMethod(mode),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"ready port={port}", flush=True)
    server.wait_for_termination()


def pipe(src: socket.socket, dst: socket.socket, limit: int | None) -> None:
    carried = 0
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            carried += len(data)
            if limit is not None and carried > limit:
                for s in (src, dst):  # RST both ways
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    s.close()
                return
            dst.sendall(data)
    except OSError:
        pass
    for s in (src, dst):
        try:
            s.close()
        except OSError:
            pass


def serve_reset(upstream: str) -> None:
    host, port = upstream.rsplit(":", 1)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    print(f"ready port={listener.getsockname()[1]}", flush=True)
    while True:
        client, _ = listener.accept()
        try:
            server = socket.create_connection((host, int(port)))
        except OSError:
            client.close()
            continue
        threading.Thread(target=pipe, args=(client, server, RESET_AFTER), daemon=True).start()
        threading.Thread(target=pipe, args=(server, client, None), daemon=True).start()


if __name__ == "__main__":
    if sys.argv[1] == "reset":
        serve_reset(sys.argv[2])
    else:
        serve_grpc(sys.argv[1])
