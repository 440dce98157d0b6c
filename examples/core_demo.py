"""Interim demo of the tracing core: a request arriving with a SkyWalking 6.6.0 Java agent's sw6
header is continued, an outgoing call carries a new sw6 header, and the recorded segment is printed.
(The Ray Serve demo with the bundled collector replaces this once the collector and Ray plugin land.)
"""

from __future__ import annotations

from skywalking import Component, Layer, agent, config
from skywalking.reporter.memory import MemoryReporter
from skywalking.trace.carrier import Carrier, decode_sw6
from skywalking.trace.context import get_context
from skywalking.trace.segment import Segment
from skywalking.trace.tags import TagHttpMethod, TagHttpURL

# what a Java 6.6.0 agent sends: trace 3.4.5, parent segment 1.2.3, span 4, instance 1, entry /portal
JAVA_HEADER = "1-My40LjU=-MS4yLjM=-4-1-1-IzEyNy4wLjAuMTo4MDgw-Iy9wb3J0YWw=-MTIz"


def handle(headers: dict[str, str]) -> dict[str, str]:
    carrier = Carrier()
    for item in carrier:
        item.val = headers.get(item.key)
    ctx = get_context()
    with ctx.new_entry_span(op="/api/chat", carrier=carrier) as entry:
        entry.layer, entry.component = Layer.Http, Component.FastAPI
        entry.tag(TagHttpMethod("POST"))
        with ctx.new_exit_span(op="/v1/completions", peer="llm.internal:8000", component=Component.HTTPX) as call:
            call.layer = Layer.Http
            call.tag(TagHttpURL("http://llm.internal:8000/v1/completions"))
            return {item.key: item.val for item in call.inject()}


def render(seg: Segment) -> str:
    children: dict[int, list] = {}
    for span in seg.spans:
        children.setdefault(span.pid, []).append(span)
    lines = [f"trace {seg.related_traces[0]}  segment {seg.segment_id}  service {config.SERVICE_NAME}"]

    def walk(pid: int, depth: int) -> None:
        for span in sorted(children.get(pid, []), key=lambda s: s.sid):
            refs = "".join(f"  <- {r.ref_type} from segment {r.segment_id} span {r.span_id} "
                           f"(instance {r.parent_instance_id}, peer {r.client_address})" for r in span.refs)
            lines.append(f"{'  ' * depth}└ {span.kind.name:5} {span.op}  [{span.component.name}] "
                         f"{span.end_time - span.start_time} ms{'  ERROR' if span.error_occurred else ''}{refs}")
            walk(span.sid, depth + 1)

    walk(-1, 1)
    return "\n".join(lines)


def main() -> None:
    config.init(agent_name="ray-upstream", agent_logging_level="WARNING")
    reporter = MemoryReporter()
    agent.start(reporter=reporter)
    out = handle({"sw6": JAVA_HEADER})
    agent.stop()
    print(render(reporter.segments[0]))
    h = decode_sw6(out["sw6"])
    print(f"\noutgoing sw6: {out['sw6']}\n  trace {h.trace_id}, parent segment {h.segment_id}, span {h.span_id}, "
          f"instance {h.parent_instance_id}, entry {h.entry_endpoint} (instance {h.entry_instance_id}), "
          f"parent endpoint {h.parent_endpoint}, peer {h.peer}")


if __name__ == "__main__":
    main()
