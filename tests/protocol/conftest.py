"""The bundled collector as a real subprocess on ephemeral 127.0.0.1 ports, plus a small client for it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest

from tests.protocol.procs import wait_for

ROOT = Path(__file__).resolve().parents[2]
READY = re.compile(r"^collector ready grpc=(\S+) http=(\S+)$")
T = TypeVar("T")


def wait_until(probe: Callable[[], T], timeout: float = 5.0, interval: float = 0.05, what: str = "condition") -> T:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    return wait_for(probe, timeout, interval, what)  # type: ignore[no-any-return]


def _ser(msg: Any) -> bytes:
    return msg if isinstance(msg, bytes) else msg.SerializeToString()


class CollectorProcess:
    """A started ``python -m skywalking.collector``: its ports, stdout lines, a gRPC channel and JSON helpers."""

    def __init__(self, args: list[str]) -> None:
        self.args = args
        self.proc = subprocess.Popen([sys.executable, "-m", "skywalking.collector", "--host", "127.0.0.1",
                                      "--grpc-port", "0", "--http-port", "0", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        self.lines: list[str] = []
        self.stderr_lines: list[str] = []
        self._ready = threading.Event()
        self._readers = [threading.Thread(target=self._read, args=(self.proc.stdout, self.lines), daemon=True),
                         threading.Thread(target=self._read, args=(self.proc.stderr, self.stderr_lines), daemon=True)]
        for reader in self._readers:
            reader.start()
        self.channel: grpc.Channel | None = None
        try:
            if not self._ready.wait(20):
                raise AssertionError(f"collector not ready; stderr: {''.join(self.stderr_lines)[-2000:]}")
            match = READY.match(self.lines[0].rstrip("\n"))
            assert match, self.lines[0]
            self.grpc_target, self.http_target = match.group(1), match.group(2)
            self.channel = grpc.insecure_channel(self.grpc_target)
        except BaseException:
            self.close()
            raise

    def _read(self, stream: Any, sink: list[str]) -> None:
        for line in stream:
            sink.append(line)
            if sink is self.lines:
                self._ready.set()
        if sink is self.lines:
            self._ready.set()

    def close(self) -> int | None:
        """Terminate (SIGTERM), escalate to kill; returns the exit code."""
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for reader in self._readers:
            reader.join(2)
        return self.proc.returncode

    # -- output --

    @property
    def stdout(self) -> str:
        return "".join(self.lines)

    def wait_stdout(self, needle: str, timeout: float = 5.0) -> str:
        return wait_until(lambda: self.stdout if needle in self.stdout else "", timeout, what=f"stdout {needle!r}")

    # -- HTTP --

    def api(self, path: str, method: str = "GET") -> Any:
        req = urllib.request.Request(f"http://{self.http_target}{path}", method=method,
                                     data=b"" if method == "POST" else None)
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return {"status": exc.code, **json.loads(exc.read())}

    # -- gRPC --

    def unary(self, path: str, request: Any, response_type: Any) -> Any:
        assert self.channel is not None
        call = self.channel.unary_unary(path, request_serializer=_ser, response_deserializer=response_type.FromString)
        return call(request, timeout=5)

    def stream(self, path: str, messages: list[Any], response_type: Any) -> Any:
        assert self.channel is not None
        call = self.channel.stream_unary(path, request_serializer=_ser,
                                         response_deserializer=response_type.FromString)
        return call(iter(messages), timeout=5)


@pytest.fixture(scope="module")
def collector() -> Iterator[CollectorProcess]:
    """One collector shared by a module's tests (they use unique names); short delays to keep tests fast."""
    proc = CollectorProcess(["--register-delay", "0.2", "--print-delay", "0.3"])
    try:
        yield proc
    finally:
        proc.close()


@pytest.fixture
def start_collector() -> Iterator[Callable[..., CollectorProcess]]:
    """A factory for private collectors (fresh inventory, own options); all are terminated after the test."""
    started: list[CollectorProcess] = []

    def _start(*args: str) -> CollectorProcess:
        proc = CollectorProcess(list(args))
        started.append(proc)
        return proc

    yield _start
    for proc in started:
        proc.close()
