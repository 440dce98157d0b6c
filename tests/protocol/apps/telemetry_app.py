"""A process that logs and keeps meters under the agent, configured by SW_* variables; prints one JSON line
(``result=``) with the ids of its trace and the agent's stats, then stops the agent. Scenario: argv[1]."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time

from skywalking import agent
from skywalking.meter import Counter, CounterMode, Gauge, Histogram
from skywalking.trace.context import get_context

original_call_handlers = logging.Logger.callHandlers


def logs() -> dict[str, object]:
    app = logging.getLogger("shop.orders")
    app.addHandler(logging.NullHandler())
    app.setLevel(logging.DEBUG)
    muted = logging.getLogger("shop.muted")
    muted.addFilter(lambda record: False)
    span = get_context().new_entry_span("/orders/{id}")
    with span:
        app.info("below the reporter's level")
        app.warning("order %s for %s", 7, "bob")
        try:
            raise KeyError("stock")
        except KeyError:
            app.exception("calling http://bob:secret@db.local/stock failed")
        muted.error("rejected by a filter")
        logging.getLogger("skywalking.anything").error("the agent's own")
        seg = span.context.current_segment
        ids = {"traceId": seg.related_traces[0].value, "segmentId": seg.segment_id.value, "spanId": span.sid}
    done = threading.Event()
    threading.Thread(target=lambda: (app.error("from a thread without a span"), done.set()), name="worker-1").start()
    done.wait(5)
    return ids


def meters() -> dict[str, object]:
    orders = Counter.Builder("orders_total", CounterMode.INCREMENT, [("shop", "north")]).build()
    rate = Counter.Builder("orders_rate", CounterMode.RATE).build()
    depth = iter(range(100, 0, -1))
    Gauge.Builder("queue_depth", depth).tag("queue", "q1").build()
    latency = Histogram.Builder("latency_ms", [10, 50, 100]).build()
    orders.increment(2)
    rate.increment(5)
    for v in (5, 10, 49.9, 50, 500):
        latency.add_value(v)
    time.sleep(float(sys.argv[2]) if len(sys.argv) > 2 else 1.5)
    orders.increment(1)
    return {}


def loguru_logs() -> dict[str, object]:
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="INFO")
    span = get_context().new_entry_span("/loguru")
    with span:
        logger.debug("below every level")
        logger.success("paid {} for order {}", 12.5, 7)
        try:
            {}["missing"]
        except KeyError:
            logger.exception("lookup failed")
        seg = span.context.current_segment
        ids = {"traceId": seg.related_traces[0].value, "segmentId": seg.segment_id.value, "spanId": span.sid}
    return ids


def busy_in_slow_endpoint(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sum(range(1000))


def busy_elsewhere(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sum(range(1000))


def profile() -> dict[str, object]:
    deadline = time.monotonic() + 15  # the profiler polls every SW_AGENT_COLLECTOR_GET_PROFILE_TASK_INTERVAL
    while not agent.stats().get("snapshot", {}).get("profiler", {}).get("active_task"):
        if time.monotonic() > deadline:
            raise SystemExit("no profile task arrived")
        time.sleep(0.05)
    ids: dict[str, object] = {}

    def serve(endpoint: str, work: object, seconds: float) -> None:
        span = get_context().new_entry_span(endpoint)
        with span:
            work(seconds)  # type: ignore[operator]
            ids[endpoint] = span.context.current_segment.segment_id.value

    slow = threading.Thread(target=serve, args=("/slow", busy_in_slow_endpoint, 0.8), name="slow-worker")
    slow.start()
    serve("/fast", busy_elsewhere, 0.5)
    slow.join()
    return {"segments": ids, "profiler": agent.stats()["snapshot"]["profiler"]}


def main() -> None:
    agent.start()
    scenario = {"logs": logs, "meters": meters, "profile": profile, "loguru": loguru_logs,
                "idle": dict}[sys.argv[1]]
    result = scenario()
    threads = sorted(t.name for t in threading.enumerate())
    patched = logging.Logger.callHandlers is not original_call_handlers
    data = agent.agent._telemetry  # its books stay readable after the stop
    agent.stop()
    stats = data.stats() if data is not None else {}
    restored = logging.Logger.callHandlers is original_call_handlers
    print("result=" + json.dumps({**result, "threads": threads, "patched": patched, "restored": restored,
                                  "stats": stats}), flush=True)


if __name__ == "__main__":
    main()
