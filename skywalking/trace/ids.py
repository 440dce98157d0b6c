"""Trace and segment ids.

sw6 ids are three int64 parts ``[process token, thread_no, epoch_ms * 10000 + seq]``; their text form
joins the parts with ``.``. The Java 6.6.0 agent puts its OAP instance id first; the OAP never reads that
part (it only needs three parts, and samples on the third), so a random per-process token takes its place
and ids can be made before the OAP has answered. sw8 ids are strings of the same shape whose first part is
a per-process random hex prefix. No uuid is generated per segment.
"""

from __future__ import annotations

import itertools
import os
import secrets
import threading
import time
import uuid

_seq = itertools.count()  # next() on a C counter is atomic under the GIL: no lock needed
_PROCESS_PREFIX = uuid.uuid4().hex
_token = secrets.randbits(62) + 1  # first part of every sw6 id made by this process: positive int64
_get_ident = threading.get_ident
_INT64 = 1 << 63


class ID:
    """A trace or segment id: its text form, plus its three int64 parts for sw6 ids."""

    __slots__ = ("parts", "value")

    def __init__(self, value: str | None = None, parts: tuple[int, int, int] | None = None) -> None:
        self.parts = parts
        self.value = value if value is not None else (f"{parts[0]}.{parts[1]}.{parts[2]}" if parts else "")

    def __str__(self) -> str:
        return self.value

    def __repr__(self) -> str:
        return f"ID({self.value!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ID) and other.value == self.value

    def __hash__(self) -> int:
        return hash(self.value)


def parse_parts(text: str) -> tuple[int, int, int] | None:
    """``'a.b.c'`` with three decimal int64 parts → the parts; anything else → None."""
    pieces = text.split(".")
    if len(pieces) != 3:
        return None
    try:
        parts = (int(pieces[0]), int(pieces[1]), int(pieces[2]))
    except ValueError:
        return None
    for p in parts:
        if not -_INT64 <= p < _INT64 or p != p:
            return None
    if any(not s.lstrip("-").isdigit() for s in pieces):  # int() also takes '+1', ' 1', '1_0'
        return None
    return parts


_thread_nos: dict[int, tuple[int, str]] = {}  # ident -> (native thread id, text prefix "token.thread.")


def _thread_prefix() -> tuple[int, str]:
    ident = threading.get_ident()
    entry = _thread_nos.get(ident)
    if entry is None:
        if len(_thread_nos) > 4096:  # threads come and go; idents are reused
            _thread_nos.clear()
        no = threading.get_native_id()
        entry = _thread_nos[ident] = (no, f"{_token}.{no}.")
    return entry


def new_sw6_id(ms: int | None = None) -> ID:
    """A fresh 3-part id."""
    if ms is None:
        ms = time.time_ns() // 1_000_000
    entry = _thread_nos.get(_get_ident()) or _thread_prefix()
    p3 = ms * 10000 + next(_seq) % 10000
    return ID(entry[1] + str(p3), (_token, entry[0], p3))


def new_sw8_id(ms: int | None = None) -> ID:
    """A fresh string id ``<process hex>.<thread>.<ms*10000+seq>``."""
    if ms is None:
        ms = time.time_ns() // 1_000_000
    return ID(f"{_PROCESS_PREFIX}.{_thread_prefix()[0]}.{ms * 10000 + next(_seq) % 10000}")


def _after_fork() -> None:
    """A forked child makes ids of its own (its threads may reuse the parent's native ids)."""
    global _token, _PROCESS_PREFIX
    _token = secrets.randbits(62) + 1
    _PROCESS_PREFIX = uuid.uuid4().hex
    _thread_nos.clear()


os.register_at_fork(after_in_child=_after_fork)
