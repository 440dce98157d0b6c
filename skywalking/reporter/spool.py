"""A node-local write-ahead spool: finished segments survive the process being killed (SIGKILL).

Ray force-kills workers (at ``ray.shutdown()``, on scale-down, on replica restarts) without running any exit
handler, so whatever the reporter had not sent yet would be lost. With a spool, ``report()`` also appends the
segment, in plain data, to a file of its own process in a node-local directory (one ``write`` call: the page
cache keeps it when the process dies; only a machine crash loses it). The reporter marks segments done once
sent (or deliberately dropped, which it counts); a header field holds the contiguous watermark.

Each process holds an exclusive ``flock`` on its file for as long as it lives; the kernel releases it when the
process dies, however it dies. Any other agent process on the node using the same directory periodically
looks for files it can lock: their owner is gone, so it reads the records past the watermark, reports them as
its own (they keep the identity of the process that made them, which is registered on its behalf) and removes
the file. A clean stop removes its own file when everything was delivered, and leaves it otherwise: what the
stop could not send is delivered by the next agent instead of being dropped.

File: ``MAGIC`` (with the Python version: ``marshal`` is version specific), the 8-byte watermark, then records
``<u32 length><marshal data>``.
"""

from __future__ import annotations

import fcntl
import glob
import itertools
import marshal
import os
import secrets
import struct
import sys
import threading
from collections.abc import Callable
from typing import Any

from skywalking import Component, Kind, Layer, Log, LogItem
from skywalking.loggings import logger
from skywalking.trace.ids import ID
from skywalking.trace.segment import Segment, SegmentRef
from skywalking.trace.span import Span
from skywalking.trace.tags import Tag

MAGIC = f"SWSPOOL1 py{sys.version_info[0]}.{sys.version_info[1]}\n".encode().ljust(24, b" ")
WATERMARK = len(MAGIC)  # offset of the 8-byte watermark
HEADER = WATERMARK + 8
_LEN = struct.Struct("<I")
_U64 = struct.Struct("<Q")
MAX_RECORD = 16 << 20  # a longer length field means a torn or corrupt record: stop reading there
SUFFIX = ".spool"


class _RestoredTag(Tag):
    __slots__ = ("key",)

    def __init__(self, key: str, val: str) -> None:
        self.key = key
        self.val = val


def _id(i: ID) -> tuple[str, Any]:
    return i.value, i.parts


def _ref(r: SegmentRef) -> tuple[Any, ...]:
    return (r.ref_type, _id(r.trace_id), _id(r.segment_id), r.span_id, r.service, r.service_instance, r.endpoint,
            r.endpoint_id, r.client_address, r.peer_id, r.parent_instance, r.entry_instance, r.entry_endpoint,
            r.entry_endpoint_id)


def _span(s: Span) -> tuple[Any, ...]:
    return (s.sid, s.pid, s.op, s.peer, s.kind.value, s.component.value, s.layer.value, s.start_time, s.end_time,
            s.error_occurred, [(t.key, t.val) for t in s.tags], [(g.timestamp, [tuple(i) for i in g.items])
                                                                  for g in s.logs],
            [_ref(r) for r in s.refs])


def dump(segment: Segment, seq: int) -> bytes:
    """The segment as plain data (``marshal``), with its sequence number."""
    return marshal.dumps((seq, _id(segment.segment_id), [_id(t) for t in segment.related_traces], segment.timestamp,
                          segment.identity, segment.is_size_limited, [_span(s) for s in segment.spans]))


def load(data: bytes) -> tuple[int, Segment]:
    """(sequence number, segment) from ``dump``; raises ValueError (or TypeError) for anything else."""
    seq, seg_id, traces, timestamp, identity, limited, spans = marshal.loads(data)
    segment = Segment(ID(*seg_id), ID(*traces[0]), timestamp, identity)
    segment.related_traces = [ID(*t) for t in traces]
    segment.is_size_limited = limited
    for sid, pid, op, peer, kind, component, layer, start, end, error, tags, logs, refs in spans:
        span = Span(None, sid, pid, op, peer, Kind(kind), Component(component), Layer(layer))  # type: ignore[arg-type]
        span.start_time, span.end_time = start, end
        if error:
            span.error_occurred = True
        if tags:
            span.tags = [_RestoredTag(k, v) for k, v in tags]
        if logs:
            span.logs = [Log(ts, [LogItem(k, v) for k, v in items]) for ts, items in logs]
        if refs:
            span.refs = [_load_ref(r) for r in refs]
        segment.spans.append(span)
    return seq, segment


