"""The OAP 8+ session of the gRPC reporter: instance properties and keep-alive (``ManagementService``), the v3
segment encoder, ``/skywalking.v3.TraceSegmentReportService/collect``. Segments name their service and instance
by name: there are no ids to ask for."""

from __future__ import annotations

import os
import platform
import socket
from typing import TYPE_CHECKING, Any

from skywalking import config
from skywalking.protocol_v8 import encode as v8_encode
from skywalking.protocol_v8.gen.common.Common_pb2 import Commands, KeyStringValuePair
from skywalking.protocol_v8.gen.management.Management_pb2 import InstancePingPkg, InstanceProperties
from skywalking.reporter.session import UNARY_TIMEOUT, Session, Unary, metadata

if TYPE_CHECKING:
    import grpc

    from skywalking.trace.segment import Segment

MANAGEMENT = "/skywalking.v3.ManagementService/"


def instance_properties() -> InstanceProperties:
    """This process's properties as ``reportInstanceProperties`` sends them."""
    props = {"language": "python", "OS Name": platform.system(), "hostname": socket.gethostname(),
             "Process No.": str(os.getpid()), "python_implementation": platform.python_implementation(),
             "python_version": platform.python_version(), **config.instance_properties()}
    if config.agent_namespace:
        props["namespace"] = config.agent_namespace
    return InstanceProperties(service=config.SERVICE_NAME, serviceInstance=config.agent_instance_name,
                              properties=[KeyStringValuePair(key=k, value=v) for k, v in props.items()])


def ping() -> InstancePingPkg:
    """This process's keep-alive message."""
    return InstancePingPkg(service=config.SERVICE_NAME, serviceInstance=config.agent_instance_name)


class V8Session(Session):
    """Every ``HEARTBEAT_PERIOD`` a keep-alive; the properties on every new channel and every
    ``agent_collector_properties_report_period_factor`` beats."""

    collect_path = "/skywalking.v3.TraceSegmentReportService/collect"
    response = Commands

    def __init__(self) -> None:
        self._ping = ping()
        self._props = instance_properties()
        self._beats = 0
        self._unary = Unary((MANAGEMENT + "reportInstanceProperties", InstanceProperties, Commands),
                            (MANAGEMENT + "keepAlive", InstancePingPkg, Commands))

    def manage(self, channel: grpc.Channel, generation: int) -> float:
        if self._unary.generation != generation:
            self._beats = 0  # a new backend hears the properties first
        report_properties, keep_alive = self._unary.calls(channel, generation)
        if self._beats % max(1, config.agent_collector_properties_report_period_factor) == 0:
            report_properties(self._props, timeout=UNARY_TIMEOUT, metadata=metadata())
        keep_alive(self._ping, timeout=UNARY_TIMEOUT, metadata=metadata())
        self._beats += 1
        return config.HEARTBEAT_PERIOD

    def encode(self, segment: Segment) -> bytes:
        return v8_encode.encode(segment, segment.identity[0], segment.identity[1]).SerializeToString()

    def stats(self) -> dict[str, Any]:
        return {"instance_id": 0}  # no ids under v8; the key stays so that stats read alike
