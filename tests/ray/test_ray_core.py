"""Ray Core tasks and actors traced across processes with real Ray, checked in the bundled collector."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.protocol.procs import Collector
from tests.ray.driver import run_driver

DRIVER = Path(__file__).parent / "apps" / "core_driver.py"


@pytest.fixture(scope="module")
def run() -> Iterator[tuple[Collector, dict[str, Any]]]:
    collector = Collector()
    try:
        results = run_driver(DRIVER, collector.grpc)
        yield collector, results
    finally:
        collector.stop()


def linked(collector: Collector, trace_id: str, callee_op: str) -> tuple[dict, dict]:
    """The driver's exit span and the callee's entry span (in another segment) of one trace."""
    segments = collector.trace(trace_id, 2)["segments"]
    entries = [(seg, s) for seg in segments for s in seg["spans"]
               if s["spanType"] == "Entry" and s["operationName"] == callee_op]
    assert entries, [s["operationName"] for seg in segments for s in seg["spans"]]
    seg, entry = entries[0]
    (ref,) = entry["refs"]
    parent = next(p for p in segments if p["segmentId"] == ref["parentTraceSegmentId"])
    exit_span = next(s for s in parent["spans"] if s["spanId"] == ref["parentSpanId"])
    assert exit_span["spanType"] == "Exit" and exit_span["operationName"] == callee_op
    assert seg["segmentId"] != parent["segmentId"] and seg["serviceInstance"]
    return exit_span, entry


@pytest.mark.parametrize(("scenario", "callee", "value"), [
    ("task", "Ray/Task/square", 9),
    ("positional_only", "Ray/Task/positional_only", 3),
    ("kwargs", "Ray/Task/takes_kwargs", ["a"]),  # the user's **kwargs never sees our parameter
    ("generator_task", "Ray/Task/countdown", [3, 2, 1]),
    ("actor", "Ray/Actor/Counter.add", 3),
    ("async_actor", "Ray/Actor/Counter.async_add", 13),
    ("generator_method", "Ray/Actor/Counter.upto", [0, 1, 2]),
    ("async_generator_method", "Ray/Actor/Counter.async_upto", [0, 1]),
    ("actor_kwargs", "Ray/Actor/Counter.keywords", ["b"]),
    ("actor_creation", "Ray/Actor/Counter.__init__", 6),
])
def test_call_is_linked(run: tuple[Collector, dict[str, Any]], scenario: str, callee: str, value: Any) -> None:
    collector, results = run
    assert results[scenario]["value"] == value
    exit_span, entry = linked(collector, results[scenario]["trace"], callee)
    assert exit_span["componentId"] == entry["componentId"] == 7020
    assert exit_span["startTime"] <= entry["startTime"]


def test_nested_tasks_stay_in_one_trace(run: tuple[Collector, dict[str, Any]]) -> None:
    collector, results = run
    assert results["nested"]["value"] == 10
    linked(collector, results["nested"]["trace"], "Ray/Task/nested")
    linked(collector, results["nested"]["trace"], "Ray/Task/square")
    assert len(collector.trace(results["nested"]["trace"], 3)["segments"]) == 3


@pytest.mark.parametrize(("scenario", "callee"), [("task_error", "Ray/Task/boom"),
                                                  ("actor_error", "Ray/Actor/Counter.fail")])
def test_errors_are_recorded_on_the_callee(run: tuple[Collector, dict[str, Any]], scenario: str, callee: str) -> None:
    collector, results = run
    assert results[scenario]["value"] in ("RayTaskError(ValueError)", "RayTaskError(RuntimeError)", "ValueError",
                                          "RuntimeError")
    _, entry = linked(collector, results[scenario]["trace"], callee)
    assert entry["isError"]


def test_nothing_the_oap_would_drop(run: tuple[Collector, dict[str, Any]]) -> None:
    collector, _ = run
    collector.settled()
    assert collector.api("/api/drops") == []


def test_callees_without_the_plugin_keep_working() -> None:
    # the agent starts after ray.init(): the workers have no agent, the driver still injects and traces
    collector = Collector()
    try:
        results = run_driver(DRIVER, collector.grpc, "late-agent")
        assert results["task"]["value"] == 9 and results["kwargs"]["value"] == ["a"]
        assert results["actor"]["value"] == 3 and results["generator_method"]["value"] == [0, 1, 2]
        assert results["task_error"]["value"] is not None and results["nested"]["value"] == 10
        trace = collector.trace(results["task"]["trace"], 1)
        assert {seg["service"] for seg in trace["segments"]} == {"ray-core"}
        spans = [s for seg in trace["segments"] for s in seg["spans"]]
        assert [s["operationName"] for s in spans if s["spanType"] == "Exit"] == ["Ray/Task/square"]
        assert not any(s["spanType"] == "Entry" and s["operationName"].startswith("Ray/") for s in spans)
    finally:
        collector.stop()


def test_rays_own_opentelemetry_tracing_on_as_well() -> None:
    pytest.importorskip("opentelemetry.sdk")
    collector = Collector()
    try:
        results = run_driver(DRIVER, collector.grpc, "ray-otel")
        for scenario, callee in (("task", "Ray/Task/square"), ("kwargs", "Ray/Task/takes_kwargs"),
                                 ("actor", "Ray/Actor/Counter.add"), ("async_actor", "Ray/Actor/Counter.async_add"),
                                 ("actor_creation", "Ray/Actor/Counter.__init__")):
            linked(collector, results[scenario]["trace"], callee)
        assert results["kwargs"]["value"] == ["a"] and results["actor_kwargs"]["value"] == ["b"]
        assert results["nested"]["value"] == 10
    finally:
        collector.stop()


def test_exit_spans_end_at_submission_by_default(run: tuple[Collector, dict[str, Any]]) -> None:
    # no completion callback: the exit span ends when .remote() returns
    collector, results = run
    exit_span, entry = linked(collector, results["nested"]["trace"], "Ray/Task/nested")
    assert exit_span["endTime"] < entry["endTime"]  # the callee waits for its own nested call


def test_exit_spans_can_end_when_the_result_is_ready() -> None:
    # plugin_ray_exit_until_ready=true: a completion callback per call ends the exit span
    collector = Collector()
    try:
        results = run_driver(DRIVER, collector.grpc, SW_PLUGIN_RAY_EXIT_UNTIL_READY="true")
        for scenario, callee in (("task", "Ray/Task/square"), ("nested", "Ray/Task/nested"),
                                 ("generator_task", "Ray/Task/countdown"), ("actor", "Ray/Actor/Counter.add"),
                                 ("async_generator_method", "Ray/Actor/Counter.async_upto")):
            exit_span, entry = linked(collector, results[scenario]["trace"], callee)
            assert exit_span["endTime"] >= entry["endTime"], scenario  # the exit span ends when the result is ready
        collector.settled()
        assert collector.api("/api/drops") == []
    finally:
        collector.stop()
