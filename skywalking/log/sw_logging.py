"""The log reporter for the standard library's ``logging`` (and loguru, through ``sw_loguru``): every record a
logger handles at or above ``agent_log_reporter_level`` is also handed to the log feed (the agent's own
``skywalking*`` loggers excepted).

``install()`` patches ``logging.Logger.callHandlers``, which a logger calls only for records that passed its level,
``disabled`` flag and filters, once per record. With ``agent_log_reporter_ignore_filter`` it patches
``Logger.handle`` instead, so that records a filter rejects are reported too. ``uninstall()`` restores the original.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from skywalking import config
from skywalking.log.entry import capture

if TYPE_CHECKING:
    from skywalking.reporter.data import Feed

_patched: tuple[str, Callable[..., Any]] | None = None  # (the Logger method replaced, its original)
_feed: Feed | None = None
_level = logging.WARNING


def _own(name: str) -> bool:
    return name == "skywalking" or name.startswith("skywalking.")


def _agent_thread() -> bool:
    """Records logged on the agent's own threads (``SkyWalking*``: gRPC's or a library's lines about the agent's
    calls) are not reported: a failing backend must not feed the queue that waits for it."""
    return threading.current_thread().name.startswith("SkyWalking")


def _reporting(level: int, name: str) -> Feed | None:
    """The feed a record of ``level`` from logger ``name`` goes to; None when it is not reported."""
    feed = _feed
    if feed is None or level < _level or _own(name) or _agent_thread():
        return None
    return feed


def _offer(logger: logging.Logger, record: logging.LogRecord) -> None:
    feed = _reporting(record.levelno, logger.name)
    if feed is None:
        return
    try:
        feed.offer(capture(record))
    except Exception:  # a record whose message cannot be rendered: logging itself reports that to stderr
        pass


def offer_loguru(record: dict[str, Any]) -> None:
    """A loguru record (``sw_loguru`` calls this for each one, in the thread that logs): reported as a ``logging``
    record of the same level, logger name (the module), message, place, thread and exception."""
    level = record["level"]
    feed = _reporting(level.no, record["name"] or "")
    if feed is None:
        return
    try:
        exc = record["exception"]
        rec = logging.LogRecord(record["name"] or "loguru", level.no, record["file"].path, record["line"],
                                record["message"], None, tuple(exc) if exc else None, record["function"])
        rec.created = record["time"].timestamp()
        rec.levelname = level.name
        rec.threadName = record["thread"].name
        feed.offer(capture(rec))
    except Exception:  # never into the application
        pass


def _call_handlers(original: Callable[..., Any]) -> Callable[..., Any]:
    def callHandlers(self: logging.Logger, record: logging.LogRecord) -> None:
        original(self, record)
        _offer(self, record)

    return callHandlers


def _handle(original: Callable[..., Any]) -> Callable[..., Any]:
    def handle(self: logging.Logger, record: logging.LogRecord) -> Any:
        result = original(self, record)
        if not self.disabled:
            _offer(self, record)
        return result

    return handle


def level_of(name: str) -> int:
    """``agent_log_reporter_level``'s number (``WARNING`` -> 30; a number given as text is taken as is)."""
    text = str(name).strip().upper()
    if text.isdigit():
        return int(text)
    level = logging.getLevelName(text)
    return level if isinstance(level, int) else logging.WARNING


def install(feed: Feed | None = None) -> None:
    """Report log records to ``feed`` (the agent passes its log feed; without one nothing is reported until
    the agent starts one). Idempotent: a second call only changes the feed."""
    global _patched, _feed, _level
    _level = level_of(config.agent_log_reporter_level)
    if feed is not None:
        _feed = feed
    method = "handle" if config.agent_log_reporter_ignore_filter else "callHandlers"
    if _patched is not None and _patched[0] == method:
        return
    uninstall(keep_feed=True)
    original = getattr(logging.Logger, method)
    setattr(logging.Logger, method, (_handle if method == "handle" else _call_handlers)(original))
    _patched = (method, original)


def uninstall(keep_feed: bool = False) -> None:
    """Restore ``logging.Logger``'s method; nothing is reported afterwards."""
    global _patched, _feed
    if _patched is not None:
        method, original = _patched
        setattr(logging.Logger, method, original)
        _patched = None
    if not keep_feed:
        _feed = None


def installed() -> bool:
    return _patched is not None
