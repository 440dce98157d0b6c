"""Agent lifecycle: ``start()``, ``stop()``, ``started()``.

``start()`` finalizes the configuration, installs the plugins and wires a reporter to the tracing
core. It never raises into the application and a second call in the same process is a logged
no-op. ``stop()`` flushes within a bounded time and never raises.
"""

from __future__ import annotations

import atexit
import os
import threading
from typing import Any

from skywalking import config, loggings, plugins
from skywalking.loggings import logger
from skywalking.reporter import Reporter
from skywalking.trace import context

__all__ = ["SkyWalkingAgent", "agent", "start", "started", "stop"]

STOP_TIMEOUT = 5.0  # seconds agent.stop() / the exit flush may take at most

_INACTIVE = ("agent_log_reporter_active", "agent_meter_reporter_active", "agent_pvm_meter_reporter_active",
             "agent_profile_active")


class SkyWalkingAgent:
    """The process-wide agent (``skywalking.agent.agent``)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._started_pid = 0
        self._reporter: Reporter | None = None
        self._reported_inactive = False
        self._fork_hook = False

    def start(self, reporter: Reporter | None = None) -> None:
        """Start tracing in this process. ``reporter`` replaces the network reporter (tests use
        ``skywalking.reporter.memory.MemoryReporter``)."""
        try:
            with self._lock:
                if self._started_pid == os.getpid():
                    logger.info("agent already started in this process; start() ignored")
                    return
                self._start(reporter)
        except Exception:
            logger.exception("agent failed to start; the application continues untraced")

    def _start(self, reporter: Reporter | None) -> None:
        level = "DEBUG" if config.agent_sw_python_cli_debug_enabled else config.agent_logging_level
        loggings.init(level)
        config.finalize()
        self._report_inactive()
        plugins.install()
        if reporter is None:
            reporter = _network_reporter()
        self._reporter = reporter
        self._started_pid = os.getpid()
        if reporter is not None:
            reporter.start()
            if config.agent_protocol_version == "v8" or reporter.instance_id > 0:
                _enable(reporter)
            elif config.agent_register_wait > 0 and not reporter.wait_ready(config.agent_register_wait):
                logger.warning("no instance id from the OAP within agent_register_wait=%ss; tracing starts once "
                               "registration completes", config.agent_register_wait)
        atexit.register(self._atexit)
        if config.agent_experimental_fork_support and not self._fork_hook:
            self._fork_hook = True
            os.register_at_fork(after_in_child=self._after_fork_in_child)
        logger.info("agent started: service %r, instance %r, protocol %s, headers %s", config.SERVICE_NAME,
                    config.agent_instance_name, config.agent_protocol_version, ",".join(config.PROPAGATION))

    def _report_inactive(self) -> None:
        if self._reported_inactive:
            return
        self._reported_inactive = True
        if config.agent_protocol != "grpc":
            logger.warning("agent_protocol %r is not implemented; reporting over grpc", config.agent_protocol)
        on = [name for name in _INACTIVE if getattr(config, name)]
        if on:
            why = "OAP 6.6.0 has no receiver for them" if config.agent_protocol_version == "v6" \
                else "company-skywalking does not implement them"
            logger.info("inactive options (%s): %s", why, ", ".join(on))
        if config.agent_asyncio_enhancement:
            logger.info("agent_asyncio_enhancement is accepted but unused: one reporter thread serves all")

    def stop(self) -> None:
        """Stop tracing and flush (at most STOP_TIMEOUT seconds). Plugins stay patched but trace
        nothing; a later ``start()`` does not patch twice."""
        try:
            with self._lock:
                if not self._started_pid:
                    return
                context.disable()
                reporter, self._reporter = self._reporter, None
                self._started_pid = 0
                atexit.unregister(self._atexit)
            if reporter is not None:
                reporter.stop(STOP_TIMEOUT)
        except Exception:
            logger.exception("agent failed to stop cleanly")

    def started(self) -> bool:
        return self._started_pid == os.getpid()

    def _atexit(self) -> None:
        self.stop()

    def _after_fork_in_child(self) -> None:
        try:
            pid = os.getpid()
            self._lock = threading.RLock()  # the parent's lock may have been held by another thread
            context.disable()
            self._started_pid = 0
            config.agent_instance_name = f"{config.agent_instance_name}-child({pid})"
            reporter = self._reporter
            self._reporter = None
            if reporter is not None and not isinstance(reporter, _forkable()):
                reporter = None
            self.start(reporter)
        except Exception:
            logger.exception("agent failed to restart in a forked child")


def _forkable() -> tuple[type, ...]:
    from skywalking.reporter.memory import MemoryReporter
    return (MemoryReporter,)


def _enable(reporter: Reporter) -> None:
    context.enable(reporter.report, service=config.SERVICE_NAME, instance=config.agent_instance_name,
                   instance_id=reporter.instance_id, protocol=config.agent_protocol_version,
                   sample_n_per_3_secs=config.sample_n_per_3_secs)


def _on_ready(reporter: Reporter) -> None:
    """The OAP issued the instance id (v6): tracing starts, if this reporter is still the agent's."""
    if agent._reporter is reporter:
        _enable(reporter)


def _on_reset(reporter: Reporter) -> None:
    """The OAP forgot us (v6 ServiceMetadataReset): no tracing and no headers until registered again."""
    if agent._reporter is reporter:
        context.disable()


def _network_reporter() -> Reporter:
    """The gRPC reporter for the configured protocol version."""
    from skywalking.reporter.grpc import create

    return create(on_ready=_on_ready, on_reset=_on_reset)


agent = SkyWalkingAgent()


def start(reporter: Reporter | None = None) -> None:
    agent.start(reporter)


def stop() -> None:
    agent.stop()


def started() -> bool:
    return agent.started()


def __getattr__(name: str) -> Any:  # upstream exposed these two names
    if name == "SkyWalkingAgentAsync":
        return SkyWalkingAgent
    raise AttributeError(name)

