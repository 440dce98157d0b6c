"""The OAP 6.6.0 session of the gRPC reporter: registration and ping (the registry), the v2 segment encoder,
``/TraceSegmentReportService/collect``. It also issues ids to the tracing core (``IssuesIds``)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from skywalking import config
from skywalking.protocol_v6 import encode as v6_encode
from skywalking.protocol_v6.gen.common.common_pb2 import Commands
from skywalking.protocol_v6.registry import Client, Registry, State
from skywalking.reporter.session import UNARY_TIMEOUT, Check, Session, metadata

if TYPE_CHECKING:
    import grpc

    from skywalking.trace.identity import Identity
    from skywalking.trace.segment import Segment


class V6Session(Session):
    """``on_change(identity, instance id)``: an identity got its ids; ``on_reset()``: the OAP forgot them all;
    ``wake()``: the control loop has work (both callbacks run on the manager or sender thread)."""

    collect_path = "/TraceSegmentReportService/collect"
    response = Commands

    def __init__(self, on_change: Callable[[Identity, int], None], on_reset: Callable[[], None],
                 wake: Callable[[], None]) -> None:
        self._on_change = on_change
        self._on_reset = on_reset
        self._ready = threading.Event()  # the own identity has its instance id
        self.registry = Registry(heartbeat=config.HEARTBEAT_PERIOD, cool_down=config.agent_reset_cool_down,
                                 on_change=self._changed, on_reset=self._reset, wake=wake)
        self._client: tuple[int, Any] = (0, None)
        self._demanded = False

    def _changed(self, identity: Identity, instance_id: int) -> None:
        if identity is self.registry.own:
            self._ready.set()
        self._on_change(identity, instance_id)

    def _reset(self) -> None:
        self._ready.clear()
        self._on_reset()

    # -- the reporter's side ------------------------------------------------------------------------

    def manage(self, channel: grpc.Channel, generation: int) -> float:
        if self._client[0] != generation:
            self._client = (generation, Client(channel, UNARY_TIMEOUT, metadata()))
        return self.registry.tick(self._client[1])

    def encode(self, segment: Segment) -> bytes:
        return v6_encode.encode(segment, self.registry.ids())

    def sent(self, segments: list[Segment]) -> None:
        self.registry.note_names(*v6_encode.names_to_register(segments))

    def check(self) -> Check | None:
        ping = self.registry.ping_message()
        return None if ping is None else Check("/ServiceInstancePing/doPing", ping, Commands, self.registry.still_known)

    def set_own(self, identity: Identity, want: bool) -> None:
        self._demanded = want
        self.registry.set_own(identity, want)

    def demand(self) -> None:
        if not self._demanded:
            self._demanded = True
            own = self.registry.own
            if own is not None:
                self.registry.want((own,))

    def want(self, identities: list[Identity]) -> None:
        self.registry.want(identities)

    @property
    def ids_version(self) -> int:
        return self.registry.version

    def registering(self) -> bool:
        return self.registry.state is State.REGISTERING

    def stats(self) -> dict[str, Any]:
        r = self.registry
        return {"instance_id": r.instance_id, "state": r.state.value, "resets": r.resets, "service_id": r.service_id}

    # -- the agent's side (IssuesIds) ---------------------------------------------------------------

    @property
    def instance_id(self) -> int:
        return self.registry.instance_id

    def resolve(self, identity: Identity) -> int:
        if identity is self.registry.own:
            self.demand()
        return self.registry.lookup(identity)

    def note_endpoint(self, name: str) -> None:
        self.registry.note_endpoint(name)

    def wait_ready(self, timeout: float) -> bool:
        return self._ready.wait(timeout) if timeout > 0 else self._ready.is_set()
