"""Data sent in batches under v8 (logs, meters, profile snapshots; and segments over HTTP or Kafka): one bounded
queue per kind (a ``Feed``) and one sender thread (``DataSender``) that moves them through a ``Transport``.

* ``Feed.offer()`` runs on the thread that made the item (a log record's, the meter thread, the profiler):
  it appends to a deque, with no lock and no I/O. When the queue is full the item is dropped and counted.
* The sender thread takes up to ``BATCH`` items of a feed, encodes them (the feed's pure function, off the
  application's thread, to a protobuf message) and hands the batch to the transport: one client-streaming call
  over the segment reporter's channel (gRPC), one POST (HTTP), one produce per message (Kafka). A batch the
  backend could not take now (``Retry``) goes back to the front of its queue (still bounded; what does not fit
  is counted) and the sender backs off; one it refuses (``Refused``) is dropped and counted.
* Every item is delivered or counted: ``stats()`` has ``created``, ``delivered`` and ``dropped`` by reason per
  kind, and drops are logged as segment drops are (the first at once, then a summary every 30 s).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from skywalking.loggings import logger
from skywalking.reporter.accounting import DROP_SUMMARY, Accounts, Drop
from skywalking.reporter.backoff import Backoff
from skywalking.trace.context import suppress_tracing

if TYPE_CHECKING:
    from skywalking.reporter.grpc import Connection

BATCH = 500  # items per call
STREAM_TIMEOUT = 30.0  # seconds, one call
IDLE_WAIT = 1.0  # seconds the sender sleeps with nothing queued (woken early by offer())


class Retry(Exception):
    """The backend did not take the batch now (unreachable, overloaded): send it again later."""


class Refused(Exception):
    """The backend will not take this batch (no such receiver, malformed): sending it again cannot help."""


class Transport(Protocol):
    name: str

    def send(self, feed: Feed, messages: list[Any]) -> None:
        """Deliver ``messages`` (``feed.encode``'s protobuf messages) or raise ``Retry`` / ``Refused``."""
        ...


def _passthrough(data: bytes) -> bytes:
    return data


class GrpcTransport:
    """Each batch on one client-streaming call to ``feed.path`` over ``conn``'s channel (the segments' one)."""

    name = "grpc"

    def __init__(self, conn: Connection) -> None:
        from skywalking.reporter.session import metadata

        self.conn = conn
        self.metadata = metadata
        self._calls: dict[str, Any] = {}
        self._generation = -1

    def send(self, feed: Feed, messages: list[Any]) -> None:
        import grpc

        channel, generation = self.conn.channel()
        if generation != self._generation:
            self._calls.clear()
            self._generation = generation
        call = self._calls.get(feed.kind)
        if call is None:  # the answer (``Commands``) is not read: kept as bytes
            call = self._calls[feed.kind] = channel.stream_unary(
                feed.path, request_serializer=_passthrough, response_deserializer=_passthrough)
        try:
            call(iter([m.SerializeToString() for m in messages]), timeout=STREAM_TIMEOUT, metadata=self.metadata())
        except grpc.RpcError as e:
            code = e.code() if hasattr(e, "code") else None
            why = f"{getattr(code, 'name', code)}: {e.details() if hasattr(e, 'details') else e}"
            if code == grpc.StatusCode.UNIMPLEMENTED:  # the backend has no such receiver
                raise Refused(why) from None
            self.conn.failed(generation)
            raise Retry(why) from None


class Feed:
    """One kind of data: its queue, its encoder (item -> protobuf message) and its gRPC call's path."""

    def __init__(self, kind: str, path: str, encode: Callable[[Any], Any], max_queue: int) -> None:
        self.kind = kind
        self.path = path
        self.encode = encode
        self.max_queue = max(1, max_queue)
        self.queue: deque[Any] = deque()
        self.accounts = Accounts(kind)
        self.wake: threading.Event | None = None  # set by the sender that serves this feed

    def offer(self, item: Any) -> bool:
        """Queue ``item`` for sending; False (and counted) when the queue is full. Never raises."""
        self.accounts.created.incr()
        queue = self.queue
        if len(queue) >= self.max_queue:
            self.accounts.drop(1, Drop.QUEUE_FULL)
            return False
        queue.append(item)
        wake = self.wake
        if wake is not None and not wake.is_set():
            wake.set()
        return True

    def take(self, n: int) -> list[Any]:
        queue = self.queue
        batch: list[Any] = []
        while queue and len(batch) < n:
            batch.append(queue.popleft())
        return batch

    def put_back(self, batch: list[Any]) -> None:
        """Return a failed batch to the front of the queue; what no longer fits is dropped and counted."""
        room = max(0, self.max_queue - len(self.queue))
        keep = batch[:room]
        if len(batch) > room:
            self.accounts.drop(len(batch) - room, Drop.QUEUE_FULL_UNREACHABLE)
        self.queue.extendleft(reversed(keep))

    def stats(self) -> dict[str, Any]:
        return {**self.accounts.snapshot(), "queued": len(self.queue)}


class DataSender:
    """Sends every feed's items through ``transport`` (see the module docstring)."""

    def __init__(self, transport: Transport, feeds: list[Feed]) -> None:
        self.transport = transport
        self.feeds = {feed.kind: feed for feed in feeds}
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._backoff = Backoff()
        self._inflight: tuple[Feed, int] | None = None  # the batch the transport is sending
        self._abandoned = False  # stop() gave up waiting for the sender and counted what it held
        self.last_error = ""
        for feed in feeds:
            feed.wake = self._wake

    def feed(self, kind: str) -> Feed | None:
        return self.feeds.get(kind)

    def start(self, name: str = "SkyWalkingDataSender") -> None:
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Send what can be sent within ``timeout`` seconds; count the rest. Never raises."""
        try:
            self._stopping.set()
            self._wake.set()
            if self._thread is not None:
                self._thread.join(timeout)
                inflight = self._inflight
                if self._thread.is_alive() and inflight is not None:
                    self._abandoned = True
                    logger.warning("%d %s(s) not sent before stop: the backend had not answered within %.0f s",
                                   inflight[1], inflight[0].kind, timeout)
                    inflight[0].accounts.drop(inflight[1], Drop.STOPPED_UNANSWERED)
            for feed in self.feeds.values():
                if feed.queue:
                    logger.warning("%d %s(s) not sent before stop%s", len(feed.queue), feed.kind,
                                   f" (last error: {self.last_error})" if self.last_error else "")
                    feed.accounts.drop(len(feed.queue), Drop.STOPPED)
                    feed.queue.clear()
                feed.accounts.summary()
                feed.wake = None
        except Exception:
            logger.exception("data sender failed to stop cleanly")

    def stats(self) -> dict[str, Any]:
        return {kind: feed.stats() for kind, feed in self.feeds.items()}

    # -- the sender thread ------------------------------------------------------------------------

    def _loop(self) -> None:
        next_summary = time.monotonic() + DROP_SUMMARY
        with suppress_tracing():
            while True:
                stopping = self._stopping.is_set()
                sent_any = failed = False
                for feed in self.feeds.values():
                    if feed.queue:
                        ok = self._send(feed)
                        sent_any, failed = sent_any or ok, failed or not ok
                if stopping and (failed or not any(f.queue for f in self.feeds.values())):
                    return  # stop() counts what is left
                if time.monotonic() >= next_summary:
                    next_summary = time.monotonic() + DROP_SUMMARY
                    for feed in self.feeds.values():
                        feed.accounts.summary()
                if failed:
                    self._stopping.wait(self._backoff.next())
                elif not sent_any:
                    self._wake.wait(IDLE_WAIT)
                    self._wake.clear()

    def _send(self, feed: Feed) -> bool:
        """One batch of ``feed``; False if the backend did not take it (the batch is back in the queue)."""
        batch, messages = [], []
        for item in feed.take(BATCH):
            try:
                messages.append(feed.encode(item))
                batch.append(item)
            except Exception:
                logger.debug("cannot encode a %s", feed.kind, exc_info=True)
                feed.accounts.drop(1, Drop.ENCODE_FAILED)
        if not messages:
            return True
        self._inflight = (feed, len(messages))
        try:
            self.transport.send(feed, messages)
        except Retry as e:
            self.last_error = str(e)
            if not self._abandoned:
                feed.put_back(batch)
            return False
        except Exception as e:
            if not isinstance(e, Refused):
                logger.exception("sending %s(s) failed", feed.kind)
            self.last_error = str(e)
            if not self._abandoned:
                feed.accounts.drop(len(messages), Drop.NOT_ACCEPTED)
            return True
        finally:
            self._inflight = None
        if not self._abandoned:  # else already counted as not sent
            feed.accounts.delivered += len(messages)
        self._backoff.reset()
        return True
