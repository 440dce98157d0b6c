"""Calls that cross nodes of a real two-node Ray cluster stay in one trace."""

from __future__ import annotations

from pathlib import Path

from tests.protocol.procs import Collector
from tests.ray.driver import run_driver

DRIVER = Path(__file__).parent / "apps" / "cluster_driver.py"


def test_task_chain_and_actor_across_two_nodes() -> None:
    collector = Collector()
    try:
        results = run_driver(DRIVER, collector.grpc)
        chain = results["chain"]
        assert chain["value"] == 41 and chain["head"] != chain["node2"]

        trace = collector.trace(chain["trace"], 3)
        entries = {s["operationName"]: (seg, s) for seg in trace["segments"] for s in seg["spans"]
                   if s["spanType"] == "Entry"}
        seg2, entry2 = entries["Ray/Task/on_node2"]
        seg1, entry1 = entries["Ray/Task/on_head"]
        assert entry2["refs"][0]["parentTraceSegmentId"] == seg1["segmentId"]
        # the worker on the second node is its own instance; OAP 6.6.0 shows our name (node, pid) as a property
        names = _instance_names(collector)
        assert f"ray-cluster-{chain['node2'][:8]}-" in names and f"ray-cluster-{chain['head'][:8]}-" in names
        actor = collector.trace(results["actor"]["trace"], 2)
        assert any(s["operationName"] == "Ray/Actor/Remote.ping" and s["spanType"] == "Entry" and s["refs"]
                   for seg in actor["segments"] for s in seg["spans"])
        collector.settled()
        assert collector.api("/api/drops") == []
    finally:
        collector.stop()


def _instance_names(collector: Collector) -> str:
    return " ".join(i["properties"].get("instance_name", "") for i in collector.api("/api/inventory")["instances"])
