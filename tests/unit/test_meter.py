"""skywalking.meter: upstream's meter API (names, builders, timers, decorators) with our fixes: decorators return the
function's value, histogram buckets are [step, next step), values below min_value are counted as dropped."""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Iterator

import pytest

from skywalking import meter
from skywalking.meter import Counter, CounterMode, Gauge, Histogram, MeterType, registry


@pytest.fixture(autouse=True)
def fresh_registry() -> Iterator[None]:
    registry.clear()
    yield
    registry.clear()


def values() -> dict[str, object]:
    return {v.meter_id.name: v.value for v in registry.collect()}


def test_upstreams_names_import() -> None:
    names = {"counter": ["Counter", "CounterMode"], "gauge": ["Gauge"], "histogram": ["Histogram"],
             "meter": ["BaseMeter", "MeterId", "MeterTag", "MeterType"], "meter_service": ["MeterService"]}
    for module, wanted in names.items():
        loaded = importlib.import_module(f"skywalking.meter.{module}")
        assert [n for n in wanted if not hasattr(loaded, n)] == [], module
    meter.init()  # kept for upstream's callers; does nothing


def test_counter_increment_and_rate_modes() -> None:
    total = Counter.Builder("requests", CounterMode.INCREMENT, [("route", "/a")]).build()
    rate = Counter.Builder("bytes").mode(CounterMode.RATE).tag("dir", "in").build()
    total.increment()
    total.increment(2.5)
    rate.increment(10)
    assert values() == {"requests": 3.5, "bytes": 10}
    rate.increment(4)
    assert values() == {"requests": 3.5, "bytes": 4}  # RATE: what was added since the last report
    assert values()["bytes"] == 0
    assert [tuple(t) for t in total.meter_id.tags] == [("route", "/a")] and total.meter_id.type is MeterType.COUNTER


def test_one_meter_per_name_whatever_the_tags() -> None:
    first = Counter.Builder("calls", tags=[("a", "1")]).build()
    assert Counter.Builder("calls", tags=[("b", "2")]).build() is first


def test_increments_from_threads_are_not_lost() -> None:
    counter = Counter.Builder("threads").build()

    def work() -> None:
        for _ in range(10_000):
            counter.increment()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert values()["threads"] == 40_000


def test_decorators_return_the_functions_value_and_count() -> None:
    @Counter.increase("increased", num=2)
    def add(a: int, b: int) -> int:
        return a + b

    @Counter.timer("timed")
    def slow() -> str:
        time.sleep(0.02)
        return "done"

    assert add(1, 2) == 3 and add(3, 4) == 7
    assert slow() == "done"
    got = values()
    assert got["increased"] == 4
    assert isinstance(got["timed"], float) and 0.015 < got["timed"] < 1


def test_gauge_reads_its_source_at_each_report() -> None:
    readings = iter([5, None, "x"])
    Gauge.Builder("queue", readings).build()
    level = [1.5]
    Gauge.Builder("level", lambda: level[0]).build()
    assert values() == {"queue": 5.0, "level": 1.5}
    level[0] = 2
    assert values() == {"queue": 0.0, "level": 2.0}  # a missing value reports 0
    assert values()["queue"] == 0.0  # not a number: 0
    with pytest.raises(TypeError):
        Gauge.Builder("bad", 3)  # type: ignore[arg-type]


def test_histogram_buckets_are_closed_below() -> None:
    hist = Histogram.Builder("latency", [10, 5, 5, 20], min_value=1).build()
    assert hist.bounds == [1.0, 5.0, 10.0, 20.0]
    for v in (1, 4.9, 5, 9.99, 10, 25, 0.5):
        hist.add_value(v)
    assert values()["latency"] == [(1.0, 2), (5.0, 2), (10.0, 1), (20.0, 1)]
    assert hist.dropped == 1  # 0.5 is below min_value


def test_histogram_timer_and_decorator() -> None:
    hist = Histogram.Builder("work", [0, 0.01, 1]).build()
    with hist.create_timer():
        time.sleep(0.02)

    @Histogram.timer("work")
    def job() -> int:
        return 42

    assert job() == 42
    assert dict(values()["work"]) == {0.0: 1, 0.01: 1, 1.0: 0}  # type: ignore[arg-type]


def test_bad_definitions_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="non-empty name"):
        Counter.Builder("")
    with pytest.raises(ValueError, match="at least one step"):
        Histogram.Builder("h", [])


def test_the_registry_is_bounded_and_counts_what_it_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from skywalking.meter import meter_service as module

    monkeypatch.setattr(module, "MAX_METERS", 3)
    made = [Counter.Builder(f"c{i}").build() for i in range(5)]
    assert len(registry.meters()) == 3 and registry.refused == 2
    made[4].increment()  # a refused meter still works for its caller; it is just not reported
    assert set(values()) == {"c0", "c1", "c2"}


def test_a_meter_that_cannot_be_read_is_left_out() -> None:
    def broken() -> float:
        raise RuntimeError("boom")

    Gauge.Builder("broken", broken).build()
    Counter.Builder("fine").build().increment()
    assert values() == {"fine": 1}
