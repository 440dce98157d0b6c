"""The gRPC reporter: a bounded queue, a sender thread and a manager thread, shared by v6 and v8.

* ``report()`` (the application's thread) appends to a bounded deque: no lock, no I/O. When the
  queue is full the segment is dropped and counted (``accounting``: every segment is delivered or counted).
* The sender thread takes batches, encodes them with the session's encoder and sends each
  batch on one client-streaming ``collect`` call with a deadline, over an HTTP/2 connection of its own
  (``h2stream``: a batch is a few DATA frames, not one hand-off per segment; grpcio's API is the fallback).
  A new connection is checked (a ping) before segments go over it. A failed batch goes back to the
  front of the queue (still bounded), the channel fails over to the next backend, and the sender
  retries (within a second when the backend is unreachable, else with a capped exponential backoff).
* The manager thread runs the protocol session's control loop (``reporter.session``; v6: registration and ping,
  ``skywalking.protocol_v6.session``; v8: instance properties and keep-alive, ``skywalking.protocol_v8.session``).
* v6 segments name processes by identity; a segment whose identities have no OAP ids yet is held (bounded
  by the same buffer size, overflow counted) and encoded again once the registry has published them.
* With a spool attached (``attach_spool``; Ray workers), ``report()`` also writes the segment ahead to a
  node-local file, segments are marked done there once sent or dropped, what a stop could not send stays
  for the next agent on the node, and the manager thread delivers what dead processes left behind.
* Both threads run inside ``suppress_tracing()``: the agent never traces its own calls.
* ``stop(timeout)`` flushes what it can within ``timeout`` and never raises.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grpc

from skywalking import config
from skywalking.loggings import RateLimitedLog, logger
from skywalking.reporter import Reporter
from skywalking.reporter.accounting import DROP_SUMMARY, Accounts, Drop
from skywalking.reporter.backoff import Backoff
from skywalking.reporter.session import UNARY_TIMEOUT, Session, metadata
from skywalking.trace.context import suppress_tracing
from skywalking.trace.identity import Identity, Unresolved

if TYPE_CHECKING:
    from skywalking.reporter.h2stream import H2Channel
    from skywalking.reporter.spool import Spool
    from skywalking.trace.segment import Segment

BATCH = 2000  # segments per collect stream (fewer streams: ~25 % more throughput than 500)
STREAM_TIMEOUT = 30.0  # seconds, one collect stream (Java: GRPC_UPSTREAM_TIMEOUT)
PROBE_CAP = 1.0  # seconds between the manager's calls while the backend fails: it notices the backend's return
# gRPC's own reconnect backoff grows to 120 s by default, and a call made meanwhile fails without trying: bounded
CHANNEL_OPTIONS = (("grpc.initial_reconnect_backoff_ms", 250), ("grpc.min_reconnect_backoff_ms", 250),
                   ("grpc.max_reconnect_backoff_ms", 1000))

IDLE_WAIT = 0.5  # seconds the sender sleeps when the queue is empty (woken early by report())
LINGER = 1.0  # at most, seconds the sender lets segments accumulate after waking: one stream per batch
FILL = BATCH  # ... or until a full batch waits: each call's fixed cost (HTTP/2 headers, syscalls) spread over many
LIMITS_CHECK = 30.0  # seconds between looks at the span-limit counters (logged when they grew)
SPOOL_SCAN = 5.0  # seconds between looks for spools left by dead processes
HELD_POLL = 0.05  # seconds between looks at the registry while stopping with segments waiting for ids


def interpreter_exiting() -> bool:
    """Whether the interpreter began to exit: ``threading._shutdown`` ran (non-daemon threads joined, new threads
    may be refused) or finalization started."""
    return bool(getattr(threading, "_SHUTTING_DOWN", False)) or sys.is_finalizing()


class Connection:
    """One channel to the current backend of ``agent_collector_backend_services``; fails over in order."""

    def __init__(self, backends: list[str], tls: bool) -> None:
        self.backends = backends or ["127.0.0.1:11800"]
        self.tls = tls
        self._index = 0
        self._channel: grpc.Channel | None = None
        self._lock = threading.Lock()
        self.generation = 0  # bumps on every new channel

    @property
    def target(self) -> str:
        return self.backends[self._index]

    def channel(self) -> tuple[grpc.Channel, int]:
        with self._lock:
            if self._channel is None:
                target = self.backends[self._index]
                self._channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(), CHANNEL_OPTIONS) \
                    if self.tls else grpc.insecure_channel(target, CHANNEL_OPTIONS)
                self.generation += 1
            return self._channel, self.generation

    def failed(self, generation: int) -> None:
        """The channel of ``generation`` failed: move to the next backend (once per generation)."""
        with self._lock:
            if generation != self.generation or self._channel is None:
                return
            self._channel.close()
            self._channel = None
            self._index = (self._index + 1) % len(self.backends)

    def close(self) -> None:
        with self._lock:
            if self._channel is not None:
                self._channel.close()
                self._channel = None


class Forgotten(Exception):
    """The backend answered the connection check with a reset: the batch names ids it no longer knows."""


def _passthrough(data: bytes) -> bytes:
    return data


class GrpcReporter(Reporter):
    """See the module docstring."""

    def __init__(self, session: Session, max_queue: int, backends: list[str], tls: bool) -> None:
        self.session: Session = session
        self.max_queue = max(1, max_queue)
        self.conn = Connection(backends, tls)
        self._h2: H2Channel | None = None  # the collect connection (None: h2 unusable here, the gRPC API sends)
        self._h2_ok = True
        self._queue: deque[Segment] = deque()
        self._held: deque[Segment] = deque()  # waiting for ids (v6)
        self._held_version = -1
        self._demanded = False
        self.spool: Spool | None = None
        self._write_ahead = False
        self._next_scan = 0.0
        self._wake = threading.Event()
        self.linger = LINGER  # Ray workers use less: Ray may kill them soon after their last task
        self._hurry = threading.Event()  # ends the linger early: FILL segments queued, or stop()
        self._manage_wake = threading.Event()
        self._stopping = threading.Event()
        self._stop_deadline = 0.0
        self._threads: list[threading.Thread] = []
        self.accounts = Accounts()
        self.failures = 0
        self.last_error = ""  # the last failed call: status code and gRPC's details
        self._unreachable = False  # the last failure was UNAVAILABLE
        self._inflight: list[Segment] = []  # the batch the sender is sending
        self._abandoned = False  # stop() timed out waiting for the sender, and counted what it held
        self._sync_checked = 0  # the sync fallback: the channel generation whose connection was checked
        self._next_summary = time.monotonic() + DROP_SUMMARY
        self._limit_log = RateLimitedLog(60.0)
        self._limits_logged = (0, 0, 0)
        self._error_log = RateLimitedLog(30.0)
        self._reject_log = RateLimitedLog(30.0)

    # -- application side -----------------------------------------------------------------------

    @property
    def sent(self) -> int:
        return self.accounts.delivered

    @property
    def dropped(self) -> dict[str, int]:
        return self.accounts.by_reason()

    def report(self, segment: Segment) -> bool:
        self.accounts.created.incr()
        if not self._demanded:
            self._demanded = True
            self.session.demand()
        if self._write_ahead:
            segment.spool_seq = self.spool.append(segment)  # type: ignore[union-attr]
        queue = self._queue
        if len(queue) >= self.max_queue:
            self._drop(1, Drop.QUEUE_FULL, (segment,))
            return False
        queue.append(segment)
        if not self._wake.is_set():
            self._wake.set()
        elif len(queue) >= FILL and not self._hurry.is_set():
            self._hurry.set()
        return True

    def _drop(self, n: int, why: Drop, segments: Any = ()) -> None:
        if self.spool is not None and segments:
            self.spool.done([s.spool_seq for s in segments])
        self.accounts.drop(n, why)

    def stats(self) -> dict[str, Any]:
        from skywalking.trace.tracer import TRACER

        spool = self.spool
        books = self.accounts.snapshot()
        return {**books, "queued": len(self._queue), "held": len(self._held), "sent": books["delivered"],
                "spooled": spool.pending() if spool else 0, "recovered": spool.recovered if spool else 0,
                "failures": self.failures, "last_error": self.last_error, "backend": self.conn.target,
                "sw6_headers_skipped": TRACER.sw6_skipped, "spans_over_limit": TRACER.spans_over_limit,
                "calls_over_cap": TRACER.calls_over_cap, "spans_after_segment": TRACER.spans_after_segment,
                **self.session.stats()}

    # -- identities ---------------------------------------------------------------------------------

    def set_identity(self, identity: Identity, eager: bool) -> None:
        self._demanded = eager
        self.session.set_own(identity, eager)

    def wake_manager(self) -> None:
        self._manage_wake.set()

    def attach_spool(self, spool: Spool, write_ahead: bool = True) -> None:
        """Deliver what dead processes left in ``spool``'s directory and, with ``write_ahead``, write this
        process's segments ahead to it from now on."""
        self.spool = spool
        self._write_ahead = write_ahead
        self._next_scan = 0.0
        self._manage_wake.set()

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        for name, target in (("SkyWalkingSender", self._send_loop), ("SkyWalkingManager", self._manage_loop)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        try:
            if self.spool is not None:  # e.g. a driver after ray.shutdown(): the workers Ray killed left these
                self.spool.recover(self.report)
            self._stop_deadline = time.monotonic() + timeout
            self._stopping.set()
            self._wake.set()
            self._hurry.set()
            self._manage_wake.set()
            for thread in self._threads:
                thread.join(max(0.0, self._stop_deadline - time.monotonic()))
            self._abandoned = True
            stuck = list(self._inflight) if self._threads and self._threads[0].is_alive() else []
            spool = self.spool
            why = f" (last error: {self.last_error})" if self.last_error else ""
            if spool is not None:
                kept = spool.pending()
                spool.close(delivered_everything=kept == 0)
                self.accounts.kept = len(self._queue) + len(self._held) + len(stuck)
                if kept:
                    logger.info("%d segment(s) not sent before stop stay in %s for the next agent on this node%s",
                                kept, spool.path, why)
            else:
                if stuck:
                    logger.warning("%d segment(s) not sent before stop: the backend %s had not answered the call "
                                   "carrying them within %.0f s%s", len(stuck), self.conn.target, timeout, why)
                    self._drop(len(stuck), Drop.STOPPED_UNANSWERED)
                if self._queue:
                    logger.warning("%d segment(s) not sent before stop: the backend %s did not take them within "
                                   "%.0f s%s", len(self._queue), self.conn.target, timeout, why)
                    self._drop(len(self._queue), Drop.STOPPED)
                if self._held:
                    logger.warning("%d segment(s) not sent before stop: the OAP at %s issued no id for the instance "
                                   "they name within %.0f s%s", len(self._held), self.conn.target, timeout, why)
                    self._drop(len(self._held), Drop.STOPPED_UNREGISTERED)
            self._queue.clear()
            self._held.clear()
            self.accounts.summary()
            self.conn.close()
        except Exception:
            logger.exception("reporter failed to stop cleanly")

    # -- threads --------------------------------------------------------------------------------

    def _manage_loop(self) -> None:
        backoff, probe = Backoff(), Backoff(cap=PROBE_CAP)
        with suppress_tracing():
            while not self._stopping.is_set() or self._awaiting_ids():
                self._scan_spools()
                self._log_limits()
                if time.monotonic() >= self._next_summary:
                    self._next_summary = time.monotonic() + DROP_SUMMARY
                    self.accounts.summary()
                channel, generation = self.conn.channel()
                try:
                    delay = self.session.manage(channel, generation)
                    delay = min(delay, LIMITS_CHECK, max(0.0, self._next_summary - time.monotonic()))
                    if self.spool is not None:
                        delay = min(delay, max(0.0, self._next_scan - time.monotonic()))
                    backoff.reset()
                    probe.reset()
                except grpc.RpcError as e:
                    delay = (probe if self._failed(generation, e) else backoff).next()
                except Exception:
                    logger.exception("reporter control loop failed")
                    delay = backoff.next()
                self._manage_wake.wait(delay)
                self._manage_wake.clear()

    def _log_limits(self) -> None:
        """Spans the tracing core did not record because of a limit: counted there, logged here (off the hot
        path), at most once a minute."""
        from skywalking.trace.context import SPAN_LIMIT_PER_SEGMENT
        from skywalking.trace.tracer import TRACER

        now = (TRACER.spans_over_limit, TRACER.calls_over_cap, TRACER.spans_after_segment)
        if now != self._limits_logged and self._limit_log.log(
                time.monotonic(), "not traced so far: %d span(s) past the %d-span segment limit, %d call(s) past "
                "agent_trace_max_calls_per_span=%d, %d span(s) finished after their segment was reported",
                now[0], SPAN_LIMIT_PER_SEGMENT, now[1], config.agent_trace_max_calls_per_span, now[2]):
            self._limits_logged = now

    def _scan_spools(self) -> None:
        spool = self.spool
        if spool is None or self._stopping.is_set() or time.monotonic() < self._next_scan:
            return
        self._next_scan = time.monotonic() + SPOOL_SCAN
        spool.recover(self.report)

    def _awaiting_ids(self) -> bool:
        """Stopping with segments that wait for ids: registration goes on until the stop deadline."""
        return bool(self._held or self._queue) and self.session.registering() \
            and time.monotonic() < self._stop_deadline

    def _send_loop(self) -> None:
        try:
            self._send_batches()
        finally:
            if self._h2 is not None:
                self._h2.close()

    def _send_batches(self) -> None:
        backoff, probe = Backoff(), Backoff(cap=PROBE_CAP)
        with suppress_tracing():
            while True:
                self._inflight = []
                stopping = self._stopping.is_set()
                self._release_held()
                if not self._queue:
                    if stopping:
                        if self._awaiting_ids():
                            time.sleep(HELD_POLL)  # ids may still come in time
                            continue
                        return
                    self._wake.clear()
                    if not self._queue and self._wake.wait(IDLE_WAIT) and not self._stopping.is_set():
                        self._linger()
                    continue
                batch = [self._queue.popleft() for _ in range(min(BATCH, len(self._queue)))]
                self._inflight = batch
                timeout = STREAM_TIMEOUT
                if stopping:
                    timeout = self._stop_deadline - time.monotonic()
                    if timeout <= 0:
                        self._queue.extendleft(reversed(batch))
                        return
                try:
                    sent = self._send(batch, timeout)
                    if self._abandoned:  # stop() gave up waiting and counted this batch
                        return
                    self._inflight = []
                except RuntimeError:
                    if not interpreter_exiting():
                        raise
                    # CPython 3.12.0/3.12.1 refuse new threads once exit began; grpc needs one per stream
                    self._drop(len(batch) + len(self._queue), Drop.INTERPRETER_EXITING,
                               [*batch, *self._queue] if self.spool is None else ())  # a spool keeps them
                    self._queue.clear()
                    return
                except Exception:
                    logger.exception("sending a batch failed")
                    sent = False
                if sent is None:  # the backend forgot the ids it issued: the batch waits for new ones
                    self._requeue(batch)
                    continue
                if sent:
                    backoff.reset()
                    probe.reset()
                    if len(self._queue) < BATCH and not self._stopping.is_set():
                        # no full batch waiting: let one build up rather than open a stream (and grpc a
                        # thread) for the few segments that arrived during the send
                        self._linger()
                    continue
                self._requeue(batch)
                if stopping:
                    return
                self._stopping.wait((probe if self._unreachable else backoff).next())

    def _linger(self) -> None:
        """Let a batch build up: ``linger`` seconds, less once FILL segments wait or stop() is called."""
        if len(self._queue) < FILL:
            self._hurry.wait(self.linger)
        if not self._stopping.is_set():
            self._hurry.clear()

    def _release_held(self) -> None:
        """Segments that waited for ids go back to the front of the queue once new ids arrived."""
        version = self.session.ids_version
        if version != self._held_version:
            self._held_version = version
            if self._held:
                held, self._held = self._held, deque()
                self._queue.extendleft(reversed(held))

    def _hold(self, segment: Segment) -> None:
        self._held.append(segment)
        if len(self._held) > self.max_queue:
            self._drop(1, Drop.HELD_FULL, (self._held.popleft(),))

    def _send(self, batch: list[Segment], timeout: float) -> bool | None:
        """Encode and send ``batch``; on return it holds only the segments that were encoded (the ones to
        retry if the send failed). None: not sent, the backend no longer knows the ids they name."""
        messages = []
        sent_batch = []
        for segment in batch:
            try:
                messages.append(self.session.encode(segment))
                sent_batch.append(segment)
            except Unresolved as e:
                self.session.want(e.identities)
                self._hold(segment)
            except ValueError as e:
                self._reject_log.log(time.monotonic(), "a segment the backend would not accept is not sent: %s", e)
                self._drop(1, Drop.NOT_ACCEPTED, (segment,))
            except Exception:
                logger.exception("failed to encode a segment")
                self._drop(1, Drop.ENCODE_FAILED, (segment,))
        batch[:] = sent_batch
        if not messages:
            return True
        channel, generation = self.conn.channel()
        try:
            if self._h2_ok:
                try:
                    self._send_h2(messages, timeout)
                except (grpc.RpcError, Forgotten):
                    raise
                except Exception:
                    self._h2_ok = False
                    logger.warning("the h2 transport failed unexpectedly; sending with the gRPC API from now on",
                                   exc_info=True)
            if not self._h2_ok:
                self._check_sync(channel, generation, timeout)
                collect = channel.stream_unary(self.session.collect_path, request_serializer=_passthrough,
                                               response_deserializer=self.session.response.FromString)
                collect(iter(messages), timeout=timeout, metadata=metadata())
        except Forgotten:
            return None
        except grpc.RpcError as e:
            self._failed(generation, e)
            return False
        if self._abandoned:
            return True
        self.accounts.delivered += len(messages)
        self.session.sent(sent_batch)
        if self.spool is not None:
            self.spool.done([s.spool_seq for s in sent_batch])
        return True

    def _send_h2(self, messages: list[bytes], timeout: float) -> None:
        """One ``collect`` call carrying ``messages`` over our HTTP/2 connection to the current backend. A new
        connection (the backend may have restarted and forgotten the ids the batch names) is checked first, over
        the same connection; the call never opens another one behind the check's back."""
        h2c = self._h2
        if h2c is None or h2c.target != self.conn.target:
            from skywalking.reporter.h2stream import H2Channel  # on the sender thread, when there is something to send

            if h2c is not None:
                h2c.close()
            h2c = self._h2 = H2Channel(self.conn.target, self.conn.tls)
        if h2c.open(min(timeout, UNARY_TIMEOUT)):
            check = self.session.check()
            if check is not None:
                answer = h2c.call(check.path, [check.request], min(timeout, UNARY_TIMEOUT), metadata())
                if not check.accept(check.response_type.FromString(answer)):
                    raise Forgotten()
        h2c.call(self.session.collect_path, messages, timeout, metadata())

    def _check_sync(self, channel: grpc.Channel, generation: int, timeout: float) -> None:
        """The sync fallback's connection check: once per channel (a failure makes a new one)."""
        if self._sync_checked == generation:
            return
        check = self.session.check()
        if check is not None:
            answer = channel.unary_unary(check.path, request_serializer=_passthrough,
                                         response_deserializer=check.response_type.FromString)(
                check.request, timeout=min(timeout, UNARY_TIMEOUT), metadata=metadata())
            if not check.accept(answer):
                raise Forgotten()
        self._sync_checked = generation

    def _requeue(self, batch: list[Segment]) -> None:
        self._queue.extendleft(reversed(batch))
        excess = len(self._queue) - self.max_queue
        if excess > 0:
            self._drop(excess, Drop.QUEUE_FULL_UNREACHABLE,
                       [self._queue.popleft() for _ in range(excess)])

    def _failed(self, generation: int, error: grpc.RpcError) -> bool:
        """Count and log a failed call; True if the backend is unreachable (UNAVAILABLE: refused, unresolvable,
        reset, TLS), which is probed again within PROBE_CAP, not after the growing backoff of an answering one."""
        self.failures += 1
        code = error.code() if hasattr(error, "code") else None
        details = error.details() if hasattr(error, "details") else ""
        self.last_error = f"{getattr(code, 'name', error)}: {details}" if details else str(getattr(code, "name", error))
        self._error_log.log(time.monotonic(), "backend %s: %s; retrying", self.conn.target, self.last_error)
        self.conn.failed(generation)
        self._unreachable = code is grpc.StatusCode.UNAVAILABLE
        return self._unreachable


def create(on_change: Callable[[Reporter, Identity, int], None],
           on_reset: Callable[[Reporter], None]) -> GrpcReporter:
    """The reporter for the configured protocol version, with that version's session (the only place the
    reporter names a protocol module). ``on_change``/``on_reset``: v6 ids issued / forgotten."""
    backends = [b.strip() for b in config.agent_collector_backend_services.split(",") if b.strip()]
    holder: list[GrpcReporter] = []

    def changed(identity: Identity, instance_id: int) -> None:
        holder[0]._wake.set()  # held segments may now be encoded
        on_change(holder[0], identity, instance_id)

    def reset() -> None:
        on_reset(holder[0])

    def wake() -> None:
        holder[0].wake_manager()

    session: Session
    if config.agent_protocol_version == "v6":
        from skywalking.protocol_v6.session import V6Session

        session = V6Session(changed, reset, wake)
    else:
        from skywalking.protocol_v8.session import V8Session

        session = V8Session()
    reporter = GrpcReporter(session, config.agent_trace_reporter_max_buffer_size, backends, config.agent_force_tls)
    holder.append(reporter)
    return reporter
