"""Ray workers and the OAP: a fresh worker traces its first task at once, with the OAP down, and registers
only because it traced something; a force-killed worker loses nothing that finished (issue 10, findings 4-6)."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.protocol.procs import ROOT, Collector, clean_env, free_port
from tests.ray.driver import run_driver

DRIVER = Path(__file__).parent / "apps" / "oap_down_driver.py"


def test_first_task_does_not_wait_for_a_down_oap() -> None:
    baseline = run_driver(DRIVER, "127.0.0.1:1", "none")["latency"]
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(DRIVER), f"127.0.0.1:{port}", "agent"], env=clean_env(), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()  # type: ignore
    collector = None
    try:
        result = json.loads(lines.get(timeout=180))
        oap_up_ms = time.time() * 1000
        collector = Collector(grpc_port=port)
        segments = collector.trace(result["trace"], 2)["segments"]  # held while the OAP was down, then sent
        ((worker, entry),) = [(seg, s) for seg in segments for s in seg["spans"]
                              if s["spanType"] == "Entry" and s["operationName"] == "Ray/Task/first"]
        assert entry["refs"]  # linked to the driver's exit span
        assert entry["startTime"] < oap_up_ms  # traced while the OAP was down: nothing waited for it
        assert f"-pid:{result['worker_pid']}@" in worker["serviceInstance"]
        # a down OAP delays no worker (it was 6 s before the fix). The bound is loose: on 2 cores a fresh worker's first
        # task is sometimes about 1 s slower whatever the OAP (seen on Ray 2.40, with and without the h2 transport);
        # the first-task cost itself is measured by `make bench` (bench_ray_start.py), not here
        assert result["latency"] < baseline + 3.0, (result["latency"], baseline)
        assert proc.wait(timeout=120) == 0, proc.stderr.read()[-3000:]  # type: ignore[union-attr]
        collector.settled()
        # one instance per process that traced: the driver and the one worker; Ray's idle workers none
        instances = [i for i in collector.api("/api/inventory")["instances"] if i["service"] == "ray-oap-down"]
        assert sorted(i["name"] for i in instances) == sorted({seg["serviceInstance"] for seg in segments})
        assert len(instances) == 2 and collector.api("/api/drops") == []
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if collector is not None:
            collector.stop()


def test_a_sigkilled_worker_loses_nothing_that_finished() -> None:
    """Ray force-kills workers (shutdown, scale-down, replica restarts). The task's segment was written ahead to
    the node's spool when it finished; another worker of the session delivers it, under the killed worker's
    identity (registered on its behalf), linked to the driver's exit span."""
    collector = Collector()
    try:
        result = run_driver(Path(__file__).parent / "apps" / "sigkill_driver.py", collector.grpc)
        segments = collector.trace(result["trace"], 2)["segments"]
        ((victim, entry),) = [(seg, s) for seg in segments for s in seg["spans"]
                              if s["spanType"] == "Entry" and s["operationName"] == "Ray/Task/victim"]
        assert entry["refs"] and f"-pid:{result['victim_pid']}@" in victim["serviceInstance"]
        collector.settled()
        assert collector.api("/api/drops") == []
    finally:
        collector.stop()


def test_a_fan_out_of_10000_tasks_stays_bounded() -> None:
    """One span submitting 10 000 tasks: its segment keeps 300 spans (the rest counted), the callees of the calls
    it did not record trace nothing (no orphan traces), and the plugin holds nothing once the calls are done."""
    from tests.ray.cluster import segments_of

    n = 10_000
    collector = Collector()
    try:
        result = run_driver(Path(__file__).parent / "apps" / "fanout_driver.py", collector.grpc, str(n), timeout=600)
        assert result["sum"] == n * (n - 1) // 2
        assert result["pending_refs"] == 0 and result["spans_over_limit"] == n - 299
        segments = segments_of(collector, "ray-fanout", 302)  # 2 of the driver, the warm-up leaf, 299 leaves
        driver = [seg for seg in segments if seg["spans"][-1]["operationName"] == "/fan-out"]
        assert len(driver) == 1 and len(driver[0]["spans"]) == 300 and driver[0]["isSizeLimited"]
        fan_trace = [seg for seg in segments if seg["traceId"] == result["trace"]]
        assert len(fan_trace) == 300  # nothing else: the 9 701 unrecorded calls started no trace of their own
        assert len({seg["traceId"] for seg in segments}) == 2  # the fan-out and the warm-up call
        collector.settled()
        assert len(collector.api("/api/segments?service=ray-fanout")) == 302
    finally:
        collector.stop()
