"""``loguru``: every record gets ``extra["tid"]``, the current trace id (the same text as sw_logging's ``%(tid)s``:
``a.b.c`` under v6, the sw8 id under v8, ``N/A`` outside a trace), so that formats can show it as ``{extra[tid]}``.

A patcher put in front of the logger core's own sets it (one given later to ``logger.configure(patcher=...)`` is
put behind ours too). It runs at call time in the thread that logs, so ``enqueue=True`` sinks get the right id,
and ``Logger._log`` stays unwrapped (loguru finds the caller's file and line by frame depth). A value bound by
the user (``bind``, ``contextualize``) is kept; a default set with ``configure(extra=...)`` only outside traces.

While the log reporter runs (v8), the same patcher hands each record to it (``sw_logging.offer_loguru``)."""

from __future__ import annotations

import weakref
from typing import Any

from skywalking.log import sw_logging
from skywalking.loggings import logger
from skywalking.plugins import Plugin
from skywalking.plugins.sw_logging import NO_TRACE, current_trace_id

_UNSET = object()


class TidPatcher:
    """A loguru core patcher: sets ``extra["tid"]``, then calls the patcher it replaced (``inner``).
    A module-level class, so that a logger pickled for a child process stays picklable."""

    __slots__ = ("core", "inner")

    def __init__(self, core: Any, inner: Any = None) -> None:
        self.core = core
        self.inner = inner

    def __call__(self, record: dict[str, Any]) -> None:
        try:
            extra = record["extra"]
            value = extra.get("tid", _UNSET)
            if value is _UNSET:
                extra["tid"] = current_trace_id()
            elif value is self.core.extra.get("tid", _UNSET):  # the configured default, not a bound value
                tid = current_trace_id()
                if tid != NO_TRACE:
                    extra["tid"] = tid
        except Exception:  # never into the application
            logger.debug("sw_loguru: no tid for a record", exc_info=True)
        if sw_logging.installed():
            sw_logging.offer_loguru(record)
        if self.inner is not None:
            self.inner(record)


class LoguruPlugin(Plugin):
    name = "sw_loguru"
    instruments = ("loguru>=0.6",)
    modules = ("loguru",)
    note = ("adds `extra[\"tid\"]` (the trace id) to every loguru record, for `{extra[tid]}` in formats; under v8 "
            "reports loguru records with the log reporter")

    def __init__(self) -> None:
        super().__init__()
        self._cores: weakref.WeakSet[Any] = weakref.WeakSet()

    def _install(self) -> None:
        import loguru

        self._put_first(loguru.logger._core)  # type: ignore[attr-defined]  # private, not in loguru's stubs
        self.wrap("loguru._logger", "Logger.configure", self._configure)

    def _put_first(self, core: Any) -> None:
        with core.lock:
            if not isinstance(core.patcher, TidPatcher):
                core.patcher = TidPatcher(core, core.patcher)
        self._cores.add(core)

    def _configure(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        patcher = kwargs.get("patcher")
        core = getattr(instance, "_core", None)
        if patcher is not None and not isinstance(patcher, TidPatcher) and core is not None:
            kwargs = {**kwargs, "patcher": TidPatcher(core, patcher)}
            self._cores.add(core)
        return wrapped(*args, **kwargs)

    def _uninstall(self) -> None:
        self._restore()
        for core in list(self._cores):
            with core.lock:
                if isinstance(core.patcher, TidPatcher):
                    core.patcher = core.patcher.inner
        self._cores = weakref.WeakSet()


plugin = LoguruPlugin()
