"""The bundled collector as a real subprocess on ephemeral 127.0.0.1 ports, plus a small client for it."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest

from skywalking.collector.process import CollectorProcess as SharedCollectorProcess
from tests.protocol.procs import wait_for

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def wait_until(probe: Callable[[], T], timeout: float = 5.0, interval: float = 0.05, what: str = "condition") -> T:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    return wait_for(probe, timeout, interval, what)  # type: ignore[no-any-return]


def _ser(msg: Any) -> bytes:
    return msg if isinstance(msg, bytes) else msg.SerializeToString()


class CollectorProcess(SharedCollectorProcess):
    """A started ``python -m skywalking.collector`` (the shared helper): a gRPC channel and JSON helpers."""

    def __init__(self, args: list[str]) -> None:
        super().__init__(*args, cwd=ROOT, timeout=20)
        self.channel: grpc.Channel | None = None
        self.grpc_target, self.http_target = self.grpc, self.http
        try:
            self.channel = grpc.insecure_channel(self.grpc_target)
        except BaseException:
            self.close()
            raise

    @property
    def lines(self) -> list[str]:
        return self.stdout_lines

    def close(self) -> int | None:
        """Terminate (SIGTERM), escalate to kill; returns the exit code."""
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        return self.stop()

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
