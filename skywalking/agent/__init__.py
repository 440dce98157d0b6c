"""Agent lifecycle: ``start()``, ``stop()``, ``started()``, ``set_identity()``.

``start()`` finalizes the configuration, installs the plugins and wires a reporter to the tracing
core. Tracing starts at once: the OAP's ids are looked up when segments are encoded, not when they are
made. It never raises into the application and a second call in the same process is a logged no-op.
``stop()`` flushes within a bounded time and never raises. ``set_identity()`` changes the service or
instance the process reports as (before or after ``start()``).
"""

from __future__ import annotations

import atexit
import functools
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from skywalking import config, loggings, plugins
from skywalking.agent import telemetry
from skywalking.bootstrap import prefork
from skywalking.loggings import logger
from skywalking.reporter import Reporter
from skywalking.reporter.session import IssuesIds
from skywalking.trace import context
from skywalking.trace.identity import Identity, new_identity
from skywalking.trace.tracer import TRACER

__all__ = ["SkyWalkingAgent", "agent", "report_with_backoff", "report_with_backoff_async", "set_identity", "start",
           "started", "stats", "stop"]

STOP_TIMEOUT = 5.0  # seconds agent.stop() / the exit flush may take at most

_INACTIVE = ("agent_log_reporter_active", "agent_meter_reporter_active", "agent_pvm_meter_reporter_active",
             "agent_profile_active")


