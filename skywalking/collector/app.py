"""The collector's state and behaviour, independent of gRPC and HTTP: one lock around everything.

``grpc_server`` and ``http_api`` translate requests into calls on ``Collector``; a ticker thread
finishes pending registrations, re-checks buffered segments and prints quiet traces.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from skywalking.collector import normalize, rules
from skywalking.collector.inventory import DOMAIN_ENDPOINT, Inventory, instance_name, instance_properties
from skywalking.collector.store import Pending, Store
from skywalking.collector.telemetry import (
    TelemetryStore,
    log_doc,
    log_line,
    meter_doc,
    meter_line,
    snapshot_doc,
    snapshot_line,
)
from skywalking.collector.tree import render_trace
from skywalking.protocol_v8.gen.language_agent import Meter_pb2, Tracing_pb2
from skywalking.protocol_v8.gen.logging import Logging_pb2
from skywalking.protocol_v8.gen.profile import Profile_pb2

log = logging.getLogger("skywalking.collector")

RESET_COMMAND = "ServiceMetadataReset"
SERVER = 1  # DetectPoint.server
V6_VERDICT = "OAP 6.6.0 would drop"
V3_VERDICT = "invalid v3 segment"


class UnknownServiceError(Exception):
    """OAP 6.6.0 hits an NPE here; the RPC fails with status UNKNOWN (docs/protocol/sw6.md §5.3, §5.6)."""


def _wall_ms() -> int:
    return int(time.time() * 1000)


def _stdout(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


class Collector:
    def __init__(self, register_delay: float = 0.3, print_delay: float = 1.0, retry_grace: float = 6.0,
                 max_segments: int = 100_000, printer: Callable[[str], None] | None = _stdout,
                 clock: Callable[[], float] = time.monotonic, sink: bool = False) -> None:
        self.sink = sink  # count segments only: no parsing, rules or storage (for throughput benchmarks)
        self.print_delay = print_delay
        self.retry_grace = retry_grace
        self._printer = printer
        self._print_lock = threading.Lock()
        self._clock = clock
        self._lock = threading.RLock()
        self.inventory = Inventory(register_delay)
        self.store = Store(max_segments)
        self.telemetry = TelemetryStore()
        self.counters: Counter[str] = Counter()
        self.registrations: Counter[str] = Counter()
        self.metadata: Counter[str] = Counter()  # "key=value" of call metadata -> calls
        self._next_pending = 0
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    # ------------------------------------------------------------ plumbing

    def _now(self) -> float:
        now = self._clock()
        self.inventory.promote(now)
        return now

    def _emit(self, lines: list[str]) -> None:
        if self._printer is None or not lines:
            return
        with self._print_lock:
            for line in lines:
                try:
                    self._printer(line)
                except Exception:  # a closed stdout must not kill a server thread
                    log.exception("cannot print")

    def start_ticker(self, interval: float = 0.1) -> None:
        def run() -> None:
            while not self._stop.wait(interval):
                try:
                    self.tick()
                except Exception:
                    log.exception("collector tick failed")

        self._ticker = threading.Thread(target=run, name="collector-ticker", daemon=True)
        self._ticker.start()

    def stop(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=2)

    # ------------------------------------------------------------ v6 registration (docs/protocol/sw6.md §5)

    def register_services(self, names: list[str]) -> list[tuple[str, int]]:
        """(name, id) for every service whose creation has completed; the others are left out."""
        with self._lock:
            now = self._now()
            self.registrations["services"] += len(names)
            out = []
            for name in names:
                sid = self.inventory.services.get_or_create(name, now, name=name, lastHeartbeat=None)
                if sid:
                    out.append((name, sid))
            return out

    def register_instances(self, items: list[tuple[int, str, int, list[tuple[str, str]]]]) -> list[tuple[str, int]]:
        """Items are (serviceId, instanceUUID, time, properties); returns (uuid, id) for created instances."""
        with self._lock:
            now = self._now()
            self.registrations["instances"] += len(items)
            out = []
            for service_id, instance_uuid, reg_time, pairs in items:
                service = self.inventory.service_name(service_id)
                if service is None:
                    raise UnknownServiceError(f"unknown serviceId {service_id} in doServiceInstanceRegister")
                props = instance_properties(pairs)
                iid = self.inventory.instances.get_or_create(
                    (service_id, instance_uuid), now, serviceId=service_id, uuid=instance_uuid,
                    name=instance_name(service, props), properties=props, registerTime=reg_time or None,
                    lastHeartbeat=None)
                if iid:
                    out.append((instance_uuid, iid))
            return out

    def register_endpoints(self, items: list[tuple[int, str, int]]) -> list[tuple[int, str, int, int]]:
        """Items are (serviceId, name, from); returns (serviceId, name, id, from) for created server endpoints."""
        with self._lock:
            now = self._now()
            self.registrations["endpoints"] += len(items)
            out = []
            for service_id, name, detect_point in items:
                if detect_point != SERVER:
                    log.warning("Unexpected endpoint register, endpoint isn't detected from server side: "
                                "serviceId=%s name=%r from=%s (skipped, docs/protocol/sw6.md §5.4)", service_id, name,
                                detect_point)
                    continue
                if self.inventory.service_name(service_id) is None:
                    log.warning("endpoint %r registered under unknown serviceId %s", name, service_id)
                eid = self._endpoint(service_id, name, now, "register")
                if eid:
                    out.append((service_id, name, eid, detect_point))
            return out

    def _endpoint(self, service_id: int, name: str, now: float, source: str) -> int:
        return self.inventory.endpoints.get_or_create((service_id, name), now, serviceId=service_id, name=name,
                                                      detectPoint="server", source=source)

    def _address(self, address: str, now: float, source: str) -> int:
        return self.inventory.addresses.get_or_create(address, now, address=address, mappedServiceId=None,
                                                      source=source)

    def register_addresses(self, addresses: list[str]) -> list[tuple[str, int]]:
        with self._lock:
            now = self._now()
            self.registrations["addresses"] += len(addresses)
            out = []
            for address in addresses:
                aid = self._address(address, now, "register")
                if aid:
                    out.append((address, aid))
            return out

    def register_address_mappings(self, items: list[tuple[int, int, str, int]]) -> None:
        """Items are (serviceId, serviceInstanceId, networkAddress, networkAddressId); 6.6.0 quirks of
        docs/protocol/sw6.md §5.6."""
        with self._lock:
            now = self._now()
            self.registrations["serviceAddressMappings"] += len(items)
            for service_id, instance_id, address, address_id in items:
                if service_id == 0:
                    if instance_id == 0:
                        raise UnknownServiceError("serviceId 0 and serviceInstanceId 0: OAP 6.6.0 looks up "
                                                  "instance 0 and fails (docs/protocol/sw6.md §5.6)")
                    log.warning("mapping with serviceId 0 skipped (OAP 6.6.0's inverted check, "
                                "docs/protocol/sw6.md §5.6)")
                    continue
                if address_id == 0 and address:
                    address_id = self._address(address, now, "mapping")
                entry = self.inventory.addresses.get(address_id) if address_id else None
                if entry is None:
                    log.info("mapping of address %r / id %s skipped: address not created (yet)", address, address_id)
                    continue
                if self.inventory.service_name(service_id) is None:
                    log.warning("mapping address %r to unknown serviceId %s", entry.attrs["address"], service_id)
                entry.attrs["mappedServiceId"] = service_id

    def ping(self, instance_id: int, ping_time: int, instance_uuid: str) -> list[tuple[str, list[tuple[str, str]]]]:
        """Commands for a doPing: ServiceMetadataReset for an unknown instance id (docs/protocol/sw6.md §6.2)."""
        with self._lock:
            self._now()
            self.counters["pings"] += 1
            entry = self.inventory.instance(instance_id)
            if entry is None:
                self.counters["resetsSent"] += 1
                serial = str(uuid.uuid4())
                log.info("ping from unknown instance id %s (uuid %r): sending %s %s", instance_id, instance_uuid,
                         RESET_COMMAND, serial)
                return [(RESET_COMMAND, [("SerialNumber", serial)])]
            now_ms = _wall_ms()
            entry.attrs["lastHeartbeat"] = now_ms
            entry.attrs["lastPingTime"] = ping_time
            service = self.inventory.services.get(entry.attrs["serviceId"])
            if service is not None:
                service.attrs["lastHeartbeat"] = now_ms
            return []

    # ------------------------------------------------------------ v6 segments (docs/protocol/sw6.md §8)

    def saw_metadata(self, metadata: Any) -> None:
        """Count the values of the metadata keys agents send on every call."""
        with self._lock:
            for item in metadata:
                if item.key in ("authentication", "agent-version"):
                    self.metadata[f"{item.key}={item.value}"] += 1

    def _count_only(self, protocol: str) -> None:
        with self._lock:
            for key in ("segmentsReceived", f"segmentsReceived.{protocol}"):
                self.counters[key] += 1

    def stream_opened(self, protocol: str) -> None:
        with self._lock:
            self.counters["streams"] += 1
            self.counters[f"streams.{protocol}"] += 1

    def receive_v6(self, raw: bytes) -> None:
        if self.sink:
            self._count_only("v6")
            return
        lines: list[str] = []
        with self._lock:
            now = self._now()
            self.counters["segmentsReceived"] += 1
            self.counters["segmentsReceived.v6"] += 1
            received_ms = _wall_ms()
            upstream, segment, reasons = rules.parse_v6(raw)
            if reasons:
                self._drop("v6", V6_VERDICT, reasons, normalize.summary_v6(upstream, segment, self.inventory), lines)
            else:
                self._judge_v6(upstream, segment, now, received_ms, None, lines)
        self._emit(lines)

    def _exchange(self, segment: Any, now: float) -> None:
        """Create what OAP creates on receipt: Entry-span endpoints and peer / ref addresses
        (docs/protocol/sw6.md §5.4, §5.5)."""
        inv = self.inventory
        if inv.instance(segment.serviceInstanceId) is None or inv.service_name(segment.serviceId) is None:
            return
        for span in segment.spans:
            if span.peerId == 0 and span.peer:
                self._address(span.peer, now, "segment")
            if span.spanType == rules.ENTRY and span.operationNameId == 0:
                self._endpoint(segment.serviceId, span.operationName or DOMAIN_ENDPOINT, now, "segment")
            for ref in span.refs:
                if ref.networkAddressId == 0 and ref.networkAddress:
                    self._address(ref.networkAddress, now, "segment")

    def _judge_v6(self, upstream: Any, segment: Any, now: float, received_ms: int, pending: Pending | None,
                  lines: list[str]) -> None:
        self._exchange(segment, now)
        ctx = rules.V6Context(upstream, segment, self.inventory, _wall_ms())
        reasons = rules.check_v6(ctx)
        summary = normalize.summary_v6(upstream, segment, self.inventory)
        if not reasons:
            if pending is not None:
                del self.store.pending[pending.key]
                log.info("pending segment %s accepted after %.1f s", summary["segmentId"], now - pending.received_at)
            self._accept(normalize.normalize_v6(upstream, segment, self.inventory, received_ms), now)
            return
        if any(not r.retryable for r in reasons):
            if pending is not None:
                del self.store.pending[pending.key]
            self._drop("v6", V6_VERDICT, reasons, summary, lines)
            return
        if pending is None:
            key = self._next_pending
            self._next_pending += 1
            self.store.pending[key] = Pending(key, upstream, segment, now, received_ms, now + self.retry_grace,
                                              [r.as_dict() for r in reasons], summary)
            lines.append(f"PENDING segment {summary['segmentId']} of service {_service_label(summary)}: "
                         f"{'; '.join(r.text for r in reasons)} (OAP buffers it; re-checking for "
                         f"{self.retry_grace:g} s)")
        elif now >= pending.deadline:
            del self.store.pending[pending.key]
            gave_up = rules.Reason("retry-exhausted", f"still unresolved after {self.retry_grace:g} s of OAP "
                                                      "buffer retries (1 s + 10 x 0.5 s): discarded "
                                                      "(docs/protocol/sw6.md §8.2)")
            self._drop("v6", V6_VERDICT, [*reasons, gave_up], summary, lines)
        else:
            pending.reasons = [r.as_dict() for r in reasons]
            pending.summary = summary

    def _accept(self, doc: dict[str, Any], now: float) -> None:
        evicted_before = self.store.evicted
        self.store.add_segment(doc, now)
        self.counters["segmentsAccepted"] += 1
        self.counters[f"segmentsAccepted.{doc['protocol']}"] += 1
        if self.store.evicted != evicted_before:
            log.debug("segment store full: evicted %d", self.store.evicted - evicted_before)

    def _drop(self, protocol: str, verdict: str, reasons: list[rules.Reason], summary: dict[str, Any],
              lines: list[str]) -> None:
        self.counters["segmentsDropped"] += 1
        self.counters[f"segmentsDropped.{protocol}"] += 1
        for reason in reasons:
            self.counters[f"dropRule.{reason.rule}"] += 1
        texts = [r.text for r in reasons]
        self.store.add_drop({"time": _wall_ms(), "protocol": protocol, "verdict": verdict, "reasons": texts,
                             "rules": sorted({r.rule for r in reasons}), "details": [r.as_dict() for r in reasons],
                             "segment": summary})
        line = (f"DROP ({verdict}) segment {summary.get('segmentId') or '?'} of service {_service_label(summary)}: "
                + "; ".join(texts))
        log.info("%s", line)
        lines.append(line)

    # ------------------------------------------------------------ v3 (OAP 8+, docs/protocol/sw6.md §9.3)

    def v3_keep_alive(self, service: str, instance: str) -> None:
        with self._lock:
            self.counters["v3KeepAlives"] += 1
            rec = self.inventory.v3_instances.setdefault((service, instance), {"properties": {}})
            rec["lastHeartbeat"] = _wall_ms()

    def v3_properties(self, service: str, instance: str, pairs: list[tuple[str, str]]) -> None:
        with self._lock:
            self.counters["v3InstanceProperties"] += 1
            rec = self.inventory.v3_instances.setdefault((service, instance), {"properties": {}})
            rec["properties"] = dict(pairs)
            rec.setdefault("lastHeartbeat", None)
            rec["propertiesReportedAt"] = _wall_ms()

    def receive_v3(self, raw: bytes) -> None:
        if self.sink:
            self._count_only("v3")
            return
        lines: list[str] = []
        with self._lock:
            now = self._now()
            self.counters["segmentsReceived"] += 1
            self.counters["segmentsReceived.v3"] += 1
            segment = Tracing_pb2.SegmentObject()
            try:
                segment.ParseFromString(raw)
            except Exception as exc:
                reason = rules.Reason("unparseable", f"SegmentObject bytes not parseable: {exc}")
                self._drop("v3", V3_VERDICT, [reason], {"protocol": "v3", "segmentId": None, "service": None}, lines)
            else:
                reasons = rules.check_v3(segment)
                if reasons:
                    self._drop("v3", V3_VERDICT, reasons, normalize.summary_v3(segment), lines)
                else:
                    self._accept(normalize.normalize_v3(segment, _wall_ms()), now)
        self._emit(lines)

    # ------------------------------------------------------------ v3 logs and meters (docs/protocol/v3-non-trace.md)

    def rest_request(self, path: str) -> None:
        with self._lock:
            self.counters["restRequests"] += 1
            self.counters[f"rest.{path}"] += 1

    def receive_logs(self, raws: list[bytes]) -> None:
        """One ``LogReportService.collect`` stream's messages."""
        self._receive(raws, Logging_pb2.LogData, log_doc, "logs", self.telemetry.logs,
                      lambda docs: [log_line(d) for d in docs])

    def receive_meters(self, raws: list[bytes], batch: bool = False) -> None:
        """One ``MeterReportService.collect`` stream's messages (``collectBatch``: ``MeterDataCollection``s)."""
        if batch:
            raws = [m.SerializeToString() for raw in raws
                    for m in Meter_pb2.MeterDataCollection.FromString(raw).meterData]
        self._receive(raws, Meter_pb2.MeterData, meter_doc, "meterValues", self.telemetry.meters,
                      lambda docs: [meter_line(docs)] if docs else [])

    def _receive(self, raws: list[bytes], message: Any, to_doc: Callable[[Any], dict[str, Any]], what: str,
                 into: Any, lines_of: Callable[[list[dict[str, Any]]], list[str]]) -> None:
        docs = []
        with self._lock:
            for raw in raws:
                self.counters[f"{what}Received"] += 1
                try:
                    docs.append(to_doc(message.FromString(raw)))
                except Exception as exc:
                    self.counters[f"{what}Unparseable"] += 1
                    log.warning("%s: a message is not parseable: %s", what, exc)
            into.extend(docs)
        if self._printer is not None:
            self._emit(lines_of(docs))

    # ------------------------------------------------------------ v3 profiling (docs/protocol/v3-non-trace.md §4)

    def create_profile_task(self, spec: dict[str, Any]) -> dict[str, Any]:
        """A profile task for ``spec["service"]``'s ``spec["endpoint"]``, handed to that service's agents on their
        next poll. ValueError for a spec without them."""
        if not spec.get("service") or not spec.get("endpoint"):
            raise ValueError("a profile task needs a service and an endpoint")
        now = _wall_ms()
        with self._lock:
            self.counters["profileTasks"] += 1
            task = {"taskId": uuid.uuid4().hex, "serialNumber": uuid.uuid4().hex, "service": str(spec["service"]),
                    "endpoint": str(spec["endpoint"]), "duration": int(spec.get("duration", 1)),
                    "minDurationThreshold": int(spec.get("minDurationThreshold", 0)),
                    "dumpPeriod": int(spec.get("dumpPeriod", 10)),
                    "maxSamplingCount": int(spec.get("maxSamplingCount", 5)),
                    "startTime": int(spec.get("startTime", now)), "createTime": now, "finishedBy": []}
            self.telemetry.tasks.append(task)
        self._emit([f"[profile] task {task['taskId']} created: {task['service']} endpoint {task['endpoint']!r}"])
        return task

    def profile_commands(self, service: str, instance: str, last_command_ms: int) -> list[list[tuple[str, str]]]:
        with self._lock:
            self.counters["profilePolls"] += 1
            return self.telemetry.task_commands(service, last_command_ms, _wall_ms())

    def profile_task_finished(self, service: str, instance: str, task_id: str) -> None:
        with self._lock:
            for task in self.telemetry.tasks:
                if task["taskId"] == task_id:
                    task["finishedBy"].append(f"{service}/{instance}")
        self._emit([f"[profile] task {task_id} finished by {service}/{instance}"])

    def receive_snapshots(self, raws: list[bytes]) -> None:
        self._receive(raws, Profile_pb2.ThreadSnapshot, snapshot_doc, "snapshots", self.telemetry.snapshots,
                      lambda docs: [snapshot_line(docs)] if docs else [])

    def profile_tasks(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(t) for t in self.telemetry.tasks]

    def snapshots(self, task: str | None, segment: str | None) -> list[dict[str, Any]]:
        with self._lock:
            return [d for d in self.telemetry.snapshots if (task is None or d["taskId"] == task)
                    and (segment is None or d["traceSegmentId"] == segment)]

    def logs(self, service: str | None, trace: str | None) -> list[dict[str, Any]]:
        with self._lock:
            return self.telemetry.query_logs(service, trace)

    def meters(self, service: str | None, name: str | None) -> list[dict[str, Any]]:
        with self._lock:
            return self.telemetry.query_meters(service, name)

    # ------------------------------------------------------------ periodic work

    def tick(self) -> None:
        """Finish registrations, re-check buffered segments, print traces that went quiet."""
        lines: list[str] = []
        with self._lock:
            now = self._now()
            for pending in list(self.store.pending.values()):
                self._judge_v6(pending.upstream, pending.segment, now, pending.received_ms, pending, lines)
            if self._printer is not None:
                for trace_id, segments, reprint in self.store.due_traces(now, self.print_delay):
                    header, _, body = render_trace(trace_id, segments).partition("\n")
                    lines.append(header + ("  [updated]" if reprint else "") + ("\n" + body if body else ""))
        self._emit(lines)

    # ------------------------------------------------------------ admin and snapshots (HTTP API)

    def reset_inventory(self) -> None:
        with self._lock:
            self.inventory.reset()
            self.counters["inventoryResets"] += 1
            log.info("inventory reset: every agent will get %s on its next ping", RESET_COMMAND)

    def clear_segments(self) -> None:
        with self._lock:
            self.store.clear()
            self.telemetry.clear()
            log.info("stored segments, drops, logs and meter values cleared")

    def segments(self, service: str | None, trace: str | None) -> list[dict[str, Any]]:
        with self._lock:
            return self.store.query(service, trace)

    def traces(self) -> list[dict[str, Any]]:
        with self._lock:
            return self.store.trace_summaries()

    def trace(self, trace_id: str) -> dict[str, Any] | None:
        with self._lock:
            segments = self.store.trace_segments(trace_id)
            if not segments:
                return None
            return {"traceId": trace_id, "segments": segments, "tree": render_trace(trace_id, segments)}

    def drops(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.store.drops)

    def pending(self) -> list[dict[str, Any]]:
        with self._lock:
            now = self._now()
            return [{"segment": p.summary, "reasons": [r["text"] for r in p.reasons],
                     "rules": sorted({r["rule"] for r in p.reasons}), "receivedAt": p.received_ms,
                     "secondsLeft": round(max(0.0, p.deadline - now), 3)} for p in self.store.pending.values()]

    def inventory_snapshot(self) -> dict[str, Any]:
        with self._lock:
            self._now()
            return self.inventory.snapshot()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            c = self.counters
            return {
                "segmentsReceived": c["segmentsReceived"],
                "segmentsAccepted": c["segmentsAccepted"],
                "segmentsDropped": c["segmentsDropped"],
                "segmentsPending": len(self.store.pending),
                "segmentsStored": len(self.store.segments),
                "segmentsEvicted": self.store.evicted,
                "traces": len(self.store.traces),
                "byProtocol": {p: {"received": c[f"segmentsReceived.{p}"], "accepted": c[f"segmentsAccepted.{p}"],
                                   "dropped": c[f"segmentsDropped.{p}"], "streams": c[f"streams.{p}"]}
                               for p in ("v6", "v3")},
                "dropRules": {k.split(".", 1)[1]: v for k, v in sorted(c.items()) if k.startswith("dropRule.")},
                "streams": c["streams"],
                "pings": c["pings"],
                "resetsSent": c["resetsSent"],
                "inventoryResets": c["inventoryResets"],
                "registrations": {k: self.registrations[k] for k in
                                  ("services", "instances", "endpoints", "addresses", "serviceAddressMappings")},
                "restRequests": {k.split(".", 1)[1]: v for k, v in sorted(c.items()) if k.startswith("rest.")},
                "logsReceived": c["logsReceived"],
                "meterValuesReceived": c["meterValuesReceived"],
                "snapshotsReceived": c["snapshotsReceived"],
                "profileTasks": c["profileTasks"],
                "profilePolls": c["profilePolls"],
                "telemetryUnparseable": c["logsUnparseable"] + c["meterValuesUnparseable"] + c["snapshotsUnparseable"],
                "v3KeepAlives": c["v3KeepAlives"],
                "v3InstanceProperties": c["v3InstanceProperties"],
                "metadata": dict(self.metadata),
            }


def _service_label(summary: dict[str, Any]) -> str:
    if summary.get("service"):
        return str(summary["service"])
    if summary.get("serviceId") is not None:
        return f"#{summary['serviceId']} (unknown)"
    return "?"
