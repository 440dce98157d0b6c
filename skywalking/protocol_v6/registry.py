"""Registration with OAP 6.6.0 as a state machine (spec §2.2–2.6, §2.11, §8).

    REGISTERING_SERVICE → REGISTERING_INSTANCE → REGISTERED ──(ServiceMetadataReset)──→ COOLING_DOWN
            ↑                                                                              │
            └──────────────────────── after agent_reset_cool_down ─────────────────────────┘

The OAP creates ids asynchronously and leaves pending ones out of its answers, so every step polls
until the id comes back; only ids the OAP returned are ever used. While REGISTERED, each tick pings
and registers the entry-span names (endpoints, detect point server) and exit-span peers (network
addresses) seen since. The instance UUID is made once per process and kept across resets.
"""

from __future__ import annotations

import os
import platform
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from enum import Enum

from skywalking.loggings import logger
from skywalking.protocol_v6.encode import Ids
from skywalking.protocol_v6.gen.common.common_pb2 import Commands, KeyStringValuePair
from skywalking.protocol_v6.gen.register.InstancePing_pb2 import ServiceInstancePingPkg
from skywalking.protocol_v6.gen.register.Register_pb2 import (
    Endpoint,
    EndpointMapping,
    Endpoints,
    NetAddresses,
    NetAddressMapping,
    Service,
    ServiceInstance,
    ServiceInstanceRegisterMapping,
    ServiceInstances,
    ServiceRegisterMapping,
    Services,
)

INSTANCE_UUID = uuid.uuid4().hex  # one per process, kept across OAP resets (Java: static per JVM)
REGISTER_POLL = 0.5  # seconds between polls while an id is pending (Java: 3 s; faster start for Ray workers)
MAX_PENDING_NAMES = 10_000  # names waiting for an id; beyond, they are sent as strings only
MAX_NAMES_PER_CALL = 500
RESET_COMMAND = "ServiceMetadataReset"
SERVER = 1  # DetectPoint.server: the only detect point OAP 6.6.0 accepts for endpoints


class State(Enum):
    REGISTERING_SERVICE = "registering service"
    REGISTERING_INSTANCE = "registering instance"
    REGISTERED = "registered"
    COOLING_DOWN = "cooling down"


class Client:
    """The v6 register/ping calls over a gRPC channel (paths without a package, spec §1.1)."""

    def __init__(self, channel: object, timeout: float, metadata: tuple[tuple[str, str], ...]) -> None:
        def unary(path: str, request: type, response: type) -> Callable[[object], object]:
            call = channel.unary_unary(path, request_serializer=request.SerializeToString,  # type: ignore[attr-defined]
                                       response_deserializer=response.FromString)
            return lambda msg: call(msg, timeout=timeout, metadata=metadata)

        self.register_services = unary("/Register/doServiceRegister", Services, ServiceRegisterMapping)
        self.register_instances = unary("/Register/doServiceInstanceRegister", ServiceInstances,
                                        ServiceInstanceRegisterMapping)
        self.register_endpoints = unary("/Register/doEndpointRegister", Endpoints, EndpointMapping)
        self.register_addresses = unary("/Register/doNetworkAddressRegister", NetAddresses, NetAddressMapping)
        self.ping = unary("/ServiceInstancePing/doPing", ServiceInstancePingPkg, Commands)


def instance_properties(extra: dict[str, str]) -> list[KeyStringValuePair]:
    """Java's order (spec §2.3): os_name, host_name, one ipv4 per address, process_no, language, then extra."""
    props = [("os_name", platform.system() or "unknown"), ("host_name", socket.gethostname() or "unknown")]
    props += [("ipv4", ip) for ip in _ipv4s()]
    props += [("process_no", str(os.getpid())), ("language", "python")]
    props += [(k, v) for k, v in extra.items() if k not in ("language",)]
    return [KeyStringValuePair(key=k, value=v) for k, v in props]


def _ipv4s() -> list[str]:
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
    except OSError:
        return []
    return sorted({info[4][0] for info in infos if not info[4][0].startswith("127.")})


