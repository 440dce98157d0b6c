"""Reporters receive finished segments from the tracing core and deliver them somewhere."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from skywalking.trace.identity import Identity
    from skywalking.trace.segment import Segment


class Reporter:
    """Interface: ``report`` is called once per finished segment, on the application's thread, and
    must be quick and never raise. ``session`` is the protocol session, if any: protocol-specific capabilities
    (e.g. ``skywalking.reporter.session.IssuesIds``) are looked for there, not here."""

    session: Any = None

    def start(self) -> None:
        """Begin delivering (threads, connections)."""

    def set_identity(self, identity: Identity, eager: bool) -> None:
        """The process reports as ``identity``; ``eager``: register it now rather than on first use."""

    def report(self, segment: Segment) -> bool:
        """Accept a segment; False if it was dropped."""
        raise NotImplementedError

    def stats(self) -> dict[str, Any]:
        """Counters (``agent.stats()``): at least ``created``, ``delivered``, ``dropped`` (by reason)."""
        return {}

    def stop(self, timeout: float = 5.0) -> None:
        """Flush what can be sent within ``timeout`` seconds and release resources; never raises."""
