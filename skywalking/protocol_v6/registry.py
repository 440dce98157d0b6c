"""Registration with OAP 6.6.0 (docs/protocol/sw6.md §5, §6): ids for identities, on demand.

    IDLE ──(an identity is wanted)──→ REGISTERING ──→ REGISTERED ──(ServiceMetadataReset)──→ COOLING_DOWN
                                          ↑                                                      │
                                          └────────────── after agent_reset_cool_down ────────────┘

An identity (service, instance name, UUID, properties) gets its ids in two calls: ``doServiceRegister``
for the service, ``doServiceInstanceRegister`` for the instance. The OAP creates ids asynchronously and
leaves pending ones out of its answers, so each step polls until the id comes back; only ids the OAP
returned are used. Besides this process's own identity, the registry registers the identities of other
processes named by the segments it sends (a Ray caller): the OAP de-duplicates instances by service id
and UUID, so the owner gets the same id when it registers itself. Only the own identity is pinged, and
only its service gets endpoint ids; exit-span peers get network-address ids. A process whose own identity
is not wanted yet (registration on demand) makes no call at all.
"""

from __future__ import annotations

import os
import platform
import random
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from enum import Enum
from typing import TYPE_CHECKING, Any

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
from skywalking.trace.identity import PROPERTIES, SERVICE, UUID, Identity

if TYPE_CHECKING:
    import grpc

REGISTER_POLL_FIRST = 0.1  # seconds before the first poll of a new id; doubles up to REGISTER_POLL
REGISTER_POLL = 0.5  # seconds between polls while an id is pending (Java: 3 s; faster start for Ray workers)
MAX_PENDING_NAMES = 10_000  # names waiting for an id; beyond, they are sent as strings only
MAX_NAMES_PER_CALL = 500
MAX_WANTED = 1024  # identities waiting for ids; beyond, segments naming others wait for a later round
MAX_INSTANCES_PER_CALL = 100
IDLE = 3600.0  # seconds the control loop sleeps with nothing to do (want() wakes it)
RESET_COMMAND = "ServiceMetadataReset"
SERVER = 1  # DetectPoint.server: the only detect point OAP 6.6.0 accepts for endpoints


class State(Enum):
    IDLE = "idle"
    REGISTERING = "registering"
    REGISTERED = "registered"
    COOLING_DOWN = "cooling down"


class Client:
    """The v6 register/ping calls over a gRPC channel (paths without a package, docs/protocol/sw6.md §2.1)."""

    def __init__(self, channel: grpc.Channel, timeout: float, metadata: tuple[tuple[str, str], ...]) -> None:
        def unary(path: str, request: Any, response: Any) -> Callable[[Any], Any]:  # message classes
            call = channel.unary_unary(path, request_serializer=request.SerializeToString,
                                       response_deserializer=response.FromString)
            return lambda msg: call(msg, timeout=timeout, metadata=metadata)

        self.register_services = unary("/Register/doServiceRegister", Services, ServiceRegisterMapping)
        self.register_instances = unary("/Register/doServiceInstanceRegister", ServiceInstances,
                                        ServiceInstanceRegisterMapping)
        self.register_endpoints = unary("/Register/doEndpointRegister", Endpoints, EndpointMapping)
        self.register_addresses = unary("/Register/doNetworkAddressRegister", NetAddresses, NetAddressMapping)
        self.ping = unary("/ServiceInstancePing/doPing", ServiceInstancePingPkg, Commands)


def instance_properties(extra: dict[str, str]) -> list[tuple[str, str]]:
    """Java's order (docs/protocol/sw6.md §5.3): os_name, host_name, one ipv4 per address, process_no, language,
    then extra."""
    props = [("os_name", platform.system() or "unknown"), ("host_name", socket.gethostname() or "unknown")]
    props += [("ipv4", ip) for ip in _ipv4s()]
    props += [("process_no", str(os.getpid())), ("language", "python")]
    props += [(k, v) for k, v in extra.items() if k not in ("language",)]
    return props


def _ipv4s() -> list[str]:
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
    except OSError:
        return []
    return sorted({str(info[4][0]) for info in infos if not str(info[4][0]).startswith("127.")})


