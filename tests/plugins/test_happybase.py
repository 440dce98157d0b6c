"""sw_happybase against the HBase Thrift gateway stand-in (tests/plugins/standins/hbase.py: a real Thrift server
built by thriftpy2 from happybase's own Hbase.thrift, buffered transport + binary protocol, in-memory tables): no
HBase installs from PyPI or Debian here.

The service test runs apps/happybase_app.py called with sw6 by a traced caller and checks expected/happybase.json;
the in-process tests check what the file cannot: span timing, scans closed early or failing, nesting, the
application's exception unchanged, our own failures, uninstall."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from skywalking.reporter.memory import MemoryReporter
from skywalking.trace.context import get_context
from tests.plugins.harness import Services, port_of, serve, traced

pytest.importorskip("happybase")

from tests.plugins.standins.hbase import HBaseStandIn  # after the skip: it needs thriftpy2

HERE = Path(__file__).parent
APP = HERE / "apps" / "happybase_app.py"


@pytest.fixture(scope="module")
def hbase() -> Iterator[HBaseStandIn]:
    yield from serve(HBaseStandIn)


# -- the service, its caller and the collector ------------------------------------------------------------------

def test_table_calls_are_exit_spans(hbase: HBaseStandIn) -> None:
    with Services() as services:
        front = port_of(services.python(APP, hbase.port, name="plugin-happybase"))
        answer = services.call_front(front, "/hbase")
        assert answer == {"row": "ann", "rows": ["u2", "u1"], "cells": ["ann"], "scan": ["u1", "u2"],
                          "first": "u1", "error": "Hbase_thrift.IOError"}, answer
        services.check("happybase.json", segments=2, front=front, hbase=hbase.port)


# -- in this process ----------------------------------------------------------------------------------------------

@pytest.fixture
def table(hbase: HBaseStandIn, reporter: MemoryReporter) -> Iterator[Any]:
    import happybase

    connection = happybase.Connection("127.0.0.1", hbase.port)
    if b"inproc" not in connection.tables():
        connection.create_table("inproc", {"cf": {}})
    t = connection.table("inproc")
    for key in (b"a", b"b", b"c"):
        t.put(key, {b"cf:v": key.upper()})
    yield t
    hbase.handler.delay = 0.0
    connection.close()


def test_span_lasts_until_the_reply(table: Any, hbase: HBaseStandIn, reporter: MemoryReporter) -> None:
    hbase.handler.delay = 0.3
    result, spans = traced(reporter, lambda: table.row(b"a"))
    assert result == {b"cf:v": b"A"}
    assert [s.op for s in spans] == ["HBase/row/inproc/a", "/test"]
    assert spans[0].end_time - spans[0].start_time >= 250, spans[0]
    assert spans[0].peer == f"127.0.0.1:{hbase.port}" and spans[0].component.value == 94


def test_a_scan_span_covers_every_batch_and_ends_when_closed(table: Any, reporter: MemoryReporter) -> None:
    def call() -> Any:
        everything = [key for key, _ in table.scan(batch_size=1)]  # four scannerGetList round trips
        scan = table.scan(row_start=b"b")
        first = next(scan)[0]
        with get_context().new_local_span("/work-on-a-row"):
            pass  # the application's own span while a scan is open: not a child of the scan span
        scan.close()
        return everything, first

    result, spans = traced(reporter, call)
    assert result == ([b"a", b"b", b"c"], b"b")
    assert [s.op for s in spans] == ["HBase/scan/inproc/", "/work-on-a-row", "HBase/scan/inproc/b", "/test"]
    assert spans[1].pid == spans[3].sid  # the open scan span is not the active span
    assert not any(s.error_occurred for s in spans)


def test_a_scan_never_iterated_sends_nothing_and_has_no_span(table: Any, reporter: MemoryReporter) -> None:
    result, spans = traced(reporter, lambda: table.scan() is not None)
    assert result is True and [s.op for s in spans] == ["/test"]


def test_errors_mark_the_span_and_are_reraised_untouched(table: Any, reporter: MemoryReporter) -> None:
    import Hbase_thrift  # type: ignore[import-not-found]

    raised: list[BaseException] = []

    def call() -> None:
        missing = table.connection.table("missing")
        for fn in (lambda: missing.row(b"x"), lambda: list(missing.scan(row_prefix=b"x")),
                   lambda: table.put(b"x", {b"nofamily:v": b"1"}), lambda: list(table.scan(row_start=b"a",
                                                                                            row_prefix=b"a"))):
            try:
                fn()
            except Exception as e:
                raised.append(e)

    _, spans = traced(reporter, call)
    assert [type(e) for e in raised] == [Hbase_thrift.IOError, Hbase_thrift.IOError, Hbase_thrift.IOError,
                                         TypeError]
    assert [s.op for s in spans] == ["HBase/row/missing/x", "HBase/scan/missing/x", "HBase/put/inproc/x",
                                     "HBase/scan/inproc/a", "/test"]
    for span, error in zip(spans, raised, strict=False):
        assert span.error_occurred and type(error).__name__ in span.logs[0].items[0].val, span


def test_binary_keys_and_prefixed_names(hbase: HBaseStandIn, reporter: MemoryReporter) -> None:
    import happybase

    connection = happybase.Connection("127.0.0.1", hbase.port, table_prefix="app")

    def call() -> Any:
        if b"bin" not in connection.tables():
            connection.create_table(b"bin", {"cf": {}})
        t = connection.table("bin")
        t.put(b"\xff\x00k", {b"cf:v": b"1"})
        return t.rows([b"\xff\x00k"]), t.cells(b"\xff\x00k", b"cf:v")

    try:
        result, spans = traced(reporter, call)
    finally:
        connection.close()
    assert result == ([(b"\xff\x00k", {b"cf:v": b"1"})], [b"1"])
    key = "\\xff\\x00k"  # escaped as written: \xff is no UTF-8, \x00 a control character
    assert [s.op for s in spans] == ["HBase/create/app_bin", f"HBase/put/app_bin/{key}", f"HBase/rows/app_bin/{key}",
                                     f"HBase/cells/app_bin/{key}", "/test"]


def test_nothing_inside_an_exit_span(table: Any, reporter: MemoryReporter) -> None:
    def call() -> Any:
        with get_context().new_exit_span(op="dao-layer", peer="somewhere"):
            return table.row(b"a"), [k for k, _ in table.scan()]

    result, spans = traced(reporter, call)
    assert result == ({b"cf:v": b"A"}, [b"a", b"b", b"c"])
    assert [s.op for s in spans] == ["dao-layer", "/test"]


def test_a_failure_of_the_plugin_runs_the_call_untraced(table: Any, reporter: MemoryReporter,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from skywalking.plugins import sw_happybase

    def broken(*args: Any) -> Any:
        raise RuntimeError("plugin bug")

    monkeypatch.setattr(sw_happybase, "exit_span", broken)
    result, spans = traced(reporter, lambda: (table.row(b"a"), [k for k, _ in table.scan()],
                                               table.connection.create_table("other", {"cf": {}})))
    assert result == ({b"cf:v": b"A"}, [b"a", b"b", b"c"], None)
    assert [s.op for s in spans] == ["/test"]


def test_uninstall_restores_the_originals(table: Any, reporter: MemoryReporter) -> None:
    import happybase.connection
    import happybase.table
    import wrapt

    from skywalking.plugins.sw_happybase import plugin

    names = ("row", "rows", "cells", "scan", "put", "delete")
    wrapped = [happybase.table.Table.__dict__[n] for n in names] + [
        happybase.connection.Connection.__dict__["create_table"]]
    assert plugin.installed and all(isinstance(w, wrapt.FunctionWrapper) for w in wrapped)
    plugin.uninstall()
    try:
        restored = [happybase.table.Table.__dict__[n] for n in names] + [
            happybase.connection.Connection.__dict__["create_table"]]
        assert restored == [w.__wrapped__ for w in wrapped]
        result, spans = traced(reporter, lambda: (table.row(b"a"), [k for k, _ in table.scan()]))
        assert result == ({b"cf:v": b"A"}, [b"a", b"b", b"c"])
        assert [s.op for s in spans] == ["/test"]
    finally:
        assert plugin.install()
    assert isinstance(happybase.table.Table.__dict__["row"], wrapt.FunctionWrapper)
