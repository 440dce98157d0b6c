"""What the gRPC reporter needs from a protocol session (v6: ``skywalking.protocol_v6.session``, v8:
``skywalking.protocol_v8.session``), and the optional capability of a session that gets ids from the backend.

The reporter owns transport, queue and threads; a session owns what differs between protocol versions: the
control loop (registration, heartbeats), the encoder and the collect path.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

from skywalking import __version__, config

if TYPE_CHECKING:
    import grpc

    from skywalking.trace.identity import Identity
    from skywalking.trace.segment import Segment

UNARY_TIMEOUT = 10.0  # seconds, every register / ping / keep-alive call

class Check(NamedTuple):
    """A unary call that tells whether the backend still knows the ids segments name (see ``Session.check``)."""

    path: str
    request: bytes  # serialized
    response_type: Any  # the response message class (``FromString``)
    accept: Callable[[Any], bool]  # True if the answer says the ids are still known


def metadata() -> tuple[tuple[str, str], ...]:
    """gRPC metadata sent with every call: the agent version and, if configured, the authentication token."""
    md = [("agent-version", f"company-skywalking/{__version__}")]
    if config.agent_authentication:
        md.append(("authentication", config.agent_authentication))
    return tuple(md)


class Unary:
    """Unary call stubs on the current channel, made again when the channel changes (its ``generation``)."""

    def __init__(self, *specs: tuple[str, Any, Any]) -> None:
        """``specs``: (method path, request message class, response message class) of each call."""
        self.specs = specs
        self.generation = -1
        self._calls: list[Any] = []

    def calls(self, channel: grpc.Channel, generation: int) -> list[Any]:
        if generation != self.generation:
            self._calls = [channel.unary_unary(path, request_serializer=request.SerializeToString,
                                               response_deserializer=response.FromString)
                           for path, request, response in self.specs]
            self.generation = generation
        return self._calls


class Session(ABC):
    """One protocol version's side of the reporter. ``manage`` runs on the manager thread; ``encode``, ``sent``,
    ``check``, ``want`` and ``ids_version`` on the sender thread; ``set_own`` and ``demand`` on any thread."""

    collect_path = ""  # the client-streaming call that carries segments
    response: Any = None  # that call's response message type (``FromString``)

    @abstractmethod
    def manage(self, channel: grpc.Channel, generation: int) -> float:
        """One control step over ``channel`` (``generation`` changes with each new channel); returns seconds until
        the next. gRPC errors propagate."""

    @abstractmethod
    def encode(self, segment: Segment) -> bytes:
        """Serialized stream message; raises ValueError for a segment the backend would drop and
        ``Unresolved`` for one naming identities without ids yet."""

    def sent(self, segments: list[Segment]) -> None:  # noqa: B027 (optional hook: does nothing by default)
        """Called after a batch went out."""

    def check(self) -> Check | None:
        """A call that tells whether the backend still knows the ids segments name, sent on a new connection
        before segments; None when ids cannot go stale."""
        return None

    def set_own(self, identity: Identity, want: bool) -> None:  # noqa: B027 (optional hook: does nothing by default)
        """The process reports as ``identity``; with ``want`` its ids are asked for now."""

    def demand(self) -> None:  # noqa: B027 (optional hook: does nothing by default)
        """The process has something to report: ask for its own ids if not done yet."""

    def want(self, identities: list[Identity]) -> None:  # noqa: B027 (optional hook: does nothing by default)
        """Ask for the ids of identities a segment names (``Unresolved``)."""

    @property
    def ids_version(self) -> int:
        """Changes whenever new ids arrive (held segments are tried again)."""
        return 0

    def registering(self) -> bool:
        """Whether ids are being asked for (worth waiting for at stop)."""
        return False

    def stats(self) -> dict[str, Any]:
        """Session counters merged into the reporter's ``stats()``."""
        return {}


@runtime_checkable
class IssuesIds(Protocol):
    """A session whose backend issues ids for identities (sw6): the agent hands these to the tracing core."""

    @property
    def instance_id(self) -> int:
        """The backend's id of this process's identity; 0 until known."""
        ...

    def resolve(self, identity: Identity) -> int:
        """The instance id of any identity; 0 until known (and it is asked for)."""
        ...

    def note_endpoint(self, name: str) -> None:
        """An entry-span name of this process that a propagated context names: register it early."""
        ...

    def wait_ready(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for ``instance_id``; True if it is known."""
        ...
