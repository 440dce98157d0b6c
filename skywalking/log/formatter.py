"""``SWFormatter``: a ``logging.Formatter`` whose tracebacks keep at most ``tb_limit`` frames
(``agent_cause_exception_depth`` for reported logs), and which formats a record without touching it
(``render``: the log reporter formats on its sender thread while the application may still hold the record)."""

from __future__ import annotations

import io
import logging
import time
import traceback
from typing import Any


class SWFormatter(logging.Formatter):
    def __init__(self, fmt: str | None, tb_limit: int | None, **kwargs: Any) -> None:
        super().__init__(fmt, **kwargs)
        self.tb_limit = tb_limit
        self._uses_time = self.usesTime()
        self._second: tuple[int, str] = (-1, "")  # the last whole second formatted, and its text

    def formatException(self, ei: Any) -> str:
        out = io.StringIO()
        traceback.print_exception(ei[0], ei[1], ei[2], limit=self.tb_limit, file=out)
        return out.getvalue().rstrip("\n")

    def render(self, record: logging.LogRecord, message: str, extra: dict[str, Any]) -> str:
        """What ``format(record)`` gives with ``message`` as the rendered message and ``extra`` added, without
        writing to ``record``."""
        values = dict(record.__dict__)
        values["message"] = message
        values.update(extra)
        if self._uses_time:
            values["asctime"] = self._asctime(record)
        style = self._style
        if type(style) is logging.PercentStyle:
            text = style._fmt % values
        else:  # "{" and "$" styles read the record's __dict__
            text = style._format(_Values(values))  # type: ignore[attr-defined]
        if record.exc_info:
            text = f"{text}\n{self.formatException(record.exc_info)}"
        if record.stack_info:
            text = f"{text}\n{self.formatStack(record.stack_info)}"
        return text

    def _asctime(self, record: logging.LogRecord) -> str:
        if self.datefmt is not None or type(self).formatTime is not SWFormatter.formatTime:
            return self.formatTime(record, self.datefmt)
        second = int(record.created)
        if self._second[0] != second:  # time.strftime once per second, as formatTime would give
            self._second = (second, time.strftime(self.default_time_format, self.converter(record.created)))
        return (self.default_msec_format or "%s,%03d") % (self._second[1], record.msecs)


class _Values:
    """A stand-in record for the ``{`` and ``$`` styles, which read ``record.__dict__``."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__ = values
