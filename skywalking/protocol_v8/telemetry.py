"""Pure functions from the agent's non-trace data to v3 messages (OAP 8+): ``LogData``, ``MeterData`` and the
profiler's ``ThreadSnapshot`` (the transport serializes them). Wire facts: docs/protocol/v3-non-trace.md."""

from __future__ import annotations

from typing import TYPE_CHECKING

from skywalking.meter.meter import MeterType
from skywalking.protocol_v8.gen.language_agent.Meter_pb2 import (
    Label,
    MeterBucketValue,
    MeterData,
    MeterHistogram,
    MeterSingleValue,
)
from skywalking.protocol_v8.gen.logging.Logging_pb2 import LogData
from skywalking.protocol_v8.gen.profile.Profile_pb2 import ThreadSnapshot, ThreadStack

if TYPE_CHECKING:
    from skywalking.log.entry import LogEntry
    from skywalking.meter.meter_service import MeterValue
    from skywalking.profile.profiler import Snapshot


def encode_log(entry: LogEntry) -> LogData:
    data = LogData(timestamp=entry.timestamp_ms, service=entry.service, serviceInstance=entry.instance,
                   endpoint=entry.endpoint or "")
    body = data.body  # sub-messages filled in place: one passed to a constructor would be copied
    body.type = "text"
    body.text.text = entry.text
    add = data.tags.data.add
    for key, value in entry.tags:
        add(key=key, value=value)
    if entry.trace is not None:
        tc = data.traceContext
        tc.traceId, tc.traceSegmentId, tc.spanId = entry.trace
    return data


def encode_meter(value: MeterValue, service: str, instance: str) -> MeterData:
    mid = value.meter_id
    labels = [Label(name=t.key, value=t.value) for t in mid.tags]
    if mid.type is MeterType.HISTOGRAM:
        buckets = [MeterBucketValue(bucket=b, count=c) for b, c in value.value]
        data = MeterData(histogram=MeterHistogram(name=mid.name, labels=labels, values=buckets))
    else:
        data = MeterData(singleValue=MeterSingleValue(name=mid.name, labels=labels, value=float(value.value)))
    data.service, data.serviceInstance, data.timestamp = service, instance, value.timestamp_ms
    return data


def encode_snapshot(snapshot: Snapshot) -> ThreadSnapshot:
    return ThreadSnapshot(taskId=snapshot.task_id, traceSegmentId=snapshot.segment_id, time=snapshot.time_ms,
                          sequence=snapshot.sequence, stack=ThreadStack(codeSignatures=snapshot.stack))
