"""Ray Serve traced end to end with real Ray: HTTP ingress, handle calls (unary, streaming, errors)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.protocol.procs import Collector, free_port
from tests.ray.conftest import serve_has, serve_traced
from tests.ray.driver import run_driver

pytestmark = serve_traced

DRIVER = Path(__file__).parent / "apps" / "serve_driver.py"


@pytest.fixture(scope="module")
def run() -> Iterator[tuple[Collector, dict[str, Any]]]:
    collector = Collector()
    try:
        yield collector, run_driver(DRIVER, collector.grpc, str(free_port()))
    finally:
        collector.stop()


def spans(trace: dict[str, Any]) -> list[tuple[dict, dict]]:
    return [(seg, span) for seg in trace["segments"] for span in seg["spans"]]


def parent_of(trace: dict[str, Any], span: dict[str, Any]) -> tuple[dict, dict]:
    (ref,) = span["refs"]
    seg = next(s for s in trace["segments"] if s["segmentId"] == ref["parentTraceSegmentId"])
    return seg, next(p for p in seg["spans"] if p["spanId"] == ref["parentSpanId"])


def test_http_ingress_and_handle_calls_form_one_trace(run: tuple[Collector, dict[str, Any]]) -> None:
    collector, results = run
    assert results["http"]["body"] == {"text": "hello http", "parts": [0, 1, 2]}
    trace = collector.trace(results["http"]["trace"], 4)
    by_op = {(seg["service"], span["spanType"], span["operationName"]): (seg, span) for seg, span in spans(trace)}
    services = {seg["service"] for seg in trace["segments"]}
    assert {"ray-driver", "Upstream", "Downstream"} <= services  # one service per deployment
    # the HTTP request from an instrumented caller continues into the ingress replica
    ingress = [(seg, s) for (svc, kind, _), (seg, s) in by_op.items() if svc == "Upstream" and kind == "Entry"]
    assert len(ingress) == 1
    _, parent = parent_of(trace, ingress[0][1])
    assert (parent["spanType"], parent["operationName"]) == ("Exit", "/hello-ray/chat")
    # unary and streaming handle calls: Upstream exit → Downstream entry
    for method in ("hello", "stream"):
        op = f"Ray/Serve/default/Downstream.{method}"
        _, entry = by_op[("Downstream", "Entry", op)]
        _, exit_span = parent_of(trace, entry)
        assert exit_span == by_op[("Upstream", "Exit", op)][1]
        assert exit_span["endTime"] >= entry["endTime"] - 1  # ends when the call completes
    hello = by_op[("Downstream", "Entry", "Ray/Serve/default/Downstream.hello")][1]
    tags = {t["key"]: t["value"] for t in hello["tags"]}
    assert (tags["ray.app"], tags["ray.deployment"], tags["ray.method"]) == ("default", "Downstream", "hello")


def test_a_response_passed_on_unawaited_still_ends_its_span(run: tuple[Collector, dict[str, Any]]) -> None:
    # the exit span of a unary call ends in result()/await, or when its response is dropped without either
    collector, results = run
    assert results["passed_on"]["body"] == "hello hello inner"
    trace = collector.trace(results["passed_on"]["trace"], 3)
    entries = [s for seg, s in spans(trace) if seg["service"] == "Downstream" and s["spanType"] == "Entry"]
    assert len(entries) == 2
    exits = {parent_of(trace, entry)[1]["spanId"] for entry in entries}
    driver = [s for seg, s in spans(trace) if seg["service"] == "ray-driver" and s["spanType"] == "Exit"]
    assert {s["spanId"] for s in driver} == exits and all(s["endTime"] >= s["startTime"] for s in driver)


def test_errors_mark_callee_and_awaiting_caller(run: tuple[Collector, dict[str, Any]]) -> None:
    collector, results = run
    assert results["fail"]["body"] == {"status": 500}
    trace = collector.trace(results["fail"]["trace"], 3)
    op = "Ray/Serve/default/Downstream.boom"
    found = {(seg["service"], span["spanType"]): span for seg, span in spans(trace) if span["operationName"] == op}
    assert found[("Downstream", "Entry")]["isError"] and found[("Upstream", "Exit")]["isError"]


def test_handle_call_from_the_driver(run: tuple[Collector, dict[str, Any]]) -> None:
    collector, results = run
    assert results["handle"]["body"] == "hello driver"
    trace = collector.trace(results["handle"]["trace"], 2)
    (entry,) = [s for seg, s in spans(trace) if seg["service"] == "Downstream" and s["spanType"] == "Entry"]
    seg, exit_span = parent_of(trace, entry)
    assert seg["service"] == "ray-driver" and exit_span["operationName"] == "Ray/Serve/default/Downstream.hello"


def test_a_batch_carries_a_ref_to_every_request_it_served(run: tuple[Collector, dict[str, Any]]) -> None:
    """``@serve.batch``: three requests from three traces served by one call of the batched method. Its segment
    has one ref per request (to that request's entry span in the replica), joins all three traces, and the
    calls it makes are its own children, not the first request's."""
    collector, results = run
    assert [r["body"] for r in results["batch"]] == [3, 103, 203]
    traces = {r["trace"] for r in results["batch"]}
    entries = {}  # request trace -> (segment, entry span) of the batched call in the replica
    for trace_id in traces:
        trace = collector.trace(trace_id, 2)
        (found,) = [(seg, s) for seg, s in spans(trace) if seg["service"] == "Downstream" and s["spanType"] == "Entry"]
        entries[trace_id] = found

    def batch_segment() -> dict[str, Any] | None:
        return next((seg for seg in collector.api("/api/segments?service=Downstream")
                     if any(s["operationName"].startswith("Ray/Serve/batch/") for s in seg["spans"])), None)

    from tests.protocol.procs import wait_for

    seg = wait_for(batch_segment, what="the batch's segment")
    batch_span = next(s for s in seg["spans"] if s["operationName"] == "Ray/Serve/batch/Downstream.batched")
    assert {t["key"]: t["value"] for t in batch_span["tags"]}["ray.batch_size"] == "3"
    assert sorted((r["refType"], r["parentTraceSegmentId"], r["parentSpanId"]) for r in batch_span["refs"]) == sorted(
        ("CrossThread", entry_seg["segmentId"], entry["spanId"]) for entry_seg, entry in entries.values())
    assert set(seg["globalTraceIds"]) == traces and seg["traceId"] in traces
    (task_call,) = [s for s in seg["spans"] if s["operationName"] == "Ray/Task/total"]
    assert task_call["spanType"] == "Exit" and task_call["parentSpanId"] == batch_span["spanId"]
    task_trace = collector.trace(seg["traceId"], 4)
    (task_entry,) = [s for _, s in spans(task_trace)
                     if s["spanType"] == "Entry" and s["operationName"] == "Ray/Task/total"]
    assert task_entry["refs"][0]["parentTraceSegmentId"] == seg["segmentId"]


def test_nothing_the_oap_would_drop(run: tuple[Collector, dict[str, Any]]) -> None:
    collector, _ = run
    collector.settled()
    assert collector.api("/api/drops") == []


def linked_call(trace: dict[str, Any], caller: str, callee: str, op: str) -> tuple[dict, dict]:
    """The caller's exit span ``op`` and the callee's entry span it is the parent of."""
    (entry,) = [s for seg, s in spans(trace) if seg["service"] == callee and s["spanType"] == "Entry"
                and s["operationName"] == op]
    seg, exit_span = parent_of(trace, entry)
    assert (seg["service"], exit_span["spanType"], exit_span["operationName"]) == (caller, "Exit", op)
    return exit_span, entry


def test_untraced_http_request_starts_its_trace_at_the_ingress(run: tuple[Collector, dict[str, Any]]) -> None:
    collector, results = run
    assert results["untraced"]["body"] == {"text": "hello http", "parts": [0, 1, 2]}
    roots = [seg for seg in collector.api("/api/segments?service=Upstream")
             if seg["spans"][-1]["spanType"] == "Entry" and not seg["spans"][-1]["refs"]
             and seg["spans"][-1]["operationName"].endswith("/chat")]
    assert len(roots) == 1, [s["spans"][-1] for s in collector.api("/api/segments?service=Upstream")]
    trace = collector.trace(roots[0]["traceId"], 3)
    for method in ("hello", "stream"):
        linked_call(trace, "Upstream", "Downstream", f"Ray/Serve/default/Downstream.{method}")


def test_an_ignored_http_method_is_not_traced_at_the_ingress(run: tuple[Collector, dict[str, Any]]) -> None:
    collector, results = run
    assert results["ignored"]["status"] == 405  # it reached the ingress replica (FastAPI has no OPTIONS route)
    ops = [s["operationName"] for seg in collector.api("/api/segments?service=Upstream") for s in seg["spans"]]
    assert ops and not [op for op in ops if op.startswith("OPTIONS")], ops


def test_http_operation_name_is_the_matched_route_template(run: tuple[Collector, dict[str, Any]]) -> None:
    collector, results = run
    assert results["item"]["body"] == {"item": 7}
    trace = collector.trace(results["item"]["trace"], 2)
    (entry,) = [s for seg, s in spans(trace) if seg["service"] == "Upstream" and s["spanType"] == "Entry"]
    assert entry["operationName"] == "GET:/hello-ray/items/{item_id}"


@pytest.mark.skipif(not serve_has("DeploymentHandle", "dispatch"), reason="no DeploymentHandle.dispatch")
def test_dispatch_to_a_chosen_replica(run: tuple[Collector, dict[str, Any]]) -> None:
    collector, results = run
    assert results["dispatch"]["body"] == "hello dispatched"
    trace = collector.trace(results["dispatch"]["trace"], 3)
    linked_call(trace, "Upstream", "Downstream", "Ray/Serve/default/Downstream.hello")


@pytest.mark.skipif(not serve_has("DeploymentHandle", "broadcast"), reason="no DeploymentHandle.broadcast")
def test_broadcast_reaches_every_replica_under_one_exit_span(run: tuple[Collector, dict[str, Any]]) -> None:
    collector, results = run
    assert results["broadcast"]["body"] == ["hello everyone"]  # one replica
    trace = collector.trace(results["broadcast"]["trace"], 3)
    exit_span, _ = linked_call(trace, "Upstream", "Downstream", "Ray/Serve/default/Downstream.hello")
    tags = {t["key"]: t["value"] for t in exit_span["tags"]}
    assert tags["ray.broadcast"] == "true" and tags["ray.method"] == "hello"


@pytest.mark.skipif(not serve_has("Replica", "get_asgi_tracing_context"), reason="no direct ingress")
def test_direct_ingress_continues_the_http_header() -> None:
    # RAY_SERVE_ENABLE_DIRECT_INGRESS=1: the ingress replica serves HTTP itself, no proxy in between
    collector = Collector()
    try:
        results = run_driver(DRIVER, collector.grpc, str(free_port()), "direct")
        assert results["http"]["body"] == {"text": "hello http", "parts": [0, 1, 2]}
        trace = collector.trace(results["http"]["trace"], 4)
        (ingress,) = [s for seg, s in spans(trace) if seg["service"] == "Upstream" and s["spanType"] == "Entry"]
        seg, parent = parent_of(trace, ingress)
        assert (seg["service"], parent["operationName"]) == ("ray-driver", "/hello-ray/chat")
        linked_call(trace, "Upstream", "Downstream", "Ray/Serve/default/Downstream.hello")
        collector.settled()
        assert collector.api("/api/drops") == []
    finally:
        collector.stop()
