"""A trace (normalized segments sharing a traceId) as an indented text tree, one line per span."""

from __future__ import annotations

from typing import Any

Key = tuple[str, int]  # (segmentId, spanId)


def _parent_of(seg: dict[str, Any], span: dict[str, Any], nodes: dict[Key, Any]) -> Key | None:
    """The span this one hangs under: its in-segment parent, else the span its ref points at."""
    own = (seg["segmentId"], span["parentSpanId"])
    if span["parentSpanId"] >= 0 and own in nodes:
        return own
    for ref in span["refs"]:
        target = (ref["parentTraceSegmentId"], ref["parentSpanId"])
        if target in nodes and target != (seg["segmentId"], span["spanId"]):
            return target
    return None


def _line(seg: dict[str, Any], span: dict[str, Any], depth: int) -> str:
    duration = span["endTime"] - span["startTime"]
    parts = [seg.get("service") or "?", str(span["spanType"]), span["operationName"] or "''", f"{duration} ms"]
    if span["isError"]:
        parts.append("ERROR")
    if span["spanType"] == "Exit" and span.get("peer"):
        parts.append(f"-> {span['peer']}")
    return "  " * depth + "  ".join(parts)


def render_trace(trace_id: str, segments: list[dict[str, Any]]) -> str:
    """Header line plus one indented line per span; cross-segment children sit under the span they reference."""
    nodes: dict[Key, tuple[dict[str, Any], dict[str, Any]]] = {}
    for seg in segments:
        for span in seg["spans"]:
            nodes[(seg["segmentId"], span["spanId"])] = (seg, span)
    children: dict[Key, list[Key]] = {}
    roots: list[Key] = []
    for key, (seg, span) in nodes.items():
        parent = _parent_of(seg, span, nodes)
        if parent is None:
            roots.append(key)
        else:
            children.setdefault(parent, []).append(key)

    def order(key: Key) -> tuple[int, str, int]:
        return nodes[key][1]["startTime"], key[0], key[1]

    services = sorted({s.get("service") or "?" for s in segments})
    lines = [f"TRACE {trace_id}  ({len(segments)} segment{'s' if len(segments) != 1 else ''}; "
             f"services: {', '.join(services)})"]
    seen: set[Key] = set()

    def walk(key: Key, depth: int) -> None:
        if key in seen:
            return
        seen.add(key)
        seg, span = nodes[key]
        lines.append(_line(seg, span, depth))
        for child in sorted(children.get(key, ()), key=order):
            walk(child, depth + 1)

    for root in sorted(roots, key=order):
        walk(root, 1)
    for key in sorted(nodes, key=order):  # spans caught in a reference cycle
        walk(key, 1)
    return "\n".join(lines)
