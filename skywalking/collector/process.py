"""The bundled collector as a child process (``python -m skywalking.collector``) on 127.0.0.1 ephemeral ports:
start it, wait for its ready line, read its output, stop it. Tests, benchmarks and the demo use this one helper.

    with CollectorProcess("--no-print") as collector:
        run_agent(backend=collector.grpc)  # "127.0.0.1:<port>"; the JSON API is at http://<collector.http>
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from types import TracebackType
from typing import IO

READY = "collector ready "  # then "grpc=<host:port> http=<host:port>" (skywalking/collector/__main__.py)


class CollectorProcess:
    """A started collector. ``grpc`` / ``http`` are its ``host:port`` addresses, ``grpc_port`` / ``http_port``
    the ports; ``stdout_lines`` / ``stderr_lines`` collect its output as it comes (a thread reads each stream);
    ``popen`` is the process, the leader of its own process group. Raises ``RuntimeError`` (and stops the
    process) if the ready line does not come within ``timeout`` seconds."""

    def __init__(self, *args: str, python: str | os.PathLike[str] = sys.executable, grpc_port: int = 0,
                 http_port: int = 0, env: Mapping[str, str] | None = None, cwd: str | os.PathLike[str] | None = None,
                 nice: int = 0, timeout: float = 30.0) -> None:
        cmd = [str(python), "-m", "skywalking.collector", "--host", "127.0.0.1", "--grpc-port", str(grpc_port),
               "--http-port", str(http_port), *args]
        self.args = list(args)
        self.stdout_lines: list[str] = []
        self.stderr_lines: list[str] = []
        self.ready_line = ""
        self._ready = threading.Event()
        self.popen = subprocess.Popen(cmd, env=dict(env) if env is not None else None, cwd=cwd, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                                      preexec_fn=(lambda: os.nice(nice)) if nice else None)
        self._readers = [threading.Thread(target=self._read, args=(stream, sink), daemon=True, name=f"collector-{n}")
                         for n, stream, sink in (("stdout", self.popen.stdout, self.stdout_lines),
                                                 ("stderr", self.popen.stderr, self.stderr_lines))]
        for reader in self._readers:
            reader.start()
        if not self._ready.wait(timeout) or not self.ready_line:
            code = self.stop()
            why = f"exited with {code}" if self._ready.is_set() else f"not ready within {timeout}s"
            raise RuntimeError(f"collector {why}: {cmd}\n{''.join(self.stderr_lines)[-2000:]}")
        parts = dict(p.split("=", 1) for p in self.ready_line[len(READY):].split())
        self.grpc, self.http = parts["grpc"], parts["http"]
        self.grpc_port, self.http_port = int(self.grpc.rsplit(":", 1)[1]), int(self.http.rsplit(":", 1)[1])

    def _read(self, stream: IO[str] | None, sink: list[str]) -> None:
        if stream is None:
            return
        for line in stream:
            sink.append(line)
            if sink is self.stdout_lines and not self.ready_line and line.startswith(READY):
                self.ready_line = line.strip()
                self._ready.set()
        if sink is self.stdout_lines:
            self._ready.set()  # the process ended: stop waiting (ready_line tells whether it was ready)

    @property
    def running(self) -> bool:
        return self.popen.poll() is None

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the collector's process group (nothing if it has exited)."""
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signum)
            except ProcessLookupError:
                pass

    def stop(self, kill: bool = False, timeout: float = 10.0) -> int | None:
        """SIGTERM (SIGKILL with ``kill``), SIGKILL if still running after ``timeout`` seconds; returns the exit
        code. The output read so far stays in ``stdout_lines`` / ``stderr_lines``. Idempotent."""
        if self.popen.poll() is None:
            self.signal(signal.SIGKILL if kill else signal.SIGTERM)
            self.signal(signal.SIGCONT)  # a stopped (SIGSTOP) collector handles SIGTERM only once continued
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.popen.wait(timeout)
        for reader in self._readers:
            reader.join(2)
        return self.popen.returncode

    def __enter__(self) -> CollectorProcess:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
