"""What the plugin tests share.

* ``Services``: one expected-data service test. It owns the bundled collector and every process the test starts
  (apps traced by the agent, stand-in servers, the traced "upstream-java" caller) and stops them all on exit.
* ``serve``: the body of a module-scoped server fixture.
* ``traced``: a call inside a local span, for the in-process tests.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest

from skywalking.reporter.memory import MemoryReporter
from skywalking.trace.context import get_context
from tests.plugins import expect
from tests.protocol.procs import Collector, Proc, Service, clean_env, wait_for

EXPECTED = Path(__file__).parent / "expected"

Segments = list[dict[str, Any]]


def port_of(proc: Proc) -> int:
    """The port of a process that printed ``ready port=<port>``."""
    return int(proc.ready_line.split("=")[1])


class Services:
    """``with Services() as services:`` a collector, then the processes ``start``/``python`` add; all of them
    stop when the block ends, however it ends."""

    def __init__(self) -> None:
        self.collector = Collector()
        self.procs: list[Proc] = []
        self._caller: Service | None = None

    def __enter__(self) -> Services:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            for proc in reversed(self.procs):
                proc.stop()
        finally:
            self.collector.stop()

    def env(self, name: str, **settings: str) -> dict[str, str]:
        """The environment of a service traced as ``name`` that reports to the collector."""
        return clean_env(SW_AGENT_NAME=name, SW_AGENT_COLLECTOR_BACKEND_SERVICES=self.collector.grpc,
                         SW_AGENT_REGISTER_WAIT="15", SW_AGENT_INSTANCE_NAME=f"{name}-1", **settings)

    def start(self, cmd: list[str], name: str | None = None, ready: str = "ready port=", timeout: float = 30.0,
              **settings: str) -> Proc:
        """Run ``cmd`` until it prints a line starting with ``ready``: traced as service ``name`` (with the extra
        SW_* ``settings``), or without any agent setting when ``name`` is None."""
        env = self.env(name, **settings) if name is not None else clean_env(**settings)
        proc = Proc(cmd, env, ready, timeout=timeout)
        self.procs.append(proc)
        return proc

    def python(self, *args: str | Path | int, name: str | None = None, ready: str = "ready port=",
               timeout: float = 30.0, **settings: str) -> Proc:
        """``start`` this interpreter with ``args`` (a script or ``-m module``, then its arguments)."""
        return self.start([sys.executable, *map(str, args)], name, ready, timeout, **settings)

    def call_front(self, port: int, path: str) -> Any:
        """What ``GET http://127.0.0.1:<port><path>`` answered when the caller (traced by hand, sending sw6 like a
        Java agent) made it; the caller starts on the first call."""
        if self._caller is None:
            self._caller = Service("upstream-java", self.collector.grpc)
            self.procs.append(self._caller)
        return self._caller.call(next=f"http://127.0.0.1:{port}{path}")["downstream"]

    def check(self, expected: str | None, segments: int | None = None,
              arrange: Callable[[Segments], Segments] | None = None, **variables: Any) -> Segments:
        """Every segment received, once ``segments`` (by default as many as the file expects) are in and none waits
        for OAP's retry window: matched against ``expected/<expected>`` (with ``variables``, in the order
        ``arrange`` gives them) unless ``expected`` is None, and none of them dropped under OAP 6.6.0's rules."""
        wanted = expect.load(EXPECTED / expected, **variables) if expected is not None else None
        if segments is None:
            assert wanted is not None, "how many segments?"
            segments = len(wanted["segments"])
        self.collector.segments(segments)
        self.collector.settled()
        received: Segments = self.collector.api("/api/segments")
        if wanted is not None:
            expect.check(wanted, arrange(received) if arrange else received)
        assert self.collector.api("/api/drops") == []
        return received


def one_trace(segments: Segments, apart: str | None = None) -> None:
    """All ``segments`` belong to one trace, except those whose entry span (the last) is named ``apart``."""
    linked = [s for s in segments if apart is None or s["spans"][-1]["operationName"] != apart]
    assert len({s["traceId"] for s in linked}) == 1, [(s["service"], s["traceId"]) for s in linked]


def wait_printed(proc: Proc, lines: Iterable[str], timeout: float = 30.0) -> None:
    """Until ``proc`` printed a line starting with each of ``lines`` (end one with ``\\n`` to ask for the whole
    line)."""
    wanted = list(lines)
    wait_for(lambda: all(any(out.startswith(want) for out in proc.stdout) for want in wanted), timeout=timeout,
             what=f"{wanted} in {proc.stdout} {proc.stderr[-20:]}")


class _Server(Protocol):
    def stop(self) -> None: ...


S = TypeVar("S", bound=_Server)


def serve(start: Callable[[], S], *needs: str) -> Iterator[S]:
    """A module-scoped fixture's body: skip without the modules ``needs``, else ``start()`` a server, yield it and
    stop it after the module's tests."""
    for module in needs:
        pytest.importorskip(module)
    server = start()
    try:
        yield server
    finally:
        server.stop()


def traced(reporter: MemoryReporter, fn: Callable[[], Any]) -> tuple[Any, list[Any]]:
    """``fn()`` inside a local span; its result and the spans of the segment (the local span last)."""
    with get_context().new_local_span("/test"):
        result = fn()
    assert reporter.wait_for(1)
    return result, list(reporter.segments[-1].spans)