class Registry:
    """Ids issued by the OAP and the steps to get them. ``tick`` runs on the reporter's manager thread;
    ``ids`` and ``note_names`` may be called from the sender thread."""

    def __init__(self, service: str, properties: Iterable[KeyStringValuePair], heartbeat: float,
                 cool_down: float, on_ready: Callable[[int], None], on_reset: Callable[[], None],
                 instance_uuid: str = INSTANCE_UUID) -> None:
        self.service = service
        self.properties = list(properties)
        self.heartbeat = heartbeat
        self.cool_down = cool_down
        self.on_ready = on_ready
        self.on_reset = on_reset
        self.instance_uuid = instance_uuid
        self.state = State.REGISTERING_SERVICE
        self.service_id = 0
        self.instance_id = 0
        self.resets = 0
        self._endpoints: dict[str, int] = {}
        self._addresses: dict[str, int] = {}
        self._pending_endpoints: set[str] = set()
        self._pending_addresses: set[str] = set()
        self._cool_until = 0.0
        self._serials: list[str] = []  # last command serial numbers, for de-duplication
        self._lock = threading.Lock()
        self._ids = Ids(0, 0)

    # -- read by the sender ---------------------------------------------------------------------

    def ids(self) -> Ids:
        return self._ids

    def note_names(self, endpoints: Iterable[str], peers: Iterable[str]) -> None:
        """Names seen in a sent segment; the unknown ones are registered on the next tick."""
        with self._lock:
            for name in endpoints:
                if name not in self._endpoints and len(self._pending_endpoints) < MAX_PENDING_NAMES:
                    self._pending_endpoints.add(name)
            for peer in peers:
                if peer not in self._addresses and len(self._pending_addresses) < MAX_PENDING_NAMES:
                    self._pending_addresses.add(peer)

    # -- the state machine ----------------------------------------------------------------------

    def tick(self, client: Client) -> float:
        """One step; returns the seconds until the next. gRPC errors propagate to the caller."""
        state = self.state
        if state is State.COOLING_DOWN:
            remaining = self._cool_until - time.monotonic()
            if remaining > 0:
                return remaining
            self.state = State.REGISTERING_SERVICE
            logger.info("re-registering with the OAP after the reset cool-down")
            return 0.0
        if state is State.REGISTERING_SERVICE:
            mapping = client.register_services(Services(services=[Service(serviceName=self.service)]))
            sid = next((p.value for p in mapping.services if p.key == self.service and p.value), 0)
            if not sid:
                return REGISTER_POLL
            self.service_id = sid
            self.state = State.REGISTERING_INSTANCE
            return 0.0
        if state is State.REGISTERING_INSTANCE:
            instance = ServiceInstance(serviceId=self.service_id, instanceUUID=self.instance_uuid,
                                       time=int(time.time() * 1000), properties=self.properties)
            mapping = client.register_instances(ServiceInstances(instances=[instance]))
            iid = next((p.value for p in mapping.serviceInstances if p.key == self.instance_uuid and p.value), 0)
            if not iid:
                return REGISTER_POLL
            self.instance_id = iid
            self.state = State.REGISTERED
            self._publish()
            logger.info("registered with the OAP: service %r id %d, instance id %d", self.service, self.service_id,
                        iid)
            self.on_ready(iid)
            return 0.0
        # REGISTERED: ping, then the dictionaries (Java's order), then the commands
        commands = client.ping(ServiceInstancePingPkg(serviceInstanceId=self.instance_id,
                                                      time=int(time.time() * 1000),
                                                      serviceInstanceUUID=self.instance_uuid))
        pending = self._sync_names(client)
        if self._handle(commands):
            return 0.0
        return REGISTER_POLL if pending else self.heartbeat

    def _sync_names(self, client: Client) -> bool:
        with self._lock:
            addresses = sorted(self._pending_addresses)[:MAX_NAMES_PER_CALL]
            endpoints = sorted(self._pending_endpoints)[:MAX_NAMES_PER_CALL]
        changed = False
        if addresses:
            mapping = client.register_addresses(NetAddresses(addresses=addresses))
            got = {p.key: p.value for p in mapping.addressIds if p.value}
            with self._lock:
                self._addresses.update(got)
                self._pending_addresses.difference_update(got)
            changed |= bool(got)
        if endpoints:
            mapping = client.register_endpoints(Endpoints(endpoints=[
                Endpoint(serviceId=self.service_id, endpointName=n, **{"from": SERVER}) for n in endpoints]))
            got = {e.endpointName: e.endpointId for e in mapping.elements
                   if e.endpointId and e.serviceId == self.service_id}
            with self._lock:
                self._endpoints.update(got)
                self._pending_endpoints.difference_update(got)
            changed |= bool(got)
        if changed:
            self._publish()
        with self._lock:
            return bool(self._pending_addresses or self._pending_endpoints)

    def _publish(self) -> None:
        with self._lock:
            self._ids = Ids(self.service_id, self.instance_id, dict(self._endpoints), dict(self._addresses))

    def _handle(self, commands: Commands) -> bool:
        """Act on the OAP's commands; True if a reset started."""
        reset = False
        for command in commands.commands:
            serial = next((a.value for a in command.args if a.key == "SerialNumber"), "")
            if serial and serial in self._serials:
                continue
            if serial:
                self._serials = [*self._serials[-63:], serial]
            if command.command == RESET_COMMAND:
                reset = True
            else:
                logger.warning("ignoring unknown OAP command %r", command.command)
        if reset:
            self.reset()
        return reset

    def reset(self) -> None:
        """Forget every id, stop tracing, and register again after the cool-down (same UUID)."""
        logger.warning("the OAP asked for a reset (ServiceMetadataReset): tracing paused, registering again in "
                       "%.0f s", self.cool_down)
        self.on_reset()
        with self._lock:
            self.service_id = self.instance_id = 0
            self._endpoints.clear()
            self._addresses.clear()
            self._pending_endpoints.clear()
            self._pending_addresses.clear()
            self._ids = Ids(0, 0)
        self.resets += 1
        self._cool_until = time.monotonic() + self.cool_down
        self.state = State.COOLING_DOWN
