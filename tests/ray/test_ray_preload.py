"""A cluster started elsewhere: workers get the agent from node-level preloading, the driver has none."""

from __future__ import annotations

from pathlib import Path

from tests.protocol.procs import Collector, wait_for
from tests.ray.driver import run_driver

DRIVER = Path(__file__).parent / "apps" / "preload_driver.py"


def test_node_level_preload_traces_workers_of_an_uninstrumented_driver() -> None:
    collector = Collector()
    try:
        # what `ray start` on each node would be given; the local cluster inherits the driver's environment
        results = run_driver(DRIVER, RAY_preload_python_modules="skywalking.bootstrap.ray_worker",
                             SW_AGENT_NAME="ray-preload", SW_AGENT_COLLECTOR_BACKEND_SERVICES=collector.grpc,
                             SW_AGENT_REGISTER_WAIT="15", SW_AGENT_LOGGING_LEVEL="WARNING")
        assert results == {"value": 41, "driver_has_agent": False}

        def outer_root() -> dict | None:
            for seg in collector.api("/api/segments?service=ray-preload"):
                entry = seg["spans"][-1]
                if entry["operationName"] == "Ray/Task/outer" and entry["spanType"] == "Entry":
                    return seg
            return None

        root = wait_for(outer_root, what="the outer task's segment")
        assert not root["spans"][-1]["refs"]  # an untraced caller: the trace starts in the worker
        trace = collector.trace(root["traceId"], 2)
        (inner,) = [s for seg in trace["segments"] for s in seg["spans"]
                    if s["spanType"] == "Entry" and s["operationName"] == "Ray/Task/inner"]
        assert inner["refs"][0]["parentTraceSegmentId"] == root["segmentId"]
        collector.settled()
        assert collector.api("/api/drops") == []
    finally:
        collector.stop()
