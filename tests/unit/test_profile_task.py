"""Profile task commands: what the agent takes and what it refuses (the OAP's limits, checked again)."""

from __future__ import annotations

import pytest

from skywalking.profile.task import parse_task

ARGS = {"TaskId": "t1", "SerialNumber": "s1", "EndpointName": "/slow", "StartTime": "1000", "Duration": "2",
        "MinDurationThreshold": "50", "DumpPeriod": "10", "MaxSamplingCount": "9", "CreateTime": "900"}


def test_a_well_formed_command_becomes_a_task_ending_after_its_duration() -> None:
    task = parse_task(ARGS)
    assert (task.task_id, task.endpoint, task.dump_period_ms, task.max_sampling_count) == ("t1", "/slow", 10, 9)
    assert task.end_ms == 1000 + 2 * 60_000


@pytest.mark.parametrize(("key", "value", "why"), [
    ("Duration", "0", "duration 0 min"), ("Duration", "16", "duration 16 min"), ("DumpPeriod", "9", "dump period 9"),
    ("MaxSamplingCount", "10", "max sampling count 10"), ("MaxSamplingCount", "0", "max sampling count 0"),
    ("StartTime", "soon", "malformed"), ("EndpointName", "", "needs a task id and an endpoint"),
])
def test_a_task_outside_the_limits_is_refused_saying_why(key: str, value: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_task({**ARGS, key: value})


def test_a_command_missing_an_argument_is_refused() -> None:
    with pytest.raises(ValueError, match="malformed"):
        parse_task({k: v for k, v in ARGS.items() if k != "TaskId"})


def test_the_collector_serves_a_task_until_it_is_over() -> None:
    import time

    from skywalking.collector.app import Collector

    col = Collector(printer=None)
    now = int(time.time() * 1000)
    running = col.create_profile_task({"service": "svc", "endpoint": "/a", "duration": 1})
    col.create_profile_task({"service": "svc", "endpoint": "/b", "duration": 1, "startTime": now - 59_700})
    col.create_profile_task({"service": "other", "endpoint": "/a", "duration": 1})
    time.sleep(0.5)  # /b, running when it was created, is over now
    served = [dict(args) for args in col.profile_commands("svc", "i", 0)]
    assert [a["TaskId"] for a in served] == [running["taskId"]]  # the one that ended meanwhile is not served
    assert parse_task(served[0]).endpoint == "/a"
    assert col.profile_commands("svc", "i", running["createTime"]) == []  # already fetched
