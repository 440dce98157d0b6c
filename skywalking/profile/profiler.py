"""The profiler thread: polls the backend for profile tasks, runs them, samples the threads serving a task's endpoint.

* The tracing core calls ``Profiler.__call__`` with the first span of every new segment when it is an entry span
  (``TRACER.profiler``; None while no profiler runs, so the core pays one attribute read per segment). While a
  task is active and the span's operation is the task's endpoint, the calling thread is profiled, up to
  ``agent_profile_max_parallel`` requests at a time.
* Every ``dump_period_ms`` the thread reads the stacks of the profiled threads (``sys._current_frames()``) of
  requests that have run at least ``min_duration_ms``, and hands one ``Snapshot`` per request to the snapshot
  feed, at most ``max_sampling_count`` per request. A request is no longer profiled once its entry span ends.
* Without an active task it sleeps until the next poll (``agent_collector_get_profile_task_interval``) or the
  next task's start. A task ends after its duration (or at the agent's stop), and the backend is told.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from skywalking.loggings import logger
from skywalking.profile.task import ProfileTask, parse_task
from skywalking.trace.context import suppress_tracing

if TYPE_CHECKING:
    from types import FrameType

    from skywalking.trace.span import Span

SEEN_SERIALS = 64  # serial numbers of tasks already taken (the backend sends a task until its time has passed)


class Snapshot(NamedTuple):
    task_id: str
    segment_id: str
    time_ms: int
    sequence: int
    stack: list[str]  # code signatures, innermost frame first


class _Request:
    """A profiled request: its entry span and the thread serving it."""

    __slots__ = ("count", "ident", "sequence", "span", "started")

    def __init__(self, span: Span, ident: int) -> None:
        self.span = span
        self.ident = ident
        self.started = time.monotonic()
        self.sequence = 0
        self.count = 0


def signatures(frame: FrameType | None, max_depth: int) -> list[str]:
    """``<file>.<function>: <line>`` of each frame from ``frame`` outwards, at most ``max_depth``."""
    out: list[str] = []
    while frame is not None and len(out) < max_depth:
        code = frame.f_code
        out.append(f"{code.co_filename}.{code.co_name}: {frame.f_lineno}")
        frame = frame.f_back
    return out


class Profiler:
    def __init__(self, fetch: Callable[[int], list[dict[str, str]]], finish: Callable[[str], None],
                 offer: Callable[[Snapshot], bool], poll_interval: float, max_parallel: int, max_depth: int) -> None:
        """``fetch(last_command_time_ms)``: the arguments of each ``ProfileTaskQuery`` command the backend has;
        ``finish(task_id)``: tell it a task ended here; ``offer``: the snapshot feed."""
        self.fetch, self.finish, self.offer = fetch, finish, offer
        self.poll_interval = max(0.2, poll_interval)
        self.max_parallel = max(1, max_parallel)
        self.max_depth = max(1, max_depth)
        self.active: ProfileTask | None = None
        self.scheduled: list[ProfileTask] = []
        self.requests: list[_Request] = []
        self.last_command_ms = 0
        self._seen: deque[str] = deque(maxlen=SEEN_SERIALS)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.counts = {"tasks": 0, "refused": 0, "finished": 0, "requests": 0, "snapshots": 0, "dropped": 0}

    # -- the tracing core's hook (the first span of a segment, an entry span) -------------------------

    def __call__(self, span: Span) -> None:
        task = self.active
        if task is None or span.op != task.endpoint or len(self.requests) >= self.max_parallel:
            return
        self.requests.append(_Request(span, threading.get_ident()))  # list.append: atomic under the GIL
        self.counts["requests"] += 1

    # -- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="SkyWalkingProfiler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5.0)
        if self.active is not None:
            self._end(self.active)

    def stats(self) -> dict[str, Any]:
        return {**self.counts, "active_task": self.active.task_id if self.active else None,
                "scheduled": len(self.scheduled), "profiling": len(self.requests)}

    # -- the thread -----------------------------------------------------------------------------------

    def _loop(self) -> None:
        next_poll = 0.0
        with suppress_tracing():
            while not self._stop.is_set():
                now = time.monotonic()
                if now >= next_poll:
                    self._poll()
                    next_poll = time.monotonic() + self.poll_interval
                self._advance()
                task = self.active
                if task is not None:
                    self._sample(task)
                    wait = task.dump_period_ms / 1000.0
                else:
                    wait = next_poll - time.monotonic()
                    if self.scheduled:
                        wait = min(wait, self.scheduled[0].start_ms / 1000.0 - time.time())
                self._wake.wait(max(0.0, wait))
                self._wake.clear()

    def _poll(self) -> None:
        try:
            commands = self.fetch(self.last_command_ms)
        except Exception as exc:  # the backend is down or has no profiling: the next poll tries again
            logger.debug("profile task poll failed: %s", exc)
            return
        for args in commands:
            serial = args.get("SerialNumber", "")
            if serial and serial in self._seen:
                continue
            self._seen.append(serial)
            try:
                task = parse_task(args)
            except ValueError as exc:
                self.counts["refused"] += 1
                logger.warning("profile task refused: %s", exc)
                continue
            self.last_command_ms = max(self.last_command_ms, task.create_ms)
            if any(t.start_ms < task.end_ms and task.start_ms < t.end_ms
                   for t in [*self.scheduled, *([self.active] if self.active else [])]):
                self.counts["refused"] += 1
                logger.warning("profile task %s refused: it overlaps a task already taken", task.task_id)
                continue
            self.counts["tasks"] += 1
            self.scheduled.append(task)
            self.scheduled.sort(key=lambda t: t.start_ms)
            logger.info("profile task %s taken: endpoint %r, %d min from %d", task.task_id, task.endpoint,
                        task.duration_min, task.start_ms)

    def _advance(self) -> None:
        now_ms = time.time() * 1000
        if self.active is not None and now_ms >= self.active.end_ms:
            self._end(self.active)
        if self.active is None and self.scheduled and now_ms >= self.scheduled[0].start_ms:
            self.active = self.scheduled.pop(0)

    def _end(self, task: ProfileTask) -> None:
        self.active = None
        self.requests = []
        try:
            self.finish(task.task_id)
            self.counts["finished"] += 1
        except Exception as exc:
            logger.warning("could not report the end of profile task %s: %s", task.task_id, exc)

    def _sample(self, task: ProfileTask) -> None:
        requests = self.requests
        if not requests:
            return
        frames = sys._current_frames()
        now = time.monotonic()
        for req in list(requests):
            if req.span._done or req.count >= task.max_sampling_count:
                requests.remove(req)  # in place: the core may be appending a new request meanwhile
                continue
            if (now - req.started) * 1000 < task.min_duration_ms:
                continue
            segment = req.span.context.current_segment
            frame = frames.get(req.ident)
            if segment is None or frame is None:
                continue
            snapshot = Snapshot(task.task_id, segment.segment_id.value, int(time.time() * 1000), req.sequence,
                                signatures(frame, self.max_depth))
            req.sequence += 1
            req.count += 1
            if self.offer(snapshot):
                self.counts["snapshots"] += 1
            else:
                self.counts["dropped"] += 1
