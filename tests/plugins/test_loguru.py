"""sw_loguru: ``extra[tid]`` on loguru records. A service (apps/loguru_app.py) called with sw6 by a traced caller
logs through a direct and an ``enqueue=True`` sink: the ids must be the trace id the collector received, and
file/line/function the app's own. In-process tests cover bound values, configured defaults and patchers, failures
and uninstall."""

from __future__ import annotations

import pickle
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from skywalking.reporter.memory import MemoryReporter
from skywalking.trace.context import get_context
from tests.plugins.harness import Services, port_of
from tests.protocol.procs import wait_for

HERE = Path(__file__).parent
APP = HERE / "apps" / "loguru_app.py"


def marked_lines(path: Path) -> dict[str, int]:
    """``{name: line number}`` of the ``# line: <name>`` comments in ``path``."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return {line.rsplit("# line:", 1)[1].strip(): n for n, line in enumerate(lines, 1) if "# line:" in line}


def test_lines_carry_the_trace_id_and_the_callers_location() -> None:
    pytest.importorskip("loguru")
    with Services() as services:
        front = services.python(APP, name="plugin-loguru")
        services.call_front(port_of(front), "/log")
        segments = services.check(None, segments=2)
        traces = {seg["traceId"] for seg in segments if seg["service"] == "plugin-loguru"}
        assert len(traces) == 1, segments
        trace = traces.pop()

        def logged() -> dict[tuple[str, str], list[str]] | None:
            found = {}
            for line in front.stdout + front.stderr:
                if line.startswith("loguru "):
                    _, sink, rest = line.rstrip("\n").split(" ", 2)
                    fields = rest.split("|")
                    found[sink, fields[-1]] = fields[:-1]
            return found if len(found) == 6 else None

        found = wait_for(logged, what="3 lines from each loguru sink")
        at = marked_lines(APP)
        for sink in ("direct", "queued"):
            assert found[sink, "outside"] == ["N/A", str(APP), str(at["outside"]), "main", "kept"]
            assert found[sink, "inside"] == [trace, str(APP), str(at["inside"]), "do_GET", "kept"]
            assert found[sink, "bound"] == ["mine", str(APP), str(at["bound"]), "do_GET", "kept"]


# -- in this process ----------------------------------------------------------------------------------------------

@pytest.fixture
def loguru_logger(reporter: MemoryReporter) -> Iterator[tuple[Any, list[dict[str, Any]]]]:
    """loguru's logger with a sink collecting records; the core's patcher and extra are restored afterwards."""
    loguru = pytest.importorskip("loguru")
    from skywalking.plugins.sw_loguru import plugin

    assert plugin.installed
    core = loguru.logger._core
    saved = core.patcher, dict(core.extra)
    records: list[dict[str, Any]] = []
    handler = loguru.logger.add(lambda message: records.append(message.record), format="{message}")
    yield loguru.logger, records
    loguru.logger.remove(handler)
    loguru.logger.configure(extra=saved[1])
    core.patcher = saved[0]


def trace_id(reporter: MemoryReporter) -> str:
    assert reporter.wait_for(1)
    return str(reporter.segments[-1].related_traces[0])


def test_tid_and_the_callers_location_with_direct_and_queued_sinks(loguru_logger: Any,
                                                                   reporter: MemoryReporter) -> None:
    logger, records = loguru_logger
    queued: list[dict[str, Any]] = []
    handler = logger.add(lambda message: queued.append(message.record), format="{message}", enqueue=True)
    try:
        logger.info("outside")
        outside = sys._getframe().f_lineno - 1
        with get_context().new_local_span("/test"):
            logger.info("inside")
            inside = sys._getframe().f_lineno - 1
        logger.complete()
    finally:
        logger.remove(handler)
    tid = trace_id(reporter)
    for sink in (records, queued):
        assert [(r["message"], r["extra"]["tid"], r["file"].path, r["line"], r["function"]) for r in sink] == [
            ("outside", "N/A", __file__, outside, "test_tid_and_the_callers_location_with_direct_and_queued_sinks"),
            ("inside", tid, __file__, inside, "test_tid_and_the_callers_location_with_direct_and_queued_sinks")]


def test_bound_values_win_and_a_configured_default_yields_inside_traces(loguru_logger: Any,
                                                                      reporter: MemoryReporter) -> None:
    logger, records = loguru_logger
    logger.configure(extra={"tid": "-"})
    logger.info("default outside")
    with get_context().new_local_span("/test"):
        logger.info("default inside")
        logger.bind(tid="bound").info("bound")
        with logger.contextualize(tid="context"):
            logger.info("contextualized")
    assert [r["extra"]["tid"] for r in records] == ["-", trace_id(reporter), "bound", "context"]


def test_a_patcher_configured_later_runs_after_ours(loguru_logger: Any, reporter: MemoryReporter) -> None:
    from skywalking.plugins.sw_loguru import TidPatcher

    logger, records = loguru_logger
    logger.configure(patcher=lambda record: record["extra"].update(seen=record["extra"].get("tid")))
    assert isinstance(logger._core.patcher, TidPatcher)
    with get_context().new_local_span("/test"):
        logger.info("patched")
    tid = trace_id(reporter)
    assert records[0]["extra"]["tid"] == tid and records[0]["extra"]["seen"] == tid


def test_a_failure_of_the_patcher_stays_inside_and_the_users_patcher_still_runs() -> None:
    pytest.importorskip("loguru")
    from loguru._logger import Core

    from skywalking.plugins.sw_loguru import TidPatcher

    called = []
    TidPatcher(Core(), called.append)({"no extra": True})  # a record without "extra": our part fails quietly
    assert called == [{"no extra": True}]
    copy = pickle.loads(pickle.dumps(TidPatcher(Core(), None)))  # loggers are pickled for spawned processes
    assert isinstance(copy, TidPatcher) and copy.inner is None


def test_uninstall_restores_the_patcher_and_configure(loguru_logger: Any) -> None:
    import loguru._logger
    import wrapt

    from skywalking.plugins.sw_loguru import TidPatcher, plugin

    logger, records = loguru_logger
    core = logger._core
    assert isinstance(core.patcher, TidPatcher)
    before = core.patcher.inner
    plugin.uninstall()
    try:
        assert core.patcher is before
        assert not isinstance(loguru._logger.Logger.__dict__["configure"], wrapt.FunctionWrapper)
        logger.info("untraced")
        assert "tid" not in records[-1]["extra"]
    finally:
        assert plugin.install()
    assert isinstance(core.patcher, TidPatcher) and core.patcher.inner is before
    logger.info("traced again")
    assert records[-1]["extra"]["tid"] == "N/A"
