"""The profiler (upstream's ``skywalking.profile``), wire-neutral: profile tasks come from the backend, and while a
task runs, the threads serving the task's endpoint are sampled every dump period into thread snapshots.
``skywalking.agent.telemetry`` wires it to the v3 ``ProfileTask`` service under ``agent_protocol_version=v8``."""

from __future__ import annotations

from skywalking.profile.profiler import Profiler, Snapshot
from skywalking.profile.task import ProfileTask, parse_task

__all__ = ["ProfileTask", "Profiler", "Snapshot", "parse_task"]
