"""Logs, meters and the profiler under ``agent_protocol_version=v8``: the agent starts them with the segment
reporter and stops them before it. Log records, meter values and thread snapshots go through ``reporter.data``
feeds over the segment reporter's channel to ``LogReportService``, ``MeterReportService`` and
``ProfileTask.collectSnapshot``. Under v6 (OAP 6.6.0 has none of these receivers) nothing starts; the agent says so
once when the user turned them on explicitly."""

from __future__ import annotations

from typing import Any

from skywalking import config
from skywalking.loggings import logger

OPTION = {"log": "agent_log_reporter_active", "meter": "agent_meter_reporter_active",
          "snapshot": "agent_profile_active"}
LOG_PATH = "/skywalking.v3.LogReportService/collect"
METER_PATH = "/skywalking.v3.MeterReportService/collect"


class Telemetry:
    def __init__(self, sender: Any, meters: Any, profiler: Any) -> None:
        self.sender = sender
        self.meters = meters
        self.profiler = profiler

    def stop(self, timeout: float) -> None:
        try:
            from skywalking.log import sw_logging
            from skywalking.trace.tracer import TRACER

            if self.profiler is not None:
                TRACER.profiler = None
                self.profiler.stop()
            if self.meters is not None:
                self.meters.stop(flush=True)
            sw_logging.uninstall()
            self.sender.stop(timeout)
        except Exception:
            logger.exception("logs and meters failed to stop cleanly")

    def stats(self) -> dict[str, Any]:
        out = self.sender.stats()
        if self.meters is not None and "meter" in out:
            out["meter"]["thread"] = self.meters.stats()
        if self.profiler is not None and "snapshot" in out:
            out["snapshot"]["profiler"] = self.profiler.stats()
        return out


def wanted() -> list[str]:
    """The kinds of data the configuration turns on (under v8)."""
    kinds = []
    if config.agent_log_reporter_active:
        kinds.append("log")
    if config.agent_meter_reporter_active:
        kinds.append("meter")
    if config.agent_profile_active:
        kinds.append("snapshot")
    return kinds


def start(reporter: Any) -> Telemetry | None:
    """Start the feeds the configuration asks for, over ``reporter``'s connection; None if there are none (v6, a
    reporter without a network connection, or everything off). Never raises."""
    try:
        if config.agent_protocol_version != "v8":
            return None
        from skywalking.reporter.data import DataSender, Feed, GrpcTransport

        conn = getattr(reporter, "conn", None)
        transport = getattr(reporter, "transport", None) or (GrpcTransport(conn) if conn is not None else None)
        if transport is None:
            return None
        supported = getattr(transport, "kinds", ("log", "meter", "snapshot"))
        kinds = [kind for kind in wanted() if kind in supported]
        unsupported = [OPTION[kind] for kind in wanted()
                       if kind not in supported and config.explicitly_set(OPTION[kind])]
        if unsupported:
            logger.info("not reported over agent_protocol=%s (OAP has no such receiver there): %s", transport.name,
                        ", ".join(unsupported))
        if not kinds:
            return None
        from skywalking.meter.meter_service import registry
        from skywalking.protocol_v8 import telemetry as v8

        feeds = []
        if "log" in kinds:
            from skywalking.log.entry import build

            feeds.append(Feed("log", LOG_PATH, lambda c: v8.encode_log(build(c)),
                              config.agent_log_reporter_max_buffer_size))
        if "meter" in kinds:
            feeds.append(Feed("meter", METER_PATH, lambda item: v8.encode_meter(*item),
                              config.agent_meter_reporter_max_buffer_size))
        if "snapshot" in kinds:
            from skywalking.protocol_v8.profile import SNAPSHOT_PATH

            feeds.append(Feed("snapshot", SNAPSHOT_PATH, v8.encode_snapshot,
                              config.agent_profile_snapshot_transport_buffer_size))
        sender = DataSender(transport, feeds)
        sender.start()
        meters = None
        if "log" in kinds:
            from skywalking.log import sw_logging

            sw_logging.install(sender.feed("log"))
        if "meter" in kinds:
            from skywalking.meter.reporter import MeterReporter

            if config.agent_pvm_meter_reporter_active:
                from skywalking.meter import pvm

                pvm.register(registry)
            meters = MeterReporter(sender.feeds["meter"], config.agent_meter_reporter_period, registry)
            meters.start()
        profiler = None
        if "snapshot" in kinds and conn is not None:  # gRPC only
            from skywalking.profile.profiler import Profiler
            from skywalking.protocol_v8.profile import ProfileClient
            from skywalking.trace.tracer import TRACER

            client = ProfileClient(conn)
            profiler = Profiler(client.fetch, client.finish, sender.feeds["snapshot"].offer,
                                config.agent_collector_get_profile_task_interval, config.agent_profile_max_parallel,
                                config.agent_profile_dump_max_stack_depth)
            profiler.start()
            TRACER.profiler = profiler
        return Telemetry(sender, meters, profiler)
    except Exception:
        logger.exception("logs and meters failed to start; tracing goes on")
        return None
