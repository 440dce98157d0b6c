"""gRPC side: the OAP 6.6.0 services (no proto package, docs/protocol/sw6.md §2.1) and the v3
``skywalking.v3`` ones (docs/protocol/sw6.md §9.4).

Handlers are registered with ``grpc.method_handlers_generic_handler`` and explicit (de)serializers
(there are no ``_pb2_grpc`` modules). Segment streams take raw bytes so that a malformed message is
recorded as a drop instead of failing the whole stream.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc

from skywalking.collector.app import Collector, UnknownServiceError
from skywalking.protocol_v6.gen.common import common_pb2 as c6
from skywalking.protocol_v6.gen.register import InstancePing_pb2 as ping6
from skywalking.protocol_v6.gen.register import Register_pb2 as reg6
from skywalking.protocol_v8.gen.common import Common_pb2 as c3
from skywalking.protocol_v8.gen.language_agent import Tracing_pb2 as tr3
from skywalking.protocol_v8.gen.management import Management_pb2 as mgmt3
from skywalking.protocol_v8.gen.profile import Profile_pb2 as prof3

log = logging.getLogger("skywalking.collector.grpc")

MAX_MESSAGE = 64 * 1024 * 1024


def host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _guard(fn: Callable[..., Any], col: Collector) -> Callable[..., Any]:
    """Turn the collector's modelled failures into gRPC statuses; log anything unexpected; note the
    call's metadata (``authentication``, ``agent-version``)."""

    @functools.wraps(fn)
    def wrapper(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            col.saw_metadata(context.invocation_metadata() or ())
            return fn(request, context)
        except UnknownServiceError as exc:
            log.warning("%s: %s -> status UNKNOWN", fn.__name__, exc)
            context.abort(grpc.StatusCode.UNKNOWN, str(exc))
        except Exception as exc:
            log.exception("%s failed", fn.__name__)
            context.abort(grpc.StatusCode.INTERNAL, f"collector error: {exc}")

    return wrapper


def _unary(fn: Callable[..., Any], request_type: Any, col: Collector) -> grpc.RpcMethodHandler[Any, Any]:
    return grpc.unary_unary_rpc_method_handler(_guard(fn, col), request_deserializer=request_type.FromString,
                                               response_serializer=lambda m: m.SerializeToString())


def _stream(fn: Callable[..., Any], col: Collector) -> grpc.RpcMethodHandler[Any, Any]:
    # request_deserializer None: the handler gets raw bytes per message
    return grpc.stream_unary_rpc_method_handler(_guard(fn, col), request_deserializer=None,
                                                response_serializer=lambda m: m.SerializeToString())


def _drain(requests: Iterator[bytes], receive: Callable[[bytes], None], what: str) -> int:
    count = 0
    try:
        for raw in requests:
            count += 1
            try:
                receive(raw)
            except Exception:  # one bad segment must not end the stream
                log.exception("%s: cannot process a segment", what)
    except grpc.RpcError as exc:  # the client cancelled or the deadline passed
        log.info("%s stream ended early after %d segments: %s", what, count, exc)
    return count


def _gather(requests: Iterator[bytes], what: str) -> list[bytes]:
    """A stream's messages, all of them (what arrived before the client gave up is kept)."""
    got: list[bytes] = []
    try:
        got.extend(requests)
    except grpc.RpcError as exc:
        log.info("%s stream ended early after %d messages: %s", what, len(got), exc)
    return got


def v6_handlers(col: Collector) -> list[grpc.GenericRpcHandler[Any, Any]]:
    def doServiceRegister(req: Any, _ctx: Any) -> Any:
        pairs = col.register_services([s.serviceName for s in req.services])
        return reg6.ServiceRegisterMapping(services=[c6.KeyIntValuePair(key=k, value=v) for k, v in pairs])

    def doServiceInstanceRegister(req: Any, _ctx: Any) -> Any:
        items = [(i.serviceId, i.instanceUUID, i.time, [(p.key, p.value) for p in i.properties])
                 for i in req.instances]
        pairs = col.register_instances(items)
        return reg6.ServiceInstanceRegisterMapping(
            serviceInstances=[c6.KeyIntValuePair(key=k, value=v) for k, v in pairs])

    def doEndpointRegister(req: Any, _ctx: Any) -> Any:
        items = [(e.serviceId, e.endpointName, getattr(e, "from")) for e in req.endpoints]
        elements = [reg6.EndpointMappingElement(serviceId=s, endpointName=n, endpointId=i, **{"from": f})
                    for s, n, i, f in col.register_endpoints(items)]
        return reg6.EndpointMapping(elements=elements)

    def doNetworkAddressRegister(req: Any, _ctx: Any) -> Any:
        pairs = col.register_addresses(list(req.addresses))
        return reg6.NetAddressMapping(addressIds=[c6.KeyIntValuePair(key=k, value=v) for k, v in pairs])

    def doServiceAndNetworkAddressMappingRegister(req: Any, _ctx: Any) -> Any:
        col.register_address_mappings([(m.serviceId, m.serviceInstanceId, m.networkAddress, m.networkAddressId)
                                       for m in req.mappings])
        return c6.Commands()

    def doPing(req: Any, _ctx: Any) -> Any:
        commands = col.ping(req.serviceInstanceId, req.time, req.serviceInstanceUUID)
        return c6.Commands(commands=[
            c6.Command(command=name, args=[c6.KeyStringValuePair(key=k, value=v) for k, v in args])
            for name, args in commands])

    def collect(requests: Iterator[bytes], _ctx: Any) -> Any:
        col.stream_opened("v6")
        _drain(requests, col.receive_v6, "v6 collect")
        return c6.Commands()  # OAP answers one empty Commands when the stream completes (docs/protocol/sw6.md §2.1)

    register = grpc.method_handlers_generic_handler("Register", {
        "doServiceRegister": _unary(doServiceRegister, reg6.Services, col),
        "doServiceInstanceRegister": _unary(doServiceInstanceRegister, reg6.ServiceInstances, col),
        "doEndpointRegister": _unary(doEndpointRegister, reg6.Endpoints, col),
        "doNetworkAddressRegister": _unary(doNetworkAddressRegister, reg6.NetAddresses, col),
        "doServiceAndNetworkAddressMappingRegister": _unary(doServiceAndNetworkAddressMappingRegister,
                                                            reg6.ServiceAndNetworkAddressMappings, col),
    })
    ping = grpc.method_handlers_generic_handler("ServiceInstancePing", {
        "doPing": _unary(doPing, ping6.ServiceInstancePingPkg, col)})
    trace = grpc.method_handlers_generic_handler("TraceSegmentReportService", {"collect": _stream(collect, col)})
    return [register, ping, trace]


def v3_handlers(col: Collector) -> list[grpc.GenericRpcHandler[Any, Any]]:
    def collect(requests: Iterator[bytes], _ctx: Any) -> Any:
        col.stream_opened("v3")
        _drain(requests, col.receive_v3, "v3 collect")
        return c3.Commands()

    def collectInSync(req: Any, _ctx: Any) -> Any:
        for segment in req.segments:
            col.receive_v3(segment.SerializeToString())
        return c3.Commands()

    def reportInstanceProperties(req: Any, _ctx: Any) -> Any:
        col.v3_properties(req.service, req.serviceInstance, [(p.key, p.value) for p in req.properties])
        return c3.Commands()

    def keepAlive(req: Any, _ctx: Any) -> Any:
        col.v3_keep_alive(req.service, req.serviceInstance)
        return c3.Commands()

    def collect_logs(requests: Iterator[bytes], _ctx: Any) -> Any:
        col.receive_logs(_gather(requests, "v3 log collect"))
        return c3.Commands()

    def collect_meters(requests: Iterator[bytes], _ctx: Any) -> Any:
        col.receive_meters(_gather(requests, "v3 meter collect"))
        return c3.Commands()

    def collect_meter_batches(requests: Iterator[bytes], _ctx: Any) -> Any:
        col.receive_meters(_gather(requests, "v3 meter collectBatch"), batch=True)
        return c3.Commands()

    def getProfileTaskCommands(req: Any, _ctx: Any) -> Any:
        commands = col.profile_commands(req.service, req.serviceInstance, req.lastCommandTime)
        return c3.Commands(commands=[
            c3.Command(command="ProfileTaskQuery", args=[c3.KeyStringValuePair(key=k, value=v) for k, v in args])
            for args in commands])

    def collectSnapshot(requests: Iterator[bytes], _ctx: Any) -> Any:
        col.receive_snapshots(_gather(requests, "v3 profile collectSnapshot"))
        return c3.Commands()

    def reportTaskFinish(req: Any, _ctx: Any) -> Any:
        col.profile_task_finished(req.service, req.serviceInstance, req.taskId)
        return c3.Commands()

    profile = grpc.method_handlers_generic_handler("skywalking.v3.ProfileTask", {
        "getProfileTaskCommands": _unary(getProfileTaskCommands, prof3.ProfileTaskCommandQuery, col),
        "collectSnapshot": _stream(collectSnapshot, col),
        "reportTaskFinish": _unary(reportTaskFinish, prof3.ProfileTaskFinishReport, col),
    })
    logs = grpc.method_handlers_generic_handler("skywalking.v3.LogReportService", {
        "collect": _stream(collect_logs, col)})
    meters = grpc.method_handlers_generic_handler("skywalking.v3.MeterReportService", {
        "collect": _stream(collect_meters, col), "collectBatch": _stream(collect_meter_batches, col)})
    trace = grpc.method_handlers_generic_handler("skywalking.v3.TraceSegmentReportService", {
        "collect": _stream(collect, col),
        "collectInSync": _unary(collectInSync, tr3.SegmentCollection, col),
    })
    management = grpc.method_handlers_generic_handler("skywalking.v3.ManagementService", {
        "reportInstanceProperties": _unary(reportInstanceProperties, mgmt3.InstanceProperties, col),
        "keepAlive": _unary(keepAlive, mgmt3.InstancePingPkg, col),
    })
    return [trace, management, logs, meters, profile]


def start_grpc(col: Collector, host: str, port: int, max_workers: int = 32,
               tls: tuple[bytes, bytes] | None = None) -> tuple[grpc.Server, int]:
    """Start a server bound to ``host:port`` only (TLS with ``tls`` = (key PEM, certificate PEM), else
    plaintext like OAP 6.6.0's default); returns it and the bound port."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="collector-grpc"),
                         handlers=[*v6_handlers(col), *v3_handlers(col)],
                         options=[("grpc.so_reuseport", 0), ("grpc.max_receive_message_length", MAX_MESSAGE)])
    try:
        address = host_port(host, port)
        bound = server.add_secure_port(address, grpc.ssl_server_credentials([tls])) if tls \
            else server.add_insecure_port(address)
    except RuntimeError as exc:  # newer grpcio raises instead of returning 0
        raise OSError(f"cannot bind gRPC to {host_port(host, port)}: {exc}") from exc
    if bound == 0:
        raise OSError(f"cannot bind gRPC to {host_port(host, port)}")
    server.start()
    return server, bound
