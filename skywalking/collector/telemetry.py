"""Logs and meter values the v3 services received (``LogReportService``, ``MeterReportService``), kept in bounded
deques, as JSON-ready dicts, and the one-line form the collector prints for each."""

from __future__ import annotations

from collections import deque
from typing import Any

from skywalking.protocol_v8.gen.language_agent.Meter_pb2 import MeterData
from skywalking.protocol_v8.gen.logging.Logging_pb2 import LogData
from skywalking.protocol_v8.gen.profile.Profile_pb2 import ThreadSnapshot

MAX_LOGS = 10_000
MAX_METER_VALUES = 50_000
MAX_SNAPSHOTS = 20_000
TASK_ARGS = (("SerialNumber", "serialNumber"), ("EndpointName", "endpoint"), ("TaskId", "taskId"),
             ("Duration", "duration"), ("MinDurationThreshold", "minDurationThreshold"), ("DumpPeriod", "dumpPeriod"),
             ("MaxSamplingCount", "maxSamplingCount"), ("StartTime", "startTime"), ("CreateTime", "createTime"))


def log_doc(data: LogData) -> dict[str, Any]:
    body = data.body
    content = body.WhichOneof("content")  # text, json or yaml: a message whose one field has the same name
    text = getattr(getattr(body, content), content) if content else ""
    doc: dict[str, Any] = {"timestamp": data.timestamp, "service": data.service,
                           "serviceInstance": data.serviceInstance, "endpoint": data.endpoint,
                           "bodyType": body.type or content or "", "body": text,
                           "tags": {t.key: t.value for t in data.tags.data}, "layer": data.layer}
    if data.HasField("traceContext"):
        tc = data.traceContext
        doc["traceContext"] = {"traceId": tc.traceId, "traceSegmentId": tc.traceSegmentId, "spanId": tc.spanId}
    return doc


def meter_doc(data: MeterData) -> dict[str, Any]:
    kind = data.WhichOneof("metric")
    doc: dict[str, Any] = {"service": data.service, "serviceInstance": data.serviceInstance,
                           "timestamp": data.timestamp, "type": kind}
    if kind == "singleValue":
        m = data.singleValue
        doc.update(name=m.name, labels={lb.name: lb.value for lb in m.labels}, value=m.value)
    elif kind == "histogram":
        h = data.histogram
        doc.update(name=h.name, labels={lb.name: lb.value for lb in h.labels},
                   buckets=[{"bucket": "-inf" if b.isNegativeInfinity else b.bucket, "count": b.count}
                            for b in h.values])
    return doc


def snapshot_doc(data: ThreadSnapshot) -> dict[str, Any]:
    return {"taskId": data.taskId, "traceSegmentId": data.traceSegmentId, "time": data.time,
            "sequence": data.sequence, "stack": list(data.stack.codeSignatures)}


def snapshot_line(docs: list[dict[str, Any]]) -> str:
    segments = sorted({d["traceSegmentId"] for d in docs})
    return f"[profile] {len(docs)} thread snapshot(s) of task {docs[0]['taskId']}, segment(s) {', '.join(segments)}"


def log_line(doc: dict[str, Any]) -> str:
    tags = doc["tags"]
    trace = doc.get("traceContext")
    where = f" [trace {trace['traceId']} segment {trace['traceSegmentId']} span {trace['spanId']}]" if trace else ""
    endpoint = f" @{doc['endpoint']}" if doc["endpoint"] else ""
    return (f"[log] {doc['service']}/{doc['serviceInstance']}{endpoint} {tags.get('level', '')} "
            f"{tags.get('logger', '')}: {doc['body']}{where}")


def meter_line(docs: list[dict[str, Any]]) -> str:
    first = docs[0]
    values = []
    for d in docs:
        labels = ",".join(f"{k}={v}" for k, v in d.get("labels", {}).items())
        name = f"{d.get('name', '?')}{{{labels}}}" if labels else d.get("name", "?")
        value = d["value"] if "value" in d else [b["count"] for b in d.get("buckets", [])]
        values.append(f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}")
    return f"[meters] {first['service']}/{first['serviceInstance']}: " + " ".join(values)


class TelemetryStore:
    def __init__(self) -> None:
        self.logs: deque[dict[str, Any]] = deque(maxlen=MAX_LOGS)
        self.meters: deque[dict[str, Any]] = deque(maxlen=MAX_METER_VALUES)
        self.snapshots: deque[dict[str, Any]] = deque(maxlen=MAX_SNAPSHOTS)
        self.tasks: list[dict[str, Any]] = []  # profile tasks, with the instances that finished them

    def query_logs(self, service: str | None, trace: str | None) -> list[dict[str, Any]]:
        return [d for d in self.logs if (service is None or d["service"] == service)
                and (trace is None or d.get("traceContext", {}).get("traceId") == trace)]

    def query_meters(self, service: str | None, name: str | None) -> list[dict[str, Any]]:
        return [d for d in self.meters if (service is None or d["service"] == service)
                and (name is None or d.get("name") == name)]

    def task_commands(self, service: str, last_command_ms: int, now_ms: int) -> list[list[tuple[str, str]]]:
        """The ``ProfileTaskQuery`` arguments of the service's tasks created after ``last_command_ms`` and not
        over at ``now_ms``."""
        return [[(key, str(task[field])) for key, field in TASK_ARGS] for task in self.tasks
                if task["service"] == service and task["createTime"] > last_command_ms
                and task["startTime"] + task["duration"] * 60_000 > now_ms]

    def clear(self) -> None:
        self.logs.clear()
        self.meters.clear()
        self.snapshots.clear()
