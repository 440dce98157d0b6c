"""PVM meters (``agent_pvm_meter_reporter_active``): gauges for the process, read once per report with the
standard library (Linux ``/proc`` for memory and total CPU; elsewhere those read 0). Names as upstream's, so the
OAP's PVM dashboards show them."""

from __future__ import annotations

import gc
import os
import threading
import time
from collections.abc import Callable

from skywalking.meter.gauge import Gauge
from skywalking.meter.meter_service import MeterService

NAMES = ("instance_pvm_total_cpu_utilization", "instance_pvm_process_cpu_utilization",
         "instance_pvm_total_mem_utilization", "instance_pvm_process_mem_utilization", "instance_pvm_gc_g0",
         "instance_pvm_gc_g1", "instance_pvm_gc_g2", "instance_pvm_gc_time", "instance_pvm_thread_active_count")


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii") as f:
            return f.read()
    except OSError:
        return ""


def _meminfo() -> dict[str, int]:
    out = {}
    for line in _read("/proc/meminfo").splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            out[key] = int(parts[0]) * 1024
    return out


class Sources:
    """The data sources; rates (CPU, collections, GC time) are since the previous read."""

    def __init__(self) -> None:
        self._proc = (time.monotonic(), sum(os.times()[:2]))
        self._total = self._cpu_times()
        self._collections = [s["collections"] for s in gc.get_stats()]
        self._mem_total = _meminfo().get("MemTotal", 0)  # fixed for the process's life: read once
        self._gc_ns = 0
        self._gc_started = 0
        self._lock = threading.Lock()

    @staticmethod
    def _cpu_times() -> tuple[int, int]:
        """(busy, all) jiffies of every CPU, from /proc/stat; (0, 0) elsewhere."""
        first = _read("/proc/stat").partition("\n")[0].split()
        if not first or first[0] != "cpu":
            return 0, 0
        values = [int(v) for v in first[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)
        return sum(values) - idle, sum(values)

    def total_cpu(self) -> float:
        busy, total = self._cpu_times()
        (busy0, total0), self._total = self._total, (busy, total)
        return 100.0 * (busy - busy0) / (total - total0) if total > total0 else 0.0

    def process_cpu(self) -> float:
        now = (time.monotonic(), sum(os.times()[:2]))
        (wall0, cpu0), self._proc = self._proc, now
        return 100.0 * (now[1] - cpu0) / (now[0] - wall0) if now[0] > wall0 else 0.0

    def total_mem(self) -> float:
        info = _meminfo()
        total, available = info.get("MemTotal", 0), info.get("MemAvailable", 0)
        return 100.0 * (total - available) / total if total else 0.0

    def process_mem(self) -> float:
        total = self._mem_total
        statm = _read("/proc/self/statm").split()
        rss = int(statm[1]) * os.sysconf("SC_PAGE_SIZE") if len(statm) > 1 else 0
        return 100.0 * rss / total if total else 0.0

    def collections(self, generation: int) -> int:
        now = gc.get_stats()[generation]["collections"]
        delta = now - self._collections[generation]
        self._collections[generation] = now
        return delta

    def gc_callback(self, phase: str, _info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter_ns()
        elif self._gc_started:
            self._gc_ns += time.perf_counter_ns() - self._gc_started
            self._gc_started = 0

    def gc_time_ms(self) -> float:
        ns, self._gc_ns = self._gc_ns, 0
        return ns / 1e6


_sources: Sources | None = None


def register(registry: MeterService) -> None:
    """Add the PVM gauges to ``registry`` (once per process; ``gc.callbacks`` times the collections)."""
    global _sources
    if _sources is None or _sources.gc_callback not in gc.callbacks:
        _sources = Sources()
        gc.callbacks.append(_sources.gc_callback)
    s = _sources
    reads: tuple[Callable[[], float], ...] = (
        s.total_cpu, s.process_cpu, s.total_mem, s.process_mem, lambda: s.collections(0), lambda: s.collections(1),
        lambda: s.collections(2), s.gc_time_ms, threading.active_count)
    for name, read in zip(NAMES, reads, strict=True):
        registry.register(name, lambda n=name, r=read: Gauge.Builder(n, r).create())  # type: ignore[misc]


def unregister() -> None:
    global _sources
    if _sources is not None and _sources.gc_callback in gc.callbacks:
        gc.callbacks.remove(_sources.gc_callback)
    _sources = None
