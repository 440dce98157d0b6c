"""Upstream's log reporting API (``skywalking.log``): ``sw_logging.install()`` hands every ``logging`` record at
or above ``agent_log_reporter_level`` to the agent, which sends it with its trace context (trace id, segment id,
span id, endpoint) to the v3 ``LogReportService`` under ``agent_protocol_version=v8``. ``formatter.SWFormatter``
formats reported records (``agent_log_reporter_layout``, tracebacks cut to ``agent_cause_exception_depth``).
OAP 6.6.0 (v6) has no log receiver: there the agent installs nothing. ``sw_loguru`` reports loguru records the
same way."""

from __future__ import annotations

from skywalking.log import formatter, sw_logging
from skywalking.log.sw_logging import install, uninstall

__all__ = ["formatter", "install", "sw_logging", "uninstall"]
