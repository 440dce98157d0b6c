"""Reporters receive finished segments from the tracing core and deliver them somewhere."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from skywalking.trace.identity import Identity
    from skywalking.trace.segment import Segment


class Reporter:
    """Interface: ``report`` is called once per finished segment, on the application's thread, and
    must be quick and never raise. ``instance_id`` is the backend's id of this process's identity
    (sw6; 0 until known), ``resolve`` the id of any identity (0 until known; a reporter that registers
    with an OAP asks for it)."""

    instance_id: int = 0

    def start(self) -> None:
        """Begin delivering (threads, connections)."""

    def set_identity(self, identity: Identity, eager: bool) -> None:
        """The process reports as ``identity``; ``eager``: register it now rather than on first use."""

    def resolve(self, identity: Identity) -> int:
        return 0

    def note_endpoint(self, name: str) -> None:
        """An entry-span name of this process that a propagated context names (sw6: register it early)."""

    def wait_ready(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the instance id; True if it is known."""
        return self.instance_id > 0

    def report(self, segment: Segment) -> bool:
        """Accept a segment; False if it was dropped."""
        raise NotImplementedError

    def stats(self) -> dict[str, Any]:
        """Counters (``agent.stats()``): at least ``created``, ``delivered``, ``dropped`` (by reason)."""
        return {}

    def stop(self, timeout: float = 5.0) -> None:
        """Flush what can be sent within ``timeout`` seconds and release resources; never raises."""
