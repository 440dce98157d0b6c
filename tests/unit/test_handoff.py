"""The in-cluster handoff (what a Ray call carries): the caller named by identity, decoded defensively, and
sw6 headers that wait for OAP ids instead of making anyone wait."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from skywalking import Component, agent
from skywalking.reporter.memory import FixedIds, MemoryReporter
from skywalking.trace import handoff
from skywalking.trace.carrier import decode_sw6
from skywalking.trace.context import get_context
from skywalking.trace.identity import new_identity
from skywalking.trace.tracer import TRACER

CALLER = new_identity("ray-driver", "ray-driver-node-1", [("process_no", "7"), ("language", "python")])


def call(op: str = "Ray/Task/f") -> tuple:
    """A traced caller making one call: the handoff it sends, as the callee unpickles it."""
    with get_context().new_entry_span("/api"):
        with get_context().new_exit_span(op, "ray", Component.Ray) as exit_span:
            value = handoff.capture(exit_span)
    return pickle.loads(pickle.dumps(value))


def test_callee_ref_names_the_caller_by_identity(reporter: MemoryReporter) -> None:
    value = call()
    caller_seg = reporter.segments[-1]
    with get_context().new_entry_span("Ray/Task/f", carrier=handoff.HandoffCarrier(value)):
        pass
    seg = reporter.segments[-1]
    (ref,) = seg.spans[0].refs
    assert seg.related_traces[0] == caller_seg.related_traces[0]
    assert (ref.ref_type, ref.segment_id, ref.span_id) == ("CrossProcess", caller_seg.segment_id, 1)
    assert ref.parent_instance == ref.entry_instance == caller_seg.identity  # no OAP id needed on either side
    assert (ref.service, ref.client_address, ref.entry_endpoint, ref.endpoint) == (
        caller_seg.identity[0], "ray", "/api", "/api")


def test_entry_instance_travels_over_two_hops(reporter: MemoryReporter) -> None:
    first_hop = call()
    with get_context().new_entry_span("Ray/Task/f", carrier=handoff.HandoffCarrier(first_hop)):
        with get_context().new_exit_span("Ray/Task/g", "ray", Component.Ray) as exit_span:
            second_hop = handoff.capture(exit_span)
    origin = reporter.segments[0].identity
    assert second_hop[7] == origin and second_hop[8] == "#/api"  # entry: where the trace came in


@pytest.mark.parametrize("bad", [
    None, (), ("x",) * 13, (2, *range(12)),
    (1, "1.2.3", (1, 2, 3), "1.2.4", (1, 2, 4), -1, CALLER, CALLER, "-1", "-1", "", "ray", None),
    (1, "1.2.3", (1, 2, 3), "1.2.4", (1, 2, 4), 0, ("svc",), CALLER, "-1", "-1", "", "ray", None),
    (1, "1.2.3", (1, 2, "3"), "1.2.4", (1, 2, 4), 0, CALLER, CALLER, "-1", "-1", "", "ray", None),
    (1, "1.2.3", (1, 2, 3), "1.2.4", (1, 2, 4), 0, CALLER, 0, "-1", "-1", "", "ray", None),
    (1, "1.2.3", (1, 2, 3), "1.2.4", (1, 2, 4), 0, CALLER, CALLER, "", "-1", "", "ray", None),
    (1, "1.2.3", (1, 2, 3), "1.2.4", (1, 2, 4), 0, CALLER, CALLER, "-1", "-1", "", "ray", {"k": 1}),
])
def test_malformed_handoff_starts_a_new_trace(reporter: MemoryReporter, bad: object) -> None:
    with get_context().new_entry_span("Ray/Task/f", carrier=handoff.HandoffCarrier(bad)):
        pass
    seg = reporter.segments[-1]
    assert seg.spans[0].refs == () and seg.related_traces[0] == seg.segment_id


def test_sw6_header_waits_for_ids_and_counts_what_it_skips() -> None:
    """A callee whose trace entered at another process can send an sw6 header to a non-Ray service only once
    the OAP has issued ids for both instances: until then the header is skipped and counted; nothing waits."""
    issued: dict[str, int] = {}

    class Registering(FixedIds):  # the session issues what the test says
        def resolve(self, identity: tuple) -> int:
            return issued.get(identity[2], 0)

    rep = MemoryReporter()
    rep.session = Registering(2)
    agent.start(reporter=rep)
    try:
        value = (*call()[:6], CALLER, CALLER, *call()[8:])  # as if made by another process: CALLER
        skipped = TRACER.sw6_skipped

        def downstream() -> dict[str, str]:
            with get_context().new_entry_span("Ray/Task/f", carrier=handoff.HandoffCarrier(value)):
                with get_context().new_exit_span("/java", "java:8080", Component.Requests) as exit_span:
                    return {item.key: item.val for item in exit_span.inject()}

        assert downstream() == {} and TRACER.sw6_skipped == skipped + 1  # nothing issued yet
        issued[TRACER.identity[2]] = 2
        TRACER.instance_id = 2
        assert downstream() == {} and TRACER.sw6_skipped == skipped + 2  # the entry (caller) still has none
        issued[CALLER[2]] = 5
        header = decode_sw6(downstream()["sw6"])
        assert (header.parent_instance_id, header.entry_instance_id, header.entry_endpoint) == (2, 5, "#/api")
    finally:
        agent.stop()


def test_calls_past_the_cap_are_counted_and_their_callees_not_traced(start_agent: Any) -> None:
    """``agent_trace_max_calls_per_span``: a fan-out records the first N calls; the others are counted, and their
    handoff tells the callee not to trace either (no thousands of orphan traces)."""
    rep = start_agent(agent_trace_max_calls_per_span=2)
    over = TRACER.calls_over_cap
    values = []
    with get_context().new_entry_span("/fan"):
        for _ in range(5):
            with get_context().new_exit_span("Ray/Task/leaf", "ray", Component.Ray) as exit_span:
                values.append(handoff.capture(exit_span))
    (seg,) = rep.segments
    assert [s.op for s in seg.spans].count("Ray/Task/leaf") == 2 and TRACER.calls_over_cap == over + 3
    assert values[2:] == [handoff.SKIP] * 3 and all(len(v) == 13 for v in values[:2])


def test_spans_past_the_segment_limit_are_counted(reporter: MemoryReporter) -> None:
    from skywalking.trace.context import SPAN_LIMIT_PER_SEGMENT

    over = TRACER.spans_over_limit
    with get_context().new_entry_span("/big"):
        for _ in range(SPAN_LIMIT_PER_SEGMENT + 9):
            with get_context().new_exit_span("Ray/Task/leaf", "ray", Component.Ray) as exit_span:
                value = handoff.capture(exit_span)
    (seg,) = reporter.segments
    assert len(seg.spans) == SPAN_LIMIT_PER_SEGMENT and seg.is_size_limited
    assert TRACER.spans_over_limit == over + 10 and value == handoff.SKIP
