"""``SWFormatter``: a ``logging.Formatter`` whose tracebacks keep at most ``tb_limit`` frames
(``agent_cause_exception_depth`` for reported logs)."""

from __future__ import annotations

import io
import logging
import traceback
from typing import Any


class SWFormatter(logging.Formatter):
    def __init__(self, fmt: str | None, tb_limit: int | None, **kwargs: Any) -> None:
        super().__init__(fmt, **kwargs)
        self.tb_limit = tb_limit

    def formatException(self, ei: Any) -> str:
        out = io.StringIO()
        traceback.print_exception(ei[0], ei[1], ei[2], limit=self.tb_limit, file=out)
        return out.getvalue().rstrip("\n")
