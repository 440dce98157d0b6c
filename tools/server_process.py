"""One base for the throw-away servers the tests and benchmarks start (Redis, PostgreSQL, RabbitMQ, a Kafka broker,
MariaDB): a real server program on 127.0.0.1, run as a process of its own.

A subclass names itself (``name``: the temp dir prefix and log file), says what to run (``command()``, and
``popen_options()`` for env/cwd/user) and how to tell it is serving (``ready()``: one probe, ``True`` once it
answers; an ``OSError`` counts as not yet). Constructing it starts the server: a temp dir ``dir`` holding the log
``log``, ``setup()`` once, then up to ``attempts`` times a free ``port`` and the command in its own session with
stdout and stderr in the log, probed every ``probe_interval`` for ``ready_timeout`` seconds (a free port may be
taken by someone else before the server binds it: the next attempt picks another), then ``started()``. When no
attempt gets ready it raises ``RuntimeError`` with the end of the log, having stopped everything.

``stop()`` sends ``stop_signal`` to the process group (to the server process alone when ``signal_group`` is false),
waits ``stop_timeout`` seconds, then kills the group, and removes the temp dir; the object is also a context
manager that stops it. Standard library only (bench/run.py imports tools/mariadb.py without the test suite)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

HOST = "127.0.0.1"
_LOG_TAIL = 8000  # characters of the log a start failure quotes

S = TypeVar("S", bound="ServerProcess")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """A server program on 127.0.0.1:``port`` with its files in ``dir``; see the module docstring."""

    name = "server"
    not_ready = "the server did not answer"  # the start failure's first line
    attempts = 3
    ready_timeout = 30.0
    probe_interval = 0.1
    stop_signal = signal.SIGTERM
    signal_group = True
    stop_timeout = 30.0

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix=f"sw-{self.name}-")
        self.log = os.path.join(self.dir, f"{self.name}.log")
        self.popen: subprocess.Popen[bytes] | None = None
        self.port = 0
        try:
            self.setup()
            for _ in range(self.attempts):
                self.port = free_port()
                command = self.command()
                with open(self.log, "ab") as log:
                    self.popen = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                                  stderr=subprocess.STDOUT, start_new_session=True,
                                                  **self.popen_options())
                if self._wait_ready():
                    self.started()
                    return
                self.end_process()
            raise RuntimeError(f"{self.not_ready}:\n{self.log_tail()}")
        except BaseException:
            self.stop()
            raise

    # -- what a subclass defines ------------------------------------------------------------------------------------

    def setup(self) -> None:
        """Run once before the first attempt (data directories, config files)."""

    def command(self) -> list[str]:
        """The command line of one attempt; ``self.port`` is its fresh port."""
        raise NotImplementedError

    def popen_options(self) -> dict[str, Any]:
        """Further ``subprocess.Popen`` arguments of an attempt (``env``, ``cwd``, ``user``...); called after
        ``command()``."""
        return {}

    def ready(self) -> bool:
        """One probe: whether the server answers on ``self.port`` yet."""
        raise NotImplementedError

    def started(self) -> None:
        """Run once the server is ready (creating databases, say)."""

    # -- helpers ----------------------------------------------------------------------------------------------------

    def exchange(self, request: bytes, size: int, timeout: float = 2.0) -> bytes:
        """Connect to the port, send ``request`` (if any) and return the first reply bytes (at most ``size``)."""
        with socket.create_connection((HOST, self.port), timeout=timeout) as s:
            if request:
                s.sendall(request)
            return s.recv(size)

    def log_tail(self) -> str:
        try:
            return Path(self.log).read_text(errors="replace")[-_LOG_TAIL:]
        except OSError as e:
            return f"(no log: {e})"

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline and self.popen is not None and self.popen.poll() is None:
            try:
                if self.ready():
                    return True
            except OSError:
                pass
            time.sleep(self.probe_interval)
        return False

    # -- stopping ---------------------------------------------------------------------------------------------------

    def end_process(self) -> None:
        """End the server process (and its group), keeping the temp dir."""
        popen, self.popen = self.popen, None
        if popen is None or popen.poll() is not None:
            return
        try:
            if self.signal_group:
                os.killpg(popen.pid, self.stop_signal)
            else:
                popen.send_signal(self.stop_signal)
        except ProcessLookupError:
            pass
        try:
            popen.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            popen.wait(10)

    def stop(self) -> None:
        """End the server and remove its temp dir."""
        try:
            self.end_process()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self: S) -> S:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
