"""``SWFormatter.render`` gives what ``logging.Formatter.format`` gives, without writing to the record (the log
reporter formats on its own thread), and cuts tracebacks to ``tb_limit`` frames."""

from __future__ import annotations

import logging
import sys

import pytest

from skywalking.log.formatter import SWFormatter

LAYOUT = "%(asctime)s [%(threadName)s] %(levelname)s %(name)s - %(message)s"


def record(exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            def deep(n: int) -> None:
                if n == 0:
                    raise ValueError("bad order")
                deep(n - 1)

            deep(5)
        except ValueError:
            exc_info = sys.exc_info()
    return logging.LogRecord("shop", logging.ERROR, __file__, 10, "order %s for %s", (7, "bob"), exc_info)


@pytest.mark.parametrize(("fmt", "style"), [(LAYOUT, "%"), ("{asctime} {levelname} {message} {tid}", "{"),
                                            ("$levelname $message $tid", "$")])
def test_render_equals_format_and_leaves_the_record_alone(fmt: str, style: str) -> None:
    rec = record()
    before = dict(rec.__dict__)
    text = SWFormatter(fmt, None, style=style).render(rec, rec.getMessage(), {"tid": "t.1.2"})
    assert rec.__dict__ == before
    rec.tid = "t.1.2"
    assert text == logging.Formatter(fmt, style=style).format(rec)  # type: ignore[arg-type]


def test_tracebacks_keep_at_most_tb_limit_frames() -> None:
    rec = record(exc=True)
    short = SWFormatter(LAYOUT, 2).render(rec, rec.getMessage(), {})
    full = SWFormatter(LAYOUT, None).render(rec, rec.getMessage(), {})
    assert short.count("  File ") == 2 and full.count("  File ") > 2 and "raise ValueError" in full
    assert short.endswith("ValueError: bad order") and short.splitlines()[0].endswith("shop - order 7 for bob")