class Registry:
    """Ids issued by the OAP and the calls to get them. ``tick`` runs on the reporter's manager thread;
    ``ids``, ``lookup``, ``want`` and ``note_names`` may be called from any thread."""

    def __init__(self, heartbeat: float, cool_down: float, on_change: Callable[[Identity, int], None],
                 on_reset: Callable[[], None], wake: Callable[[], None] = lambda: None) -> None:
        self.heartbeat = heartbeat
        self.cool_down = cool_down
        self.on_change = on_change  # (identity, instance id): an identity got its ids
        self.on_reset = on_reset
        self.wake = wake  # called when new work arrives for the control loop
        self.own: Identity | None = None
        self.resets = 0
        self._cooling = False
        self._cool_until = 0.0
        self._next_ping = 0.0
        self._poll = REGISTER_POLL_FIRST
        self._wanted: dict[str, Identity] = {}  # UUID -> identity waiting for ids
        self._services: dict[str, int] = {}
        self._instances: dict[str, tuple[int, int]] = {}  # UUID -> (service id, instance id)
        self._endpoints: dict[str, int] = {}
        self._addresses: dict[str, int] = {}
        self._pending_endpoints: set[str] = set()
        self._pending_addresses: set[str] = set()
        self._serials: list[str] = []  # last command serial numbers, for de-duplication
        self._lock = threading.Lock()
        self._ids = Ids()
        self.version = 0  # bumps whenever new ids are published

    # -- any thread ---------------------------------------------------------------------------------

    def ids(self) -> Ids:
        return self._ids

    def _own_ids(self, instances: Mapping[str, tuple[int, int]]) -> tuple[int, int]:
        """(service id, instance id) of the own identity in ``instances``; zeros if absent."""
        own = self.own
        return instances.get(own[UUID], (0, 0)) if own is not None else (0, 0)

    @property
    def state(self) -> State:
        if self._cooling:
            return State.COOLING_DOWN
        if self.instance_id:
            return State.REGISTERED
        return State.REGISTERING if self._wanted else State.IDLE

    @property
    def service_id(self) -> int:
        return self._own_ids(self._ids.instances)[0]

    @property
    def instance_id(self) -> int:
        return self._own_ids(self._ids.instances)[1]

    def set_own(self, identity: Identity, want: bool) -> None:
        """This process reports as ``identity`` from now on; with ``want``, register it now."""
        with self._lock:
            if self.own is not None and self.own[SERVICE] != identity[SERVICE]:
                self._endpoints.clear()  # endpoint ids belong to a service
                self._pending_endpoints.clear()
            self.own = identity
        if want:
            self.want((identity,))

    def want(self, identities: Iterable[Identity]) -> None:
        """Ask for the ids of ``identities`` (those already known or asked for are skipped)."""
        added = False
        with self._lock:
            for identity in identities:
                key = identity[UUID]
                if key in self._instances or key in self._wanted or len(self._wanted) >= MAX_WANTED:
                    continue
                self._wanted[key] = identity
                added = True
            if added:
                self._poll = REGISTER_POLL_FIRST
        if added and not self._cooling:
            self.wake()

    def ping_message(self) -> bytes | None:
        """A serialized ping of the own identity (None until it has ids): the reporter sends one on every new
        connection before segments, so that none goes to an OAP that no longer knows the ids it names."""
        own = self.own
        ids = self._own_ids(self._ids.instances) if own is not None else (0, 0)
        if not ids[1]:
            return None
        return ServiceInstancePingPkg(serviceInstanceId=ids[1], time=int(time.time() * 1000),
                                      serviceInstanceUUID=own[UUID]).SerializeToString()  # type: ignore[index]

    def still_known(self, commands: Commands) -> bool:
        """The OAP's answer to ``ping_message``: False if it asked for a reset (then under way)."""
        return not self._handle(commands)

    def lookup(self, identity: Identity) -> int:
        """The instance id of ``identity``, or 0 (and it is asked for)."""
        known = self._ids.instances.get(identity[UUID])
        if known is not None:
            return known[1]
        if identity[UUID] not in self._wanted:
            self.want((identity,))
        return 0

    def note_endpoint(self, name: str) -> None:
        """An entry-span name of this process that another process's ref is about to name: the OAP resolves
        such names when the callee's segment arrives and drops it if the endpoint does not exist by then, so it
        is registered now rather than after this process's own segment is sent (it may be long-running)."""
        if name in self._endpoints or name in self._pending_endpoints:
            return
        with self._lock:
            if len(self._pending_endpoints) >= MAX_PENDING_NAMES:
                return
            self._pending_endpoints.add(name)
        self.wake()

    def note_names(self, endpoints: Iterable[str], peers: Iterable[str]) -> None:
        """Names seen in a sent segment; the unknown ones are registered on the next tick."""
        with self._lock:
            for name in endpoints:
                if name not in self._endpoints and len(self._pending_endpoints) < MAX_PENDING_NAMES:
                    self._pending_endpoints.add(name)
            for peer in peers:
                if peer not in self._addresses and len(self._pending_addresses) < MAX_PENDING_NAMES:
                    self._pending_addresses.add(peer)

    # -- the control loop ---------------------------------------------------------------------------

    def tick(self, client: Client) -> float:
        """One step; returns the seconds until the next. gRPC errors propagate to the caller."""
        if self._cooling:
            remaining = self._cool_until - time.monotonic()
            if remaining > 0:
                return remaining
            self._cooling = False
            logger.info("registering with the OAP again after the reset cool-down")
        pending = self._register_wanted(client)
        own = self.own
        delay = IDLE
        if own is not None and own[UUID] in self._instances:
            now = time.monotonic()
            if now >= self._next_ping:
                sid, iid = self._instances[own[UUID]]
                commands = client.ping(ServiceInstancePingPkg(serviceInstanceId=iid, time=int(time.time() * 1000),
                                                              serviceInstanceUUID=own[UUID]))
                self._next_ping = now + self.heartbeat
                if self._handle(commands):
                    return 0.0
            names_pending = self._sync_names(client, self._instances[own[UUID]][0])
            delay = max(0.0, self._next_ping - time.monotonic())
            if names_pending:
                delay = min(delay, REGISTER_POLL)
        if pending:
            delay = min(delay, self._poll)
            self._poll = min(REGISTER_POLL, self._poll * 2)
        return delay

    def _register_wanted(self, client: Client) -> bool:
        """Services first, then instances, for the identities wanted; True if some are still pending."""
        with self._lock:
            wanted = list(self._wanted.values())
        if not wanted:
            return False
        services = sorted({i[SERVICE] for i in wanted if i[SERVICE] not in self._services})[:MAX_NAMES_PER_CALL]
        if services:
            mapping = client.register_services(Services(services=[Service(serviceName=n) for n in services]))
            self._services.update({p.key: p.value for p in mapping.services if p.value and p.key in services})
        ready = [i for i in wanted if i[SERVICE] in self._services][:MAX_INSTANCES_PER_CALL]
        if ready:
            now = int(time.time() * 1000)
            mapping = client.register_instances(ServiceInstances(instances=[
                ServiceInstance(serviceId=self._services[i[SERVICE]], instanceUUID=i[UUID], time=now,
                                properties=[KeyStringValuePair(key=k, value=v) for k, v in i[PROPERTIES]])
                for i in ready]))
            got = {p.key: p.value for p in mapping.serviceInstances if p.value}
            done = [i for i in ready if i[UUID] in got]
            if done:
                with self._lock:
                    for i in done:
                        self._instances[i[UUID]] = (self._services[i[SERVICE]], got[i[UUID]])
                        self._wanted.pop(i[UUID], None)
                self._publish()
                for i in done:
                    if i is self.own:
                        self._next_ping = 0.0
                        logger.info("registered with the OAP: service %r id %d, instance id %d", i[SERVICE],
                                    *self._instances[i[UUID]])
                    self.on_change(i, got[i[UUID]])
        with self._lock:
            return bool(self._wanted)

    def _sync_names(self, client: Client, service_id: int) -> bool:
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
                Endpoint(serviceId=service_id, endpointName=n, **{"from": SERVER}) for n in endpoints]))
            got = {e.endpointName: e.endpointId for e in mapping.elements
                   if e.endpointId and e.serviceId == service_id}
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
            self._ids = Ids(dict(self._instances), self._own_ids(self._instances)[0], dict(self._endpoints),
                            dict(self._addresses))
            self.version += 1

    def _handle(self, commands: Commands) -> bool:
        """Act on the OAP's commands; True if a reset started."""
        reset = False
        for command in commands.commands:
            serial = next((a.value for a in command.args if a.key == "SerialNumber"), "")
            with self._lock:  # the manager's pings and the sender's connection checks both answer here
                if serial and serial in self._serials:
                    continue
                if serial:
                    self._serials = [*self._serials[-63:], serial]
            if command.command == RESET_COMMAND:
                reset = True
            else:
                logger.warning("ignoring unknown OAP command %r", command.command)
        if reset and not self._cooling:
            self.reset()
        return reset

    def reset(self) -> None:
        """Forget every id and register again after the cool-down (same UUIDs). Tracing goes on; segments
        wait for the new ids and sw6 headers are skipped meanwhile. The cool-down is drawn between half and all of
        ``cool_down``: a fleet of agents told to reset by a restarted OAP does not register in one burst."""
        pause = self.cool_down * random.uniform(0.5, 1.0)
        logger.warning("the OAP asked for a reset (ServiceMetadataReset): registering again in %.1f s; segments "
                       "are held until then", pause)
        with self._lock:
            self._services.clear()
            self._instances.clear()
            self._endpoints.clear()
            self._addresses.clear()
            self._pending_endpoints.clear()
            self._pending_addresses.clear()
            if self.own is not None:
                self._wanted[self.own[UUID]] = self.own
        self._publish()
        self.on_reset()
        self.resets += 1
        self._cool_until = time.monotonic() + pause
        self._cooling = True
        self.wake()