def _load_ref(r: tuple[Any, ...]) -> SegmentRef:
    (ref_type, trace, seg, span_id, service, instance, endpoint, endpoint_id, address, peer_id, parent, entry,
     entry_endpoint, entry_endpoint_id) = r
    ref = SegmentRef(ref_type, ID(*trace), ID(*seg), span_id)
    ref.service, ref.service_instance, ref.endpoint, ref.endpoint_id = service, instance, endpoint, endpoint_id
    ref.client_address, ref.peer_id, ref.parent_instance, ref.entry_instance = address, peer_id, parent, entry
    ref.entry_endpoint, ref.entry_endpoint_id = entry_endpoint, entry_endpoint_id
    return ref


class Spool:
    """This process's spool file in ``directory``; see the module docstring."""

    def __init__(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)
        self.directory = directory
        self.path = os.path.join(directory, f"{os.getpid()}-{secrets.token_hex(4)}{SUFFIX}")
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, MAGIC + _U64.pack(0))
        self._fd = fd
        self._seq = itertools.count(1)
        self.written = 0  # last sequence number handed out
        self._lock = threading.Lock()  # done() only (the sender and stop); append() needs none
        self._watermark = 0
        self._done: set[int] = set()
        self.recovered = 0
        self.failed = False
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        """A forked child gets its own spool from its own agent; the parent's file stays the parent's."""
        try:
            os.close(self._fd)
        except OSError:
            pass
        self._fd = -1

    # -- application side --------------------------------------------------------------------------

    def append(self, segment: Segment) -> int:
        """Write the segment ahead; its sequence number (0 if it could not be written). Never raises."""
        seq = self.written = next(self._seq)
        try:
            data = dump(segment, seq)
            os.write(self._fd, _LEN.pack(len(data)) + data)
            return seq
        except Exception:
            self.done([seq])  # nothing on disk: the watermark must not wait for it
            if not self.failed:
                self.failed = True
                logger.warning("cannot write the segment spool %s; segments are kept in memory only", self.path,
                               exc_info=True)
            return 0

    # -- reporter side -----------------------------------------------------------------------------

    def done(self, seqs: list[int]) -> None:
        """These segments were delivered (or dropped on purpose): advance the watermark past them."""
        with self._lock:
            self._done.update(s for s in seqs if s > self._watermark)
            mark = self._watermark
            while mark + 1 in self._done:
                mark += 1
                self._done.discard(mark)
            if mark == self._watermark:
                return
            self._watermark = mark
        try:
            os.pwrite(self._fd, _U64.pack(mark), WATERMARK)
        except OSError:
            logger.debug("cannot update the spool watermark", exc_info=True)

    def pending(self) -> int:
        """Segments written and not done."""
        with self._lock:
            return max(0, self.written - self._watermark - len(self._done))

    def close(self, delivered_everything: bool) -> None:
        """Release the file: removed if everything was delivered, else left for the next agent on the node."""
        if self._fd < 0:
            return
        try:
            if delivered_everything:
                os.unlink(self.path)
            os.close(self._fd)
        except OSError:
            logger.debug("closing the spool failed", exc_info=True)
        self._fd = -1

    def recover(self, report: Callable[[Segment], Any]) -> int:
        """Report the undelivered segments of dead processes' spools; returns how many. Never raises."""
        found = 0
        for path in glob.glob(os.path.join(self.directory, "*" + SUFFIX)):
            if path != self.path:
                try:
                    found += self._recover_file(path, report)
                except Exception:
                    logger.debug("cannot recover the spool %s", path, exc_info=True)
        self.recovered += found
        if found:
            logger.info("delivering %d segment(s) left by processes that died on this node", found)
        return found

    @staticmethod
    def _recover_file(path: str, report: Callable[[Segment], Any]) -> int:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return 0
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0  # its process is alive
            try:
                if os.fstat(fd).st_ino != os.stat(path).st_ino:
                    return 0
            except FileNotFoundError:
                return 0  # another agent recovered it first
            with os.fdopen(os.dup(fd), "rb") as f:
                data = f.read()
            count = 0
            if data[:WATERMARK] == MAGIC and len(data) >= HEADER:
                mark = _U64.unpack_from(data, WATERMARK)[0]
                pos = HEADER
                while pos + _LEN.size <= len(data):
                    (size,) = _LEN.unpack_from(data, pos)
                    if size > MAX_RECORD or pos + _LEN.size + size > len(data):
                        break  # torn at the end (killed while writing)
                    try:
                        seq, segment = load(data[pos + _LEN.size:pos + _LEN.size + size])
                    except (ValueError, TypeError, EOFError):
                        break
                    pos += _LEN.size + size
                    if seq > mark:
                        report(segment)
                        count += 1
            os.unlink(path)  # under the lock, after its segments are in this process's own spool
            return count
        finally:
            os.close(fd)
