"""The profiler's unary calls to the v3 ``ProfileTask`` service: the task poll and the end-of-task report."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from skywalking.profile.task import COMMAND
from skywalking.protocol_v8.gen.common.Common_pb2 import Commands
from skywalking.protocol_v8.gen.profile.Profile_pb2 import ProfileTaskCommandQuery, ProfileTaskFinishReport
from skywalking.reporter.session import UNARY_TIMEOUT, metadata
from skywalking.trace.tracer import TRACER

if TYPE_CHECKING:
    from skywalking.reporter.grpc import Connection

PATH = "/skywalking.v3.ProfileTask/"
SNAPSHOT_PATH = PATH + "collectSnapshot"


class ProfileClient:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._calls: tuple[int, Any, Any] = (-1, None, None)

    def _stubs(self) -> tuple[Any, Any]:
        channel, generation = self.conn.channel()
        if self._calls[0] != generation:
            self._calls = (generation,
                           channel.unary_unary(PATH + "getProfileTaskCommands",
                                               request_serializer=ProfileTaskCommandQuery.SerializeToString,
                                               response_deserializer=Commands.FromString),
                           channel.unary_unary(PATH + "reportTaskFinish",
                                               request_serializer=ProfileTaskFinishReport.SerializeToString,
                                               response_deserializer=Commands.FromString))
        return self._calls[1], self._calls[2]

    def fetch(self, last_command_ms: int) -> list[dict[str, str]]:
        query, _ = self._stubs()
        identity = TRACER.identity
        answer = query(ProfileTaskCommandQuery(service=identity[0], serviceInstance=identity[1],
                                               lastCommandTime=last_command_ms),
                       timeout=UNARY_TIMEOUT, metadata=metadata())
        return [{a.key: a.value for a in c.args} for c in answer.commands if c.command == COMMAND]

    def finish(self, task_id: str) -> None:
        _, report = self._stubs()
        identity = TRACER.identity
        report(ProfileTaskFinishReport(service=identity[0], serviceInstance=identity[1], taskId=task_id),
               timeout=UNARY_TIMEOUT, metadata=metadata())
