"""The profiler's unary calls to the v3 ``ProfileTask`` service: the task poll and the end-of-task report."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from skywalking.profile.task import COMMAND
from skywalking.protocol_v8.gen.common.Common_pb2 import Commands
from skywalking.protocol_v8.gen.profile.Profile_pb2 import ProfileTaskCommandQuery, ProfileTaskFinishReport
from skywalking.reporter.session import UNARY_TIMEOUT, Unary, metadata
from skywalking.trace.tracer import TRACER

if TYPE_CHECKING:
    from skywalking.reporter.grpc import Connection

PATH = "/skywalking.v3.ProfileTask/"
SNAPSHOT_PATH = PATH + "collectSnapshot"


class ProfileClient:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._unary = Unary((PATH + "getProfileTaskCommands", ProfileTaskCommandQuery, Commands),
                            (PATH + "reportTaskFinish", ProfileTaskFinishReport, Commands))

    def _stubs(self) -> list[Any]:
        return self._unary.calls(*self.conn.channel())

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