class SkyWalkingAgent:
    """The process-wide agent (``skywalking.agent.agent``)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._started_pid = 0
        self._reporter: Reporter | None = None
        self._telemetry: telemetry.Telemetry | None = None  # logs and meters (v8)
        self._reported_inactive = False
        self._fork_hook = False
        self._master: prefork.Master | None = None  # set in the master of a pre-fork server
        self._base_instance = ""  # agent_instance_name before a forked child's suffix
        self._parent_ran = False  # forked from a process where the agent ran, and not restarted here

    def start(self, reporter: Reporter | None = None) -> None:
        """Start tracing in this process. ``reporter`` replaces the network reporter (tests use
        ``skywalking.reporter.memory.MemoryReporter``)."""
        try:
            with self._lock:
                if self._started_pid == os.getpid():
                    logger.info("agent already started in this process; start() ignored")
                    return
                if self._master is not None and not self._master.is_worker():
                    logger.debug("agent already set up to start in the %s workers; start() ignored",
                                 self._master.server)
                    return
                self._start(reporter)
        except Exception:
            logger.exception("agent failed to start; the application continues untraced")

    def _start(self, reporter: Reporter | None, may_defer: bool = True) -> None:
        level = "DEBUG" if config.agent_sw_python_cli_debug_enabled else config.agent_logging_level
        loggings.init(level)
        self._report_inactive()
        plugins.install()
        self._hook_fork()
        if reporter is None:
            master = prefork.detect() if may_defer else None
            if master is not None:
                self._defer(master)
                return
            reporter = _network_reporter()
        self._reporter = reporter
        self._started_pid = os.getpid()
        if reporter is not None:
            identity = _new_identity()
            eager = _register_eagerly()
            reporter.set_identity(identity, eager)
            reporter.start()
            _enable(reporter, identity)
            self._telemetry = telemetry.start(reporter)
            ids = _issued_ids(reporter)
            if ids is not None and eager and config.agent_register_wait > 0 \
                    and not ids.wait_ready(config.agent_register_wait):
                logger.warning("no instance id from the OAP within agent_register_wait=%ss; segments wait for it "
                               "and sw6 headers are skipped until then", config.agent_register_wait)
        atexit.register(self._atexit)
        logger.info("agent started: service %r, instance %r, protocol %s, headers %s", config.SERVICE_NAME,
                    config.agent_instance_name, config.agent_protocol_version, ",".join(config.PROPAGATION))

    def _report_inactive(self) -> None:
        """Configuration that does nothing, said once per process: unknown ``SW_*`` variables and inactive options
        the user set. In Ray workers (which inherit the node's environment, one line each) at DEBUG."""
        if self._reported_inactive:
            return
        self._reported_inactive = True
        from skywalking.bootstrap import ray_worker_process

        say = logger.debug if ray_worker_process() else logger.warning
        for warning in config.unknown_env():
            say(warning)
        if config.agent_protocol != "grpc" and config.agent_protocol_version == "v6":
            say("agent_protocol %r: OAP 6.6.0 receives only gRPC (no REST or Kafka receiver for trace protocol "
                "v2); reporting over grpc", config.agent_protocol)
        on = [name for name in _INACTIVE if getattr(config, name) and config.explicitly_set(name)] \
            if config.agent_protocol_version == "v6" else []  # under v8 they all run (skywalking.agent.telemetry)
        if on:
            (logger.debug if ray_worker_process() else logger.info)(
                "inactive options (OAP 6.6.0 has no receiver for them): %s", ", ".join(on))
        if config.agent_asyncio_enhancement and config.explicitly_set("agent_asyncio_enhancement"):
            logger.debug("agent_asyncio_enhancement is accepted but unused: one reporter thread serves all")

    def stop(self) -> None:
        """Stop tracing and flush (at most STOP_TIMEOUT seconds). Plugins stay patched but trace
        nothing; a later ``start()`` does not patch twice."""
        try:
            with self._lock:
                if self._master is not None:  # a pre-fork master: nothing started here
                    self._master = None
                    TRACER.pending = None
                if not self._started_pid:
                    return
                context.disable()
                reporter, self._reporter = self._reporter, None
                data, self._telemetry = self._telemetry, None
                self._started_pid = 0
                atexit.unregister(self._atexit)
            if data is not None:
                data.stop(STOP_TIMEOUT / 2)
            if reporter is not None:
                reporter.stop(STOP_TIMEOUT)
        except Exception:
            logger.exception("agent failed to stop cleanly")

    def started(self) -> bool:
        return self._started_pid == os.getpid()

    @property
    def reporter(self) -> Reporter | None:
        """The reporter segments go to while started."""
        return self._reporter if self.started() else None

    def stats(self) -> dict[str, Any]:
        """Where this process's segments went: ``created`` (finished and handed to the reporter), ``delivered``,
        ``dropped`` by reason and ``dropped_total``, ``kept`` (left in a spool at stop), and what is in flight
        (``queued``, ``held`` for ids), with the reporter's state (``last_error``, ``instance_id``, ...). Empty when
        the agent is not running in this process. Never raises."""
        try:
            reporter = self.reporter
            stats = getattr(reporter, "stats", None)
            out = dict(stats()) if stats is not None else {}
            data = self._telemetry
            if out and data is not None:
                out.update(data.stats())
            return out
        except Exception:
            logger.exception("agent failed to collect its stats")
            return {}

    def set_identity(self, service: str | None = None, instance: str | None = None) -> None:
        """Report as ``service`` (``agent_name``) and/or ``instance`` (``agent_instance_name``) from now on.
        Segments already started keep the identity they started with; a new identity registers with the OAP
        as the agent's registration mode says (on demand: with its first segment). Never raises."""
        try:
            with self._lock:
                if service:
                    config.agent_name = service
                if instance:
                    config.agent_instance_name = instance
                reporter = self._reporter
                if self._started_pid != os.getpid() or reporter is None:
                    return
                identity = _new_identity()
                reporter.set_identity(identity, _register_eagerly())
                ids = _issued_ids(reporter)
                context.set_identity(identity, ids.instance_id if ids is not None else 0)
            logger.info("reporting as service %r, instance %r", config.SERVICE_NAME, config.agent_instance_name)
        except Exception:
            logger.exception("agent failed to change its identity")

    def _atexit(self) -> None:
        self.stop()

    def _hook_fork(self) -> None:
        if not self._fork_hook:
            self._fork_hook = True
            os.register_at_fork(after_in_child=self._after_fork_in_child)

    def _defer(self, master: prefork.Master) -> None:
        """The master of a pre-fork server: report nothing from here; each worker starts the agent after the
        fork (the at-fork hook) or, where the server runs no at-fork hook (uWSGI), with its first span."""
        self._master = master
        TRACER.pending = self._start_in_worker
        logger.info("%s master: the agent starts in each worker after the fork (nothing is reported from the "
                    "master, pid %d)", master.server, os.getpid())

    def _start_in_worker(self) -> bool:
        """``TRACER.pending``: a span is wanted while the agent is not running; True if it now runs."""
        master = self._master
        if master is None or not master.is_worker():
            return False
        try:
            with self._lock:
                if self._master is master:
                    self._start_child()
        except Exception:
            logger.exception("agent failed to start in a pre-fork worker")
        return TRACER.reporter is not None

    def _start_child(self, reporter: Reporter | None = None) -> None:
        """Start in a forked child under an identity of its own: ``<instance name>-child(<pid>)``."""
        self._master = None
        TRACER.pending = None
        self._base_instance = self._base_instance or config.agent_instance_name
        config.agent_instance_name = f"{self._base_instance}-child({os.getpid()})"
        self._start(reporter, may_defer=False)

    def start_in_forked_child(self) -> bool:
        """Start in this process, a forked child of one where the agent ran (a worker pool's process, say), under
        an identity of its own as a pre-fork worker does. For plugins that know a fork is a worker: without
        this, such children trace nothing. True if the agent runs here now. Never raises."""
        try:
            with self._lock:
                if self._started_pid == os.getpid():
                    return True
                if not self._parent_ran:
                    return False
                self._parent_ran = False
                self._start_child()
                return self._started_pid == os.getpid()
        except Exception:
            logger.exception("agent failed to start in a forked child")
            return False

    def _after_fork_in_child(self) -> None:
        """The parent's threads are gone: a worker of a pre-fork master (or any child, with
        ``agent_experimental_fork_support``) starts afresh; other children trace nothing."""
        try:
            self._lock = threading.RLock()  # the parent's lock may have been held by another thread
            context.disable()
            reporter, self._reporter = self._reporter, None
            self._telemetry = None  # the parent's threads are gone; a restart makes new feeds
            TRACER.profiler = None
            sw_logging = sys.modules.get("skywalking.log.sw_logging")
            if sw_logging is not None:
                sw_logging.uninstall()
            restart = self._master is not None or (self._started_pid and config.agent_experimental_fork_support)
            self._parent_ran = bool(self._started_pid) and not restart
            self._started_pid = 0
            if not restart:
                TRACER.pending = None
                return
            if reporter is not None and not isinstance(reporter, _forkable()):
                reporter = None
            with self._lock:
                self._start_child(reporter)
        except Exception:
            logger.exception("agent failed to restart in a forked child")


def _forkable() -> tuple[type, ...]:
    from skywalking.reporter.memory import MemoryReporter
    return (MemoryReporter,)


def _new_identity() -> Identity:
    """This process as the configuration names it. Under v6 the OAP names an instance
    ``<service>-pid:<pid>@<host>`` from its properties; our instance name travels as a property."""
    props: list[tuple[str, str]] = []
    if config.agent_protocol_version == "v6":
        from skywalking.protocol_v6.registry import instance_properties

        props = instance_properties({"instance_name": config.agent_instance_name, **config.instance_properties()})
    return new_identity(config.SERVICE_NAME, config.agent_instance_name, props)


def _register_eagerly() -> bool:
    """``agent_registration``: ``auto`` registers on demand in Ray workers (most never trace anything),
    eagerly elsewhere (the first outgoing sw6 header then finds its ids)."""
    mode = config.agent_registration
    if mode == "auto":
        from skywalking.bootstrap import ray_worker_process

        return not ray_worker_process()
    return mode == "eager"


def _enable(reporter: Reporter, identity: Identity) -> None:
    ids = _issued_ids(reporter)
    context.enable(reporter.report, identity=identity, instance_id=ids.instance_id if ids is not None else 0,
                   resolve=ids.resolve if ids is not None else None,
                   note_endpoint=ids.note_endpoint if ids is not None else None,
                   protocol=config.agent_protocol_version,
                   sample_n_per_3_secs=config.sample_n_per_3_secs)


def _issued_ids(reporter: Reporter) -> IssuesIds | None:
    """The reporter's session if its backend issues ids for identities (sw6), else None."""
    session = reporter.session
    return session if isinstance(session, IssuesIds) else None


def _on_change(reporter: Reporter, identity: Identity, instance_id: int) -> None:
    """The OAP issued the id of an identity (v6): sw6 headers can name this process from now on."""
    if agent._reporter is reporter:
        context.set_instance_id(identity, instance_id)


def _on_reset(reporter: Reporter) -> None:
    """The OAP forgot us (v6 ServiceMetadataReset): tracing goes on; no sw6 header until registered again."""
    if agent._reporter is reporter:
        context.set_instance_id(TRACER.identity, 0)


def _network_reporter() -> Reporter:
    """The reporter for the configured transport and protocol version: HTTP and Kafka under v8, else gRPC."""
    if config.agent_protocol in ("http", "kafka") and config.agent_protocol_version == "v8":
        from skywalking.reporter.batch import create as create_batch

        try:
            return create_batch()
        except ImportError as exc:
            logger.error("agent_protocol=%s needs %s (pip install 'company-skywalking[%s]'); reporting over grpc",
                         config.agent_protocol, exc.name or exc, config.agent_protocol)
    from skywalking.reporter.grpc import create

    return create(on_change=_on_change, on_reset=_on_reset)


agent = SkyWalkingAgent()


def start(reporter: Reporter | None = None) -> None:
    agent.start(reporter)


def stop() -> None:
    agent.stop()


def started() -> bool:
    return agent.started()


def set_identity(service: str | None = None, instance: str | None = None) -> None:
    agent.set_identity(service, instance)


def stats() -> dict[str, Any]:
    """See ``SkyWalkingAgent.stats``."""
    return agent.stats()


BACKOFF_CAP = 60.0  # seconds, report_with_backoff's longest wait


def report_with_backoff(reporter_name: str, init_wait: float) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Upstream's decorator for its reporter loops, kept for code that used it: the decorated function is called
    again after each exception (logged as ``reporter_name``'s), waiting ``init_wait`` seconds doubled per
    consecutive failure (at most ``BACKOFF_CAP``), until it returns; its value is returned."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            wait = max(0.0, init_wait)
            while True:
                try:
                    return fn(*args, **kwargs)
                except Exception:
                    logger.exception("%s failed; retrying in %.1f s", reporter_name, wait)
                time.sleep(wait)
                wait = min(BACKOFF_CAP, wait * 2 or 0.1)

        return wrapper

    return decorate


def report_with_backoff_async(reporter_name: str,
                              init_wait: float) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``report_with_backoff`` for coroutine functions (waits with ``asyncio.sleep``)."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            import asyncio

            wait = max(0.0, init_wait)
            while True:
                try:
                    return await fn(*args, **kwargs)
                except Exception:
                    logger.exception("%s failed; retrying in %.1f s", reporter_name, wait)
                await asyncio.sleep(wait)
                wait = min(BACKOFF_CAP, wait * 2 or 0.1)

        return wrapper

    return decorate


def __getattr__(name: str) -> Any:  # upstream exposed these two names
    if name == "SkyWalkingAgentAsync":
        return SkyWalkingAgent
    raise AttributeError(name)

