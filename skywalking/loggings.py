"""The agent's own logger: named ``skywalking``, its own stderr handler, never propagated."""

from __future__ import annotations

import logging

OFF = logging.CRITICAL + 10
logging.addLevelName(OFF, "OFF")

logger = logging.getLogger("skywalking")
logger.propagate = False
if not logger.handlers:
    _handler = logging.StreamHandler()
    _handler.setFormatter(logging.Formatter("%(asctime)s %(name)s [pid:%(process)d] [%(levelname)s] %(message)s"))
    logger.addHandler(_handler)
logger.setLevel(logging.INFO)


def getLogger(name: str | None = None) -> logging.Logger:
    """A child of the agent logger (``skywalking.<name>``)."""
    return logger.getChild(name) if name else logger


def init(level: str) -> None:
    """Set the agent log level by name (``DEBUG``, ``INFO``, ..., ``OFF``); unknown names keep INFO."""
    value = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(value, int):
        logger.warning("unknown agent_logging_level %r, using INFO", level)
        value = logging.INFO
    logger.setLevel(value)


class RateLimitedLog:
    """Logs at most one line per ``interval`` seconds; counts what it held back."""

    __slots__ = ("_held", "_interval", "_last", "_level")

    def __init__(self, interval: float = 30.0, level: int = logging.WARNING) -> None:
        self._interval = interval
        self._level = level
        self._last = float("-inf")
        self._held = 0

    def log(self, now: float, msg: str, *args: object) -> bool:
        """Log now, unless a line went out less than ``interval`` seconds ago; True if it was logged."""
        if now - self._last < self._interval:
            self._held += 1
            return False
        held, self._held, self._last = self._held, 0, now
        suffix = f" ({held} similar messages suppressed)" if held else ""
        logger.log(self._level, msg + suffix, *args)
        return True
