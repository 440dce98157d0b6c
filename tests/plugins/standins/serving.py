"""What the stand-ins share: serving on 127.0.0.1 from a daemon thread of the test process, stopping, and running as
a program of their own (``python -m tests.plugins.standins.<name>``).

A stand-in subclasses ``ThreadServer`` (or ``SocketServerStandIn`` when a ``socketserver`` server does the work),
sets ``port`` and defines ``serve()`` (blocks while serving) and ``close()`` (makes ``serve()`` return and ends the
open connections)."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T", bound="ThreadServer")
C = TypeVar("C")


def hang_up(sock: socket.socket) -> None:
    """Shut both directions of ``sock`` (wakes a thread blocked on it; ``close()`` alone does not)."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # closed already, or never connected
        pass


def serve_connections(accept: Callable[[], C], handle: Callable[[C], None], name: str) -> None:
    """Accept connections until ``accept`` fails (the listener was closed), each handled in a daemon thread."""
    while True:
        try:
            conn = accept()
        except Exception:  # the listening socket was closed by close()
            return
        threading.Thread(target=handle, args=(conn,), name=name, daemon=True).start()


class ThreadServer:
    """``start()`` runs ``serve()`` in a daemon thread; ``stop()`` calls ``close()`` and waits for the thread. As a
    context manager it starts and stops."""

    port: int
    thread_name = "stand-in"
    _thread: threading.Thread | None = None

    def serve(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    @property
    def serving(self) -> bool:
        return self._thread is not None

    def start(self: T) -> T:
        """Serve from a daemon thread (once: a started stand-in is returned as it is)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self.serve, name=self.thread_name, daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self.close()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(10)

    def __enter__(self: T) -> T:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SocketServerStandIn(ThreadServer):
    """``serve()`` and ``close()`` for the ``socketserver`` server in ``_server``."""

    _server: socketserver.BaseServer

    def serve(self) -> None:
        self._server.serve_forever(poll_interval=0.1)

    def close(self) -> None:
        if self.serving:  # shutdown() waits for serve_forever(): only when it runs
            self._server.shutdown()
        self._server.server_close()


class ThreadingServer(socketserver.ThreadingTCPServer):
    """A TCP server with a daemon thread per connection, on an address it may reuse at once."""

    daemon_threads = True
    allow_reuse_address = True


def serve_until_interrupted(standin: ThreadServer) -> None:
    """Serve until interrupted, printing ``ready port=<port>`` once listening."""
    standin.start()
    print(f"ready port={standin.port}", flush=True)
    try:
        while True:  # a timed wait: a signal delivered to a serving thread is handled within a second
            time.sleep(1)
    finally:
        standin.stop()
