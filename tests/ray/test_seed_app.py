"""The user's original code (config.init + agent.start in each deployment's __init__, no driver agent)
keeps working on real Serve and yields linked traces under the service names it chose."""

from __future__ import annotations

from pathlib import Path

from tests.protocol.procs import Collector, free_port, wait_for
from tests.ray.conftest import serve_traced
from tests.ray.driver import run_driver

pytestmark = serve_traced

DRIVER = Path(__file__).parent / "apps" / "seed_driver.py"


def test_users_original_deployments_link_upstream_and_downstream(tmp_path: Path) -> None:
    collector = Collector()
    try:
        answers = run_driver(DRIVER, collector.grpc, str(free_port()), str(tmp_path))
        assert answers and all(a == "downstream resp: im' downstream" for a in answers)

        def linked_trace() -> dict | None:
            for trace in collector.api("/api/traces"):
                full = collector.api(f"/api/traces/{trace['traceId']}")
                services = {seg["service"] for seg in full["segments"]}
                if {"ray-upstream", "ray-downstream"} <= services:
                    return full
            return None

        trace = wait_for(linked_trace, timeout=30, what="a trace across ray-upstream and ray-downstream")
        (entry,) = [s for seg in trace["segments"] if seg["service"] == "ray-downstream" for s in seg["spans"]
                    if s["spanType"] == "Entry"]
        (ref,) = entry["refs"]
        parent = next(seg for seg in trace["segments"] if seg["segmentId"] == ref["parentTraceSegmentId"])
        assert parent["service"] == "ray-upstream"
        assert entry["operationName"] == "Ray/Serve/default/Downstream.hello"
        collector.settled()
        assert collector.api("/api/drops") == []
    finally:
        collector.stop()
