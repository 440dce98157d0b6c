"""A profile task as the backend's ``ProfileTaskQuery`` command describes it (docs/protocol/v3-non-trace.md §4)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

COMMAND = "ProfileTaskQuery"
MAX_DURATION_MIN = 15  # the OAP's own limits on a task, checked again here
MIN_DUMP_PERIOD_MS = 10
MAX_SAMPLING_COUNT = 9


class ProfileTask(NamedTuple):
    task_id: str
    serial_number: str
    endpoint: str
    start_ms: int  # wall clock
    duration_min: int
    min_duration_ms: int  # a request is sampled once it has run this long
    dump_period_ms: int
    max_sampling_count: int  # snapshots per profiled request, at most
    create_ms: int

    @property
    def end_ms(self) -> int:
        return self.start_ms + self.duration_min * 60_000


def parse_task(args: Mapping[str, str]) -> ProfileTask:
    """The task a command's arguments describe; ValueError saying why for one the agent cannot run."""
    try:
        task = ProfileTask(args["TaskId"], args.get("SerialNumber", ""), args["EndpointName"], int(args["StartTime"]),
                           int(args["Duration"]), int(args.get("MinDurationThreshold", "0")),
                           int(args["DumpPeriod"]), int(args["MaxSamplingCount"]), int(args.get("CreateTime", "0")))
    except (KeyError, ValueError) as exc:
        raise ValueError(f"malformed profile task command: {exc!r}") from None
    if not task.task_id or not task.endpoint:
        raise ValueError("a profile task needs a task id and an endpoint")
    if not 1 <= task.duration_min <= MAX_DURATION_MIN:
        raise ValueError(f"duration {task.duration_min} min is outside 1..{MAX_DURATION_MIN}")
    if task.dump_period_ms < MIN_DUMP_PERIOD_MS:
        raise ValueError(f"dump period {task.dump_period_ms} ms is below {MIN_DUMP_PERIOD_MS}")
    if not 1 <= task.max_sampling_count <= MAX_SAMPLING_COUNT:
        raise ValueError(f"max sampling count {task.max_sampling_count} is outside 1..{MAX_SAMPLING_COUNT}")
    if task.min_duration_ms < 0:
        raise ValueError("a negative minimum duration")
    return task
