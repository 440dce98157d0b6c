"""How the agent's cost grows with the work (driven by bench/run.py ``--only scaling``).

* spans per segment: one entry span with 1, 10, 100, 1 000 local spans under it (300 is the segment limit, as in the
  Java agent; spans past it are counted, not recorded); µs per span.
* concurrency: 1 to 64 threads, and 1 to 64 asyncio tasks, each making entry + exit span segments; µs per span of
  the whole process.
* memory per queued segment: 10 000 two-span segments queued in the gRPC reporter with no backend (tracemalloc).

Every leg uses the in-memory reporter except the memory one. Prints one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import tracemalloc
from typing import Any

from skywalking import Component, Layer, agent, config
from skywalking.reporter.memory import MemoryReporter
from skywalking.trace.context import get_context

SPANS = (1, 10, 100, 1000)
WORKERS = (1, 4, 16, 64)
TOTAL_SPANS = 200_000


def one_request() -> None:
    ctx = get_context()
    with ctx.new_entry_span(op="/api/users") as entry:
        entry.layer, entry.component = Layer.Http, Component.Flask
        with ctx.new_exit_span(op="/downstream", peer="127.0.0.1:9090", component=Component.Requests) as out:
            out.layer = Layer.Http
            out.inject()


def spans_per_segment(n: int) -> float:
    segments = max(1, TOTAL_SPANS // (n + 1))
    t0 = time.perf_counter()
    for _ in range(segments):
        ctx = get_context()
        with ctx.new_entry_span(op="/work"):
            for _ in range(n):
                with ctx.new_local_span("/step"):
                    pass
    return (time.perf_counter() - t0) / (segments * (n + 1)) * 1e6


def threads(n: int) -> float:
    per = TOTAL_SPANS // 2 // n

    def work() -> None:
        for _ in range(per):
            one_request()

    pool = [threading.Thread(target=work) for _ in range(n)]
    t0 = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return (time.perf_counter() - t0) / (per * n * 2) * 1e6


def tasks(n: int) -> float:
    per = TOTAL_SPANS // 2 // n

    async def work() -> None:
        for i in range(per):
            one_request()
            if i % 16 == 0:
                await asyncio.sleep(0)  # interleave the tasks

    async def main() -> float:
        t0 = time.perf_counter()
        await asyncio.gather(*(work() for _ in range(n)))
        return time.perf_counter() - t0

    return asyncio.run(main()) / (per * n * 2) * 1e6


def queued_bytes(segments: int = 10_000) -> float:
    from skywalking.protocol_v8.session import V8Session
    from skywalking.reporter.grpc import GrpcReporter
    from skywalking.trace import context
    from skywalking.trace.identity import new_identity

    reporter = GrpcReporter(V8Session(), segments, ["127.0.0.1:9"], False)  # threads not started: all stay queued
    agent.stop()
    context.enable(reporter.report, identity=new_identity("bench-scaling", "bench"), protocol="v8")
    for _ in range(100):
        one_request()
    reporter._queue.clear()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(segments):
        one_request()
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    queued = len(reporter._queue)
    context.disable()
    return used / max(1, queued)


def main() -> None:
    config.init(agent_name="bench-scaling", agent_logging_level="WARNING")
    agent.start(reporter=MemoryReporter(maxlen=1024))
    one_request()
    result: dict[str, Any] = {
        "spans_per_segment": {n: spans_per_segment(n) for n in SPANS},
        "threads": {n: threads(n) for n in WORKERS},
        "asyncio_tasks": {n: tasks(n) for n in WORKERS},
    }
    result["bytes_per_queued_segment"] = queued_bytes()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
