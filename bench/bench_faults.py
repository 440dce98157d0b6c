"""Request latency of a traced app while its backend misbehaves (driven by bench/run.py ``--only faults``).

The app is tests/protocol/apps/service.py (a stdlib HTTP server whose ``GET /call`` makes one entry span, traced
through the public API); the faults are tools/fault_server.py's, the same as tests/faults. For each case the app
is started fresh, warmed up, then sent ``--requests`` sequential requests; the table gives p50 and p99 and their
ratio to the healthy case (the agent reporting to a working bundled collector) and to no agent at all.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from skywalking.collector.process import CollectorProcess

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
SERVICE = ROOT / "tests" / "protocol" / "apps" / "service.py"
FAULTS = ROOT / "tools" / "fault_server.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proc:
    def __init__(self, cmd: list[str], env: dict[str, str], ready: str) -> None:
        self.popen = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                      text=True, start_new_session=True)
        self.line = ""
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            if line.startswith(ready):
                self.line = line.strip()
                break
        if not self.line:
            raise RuntimeError(f"{cmd} did not start")

    def signal(self, sig: int) -> None:
        os.killpg(self.popen.pid, sig)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGKILL)
            self.popen.wait(10)


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SW_", "PYTHONPATH"))}
    base["PYTHONPATH"] = str(ROOT)
    base.update(extra)
    return base


def collector() -> CollectorProcess:
    return CollectorProcess("--no-print", python=PYTHON, env=env(), cwd=ROOT)


def measure(backend: str | None, requests: int, warmup: int, **extra: str) -> dict[str, float]:
    settings = {"SW_AGENT_NAME": "bench-faults", "SW_AGENT_REGISTER_WAIT": "0",
                "SW_AGENT_DISABLE_PLUGINS": "sw_http_server,sw_urllib_request", **extra}
    if backend is None:
        settings["SW_TEST_NO_AGENT"] = "1"
    else:
        settings["SW_AGENT_COLLECTOR_BACKEND_SERVICES"] = backend
    app = Proc([PYTHON, str(SERVICE)], env(**settings), "ready port=")
    url = f"http://127.0.0.1:{app.line.split('=')[1]}/call"
    try:
        times = []
        for i in range(warmup + requests):
            t0 = time.perf_counter()
            with urllib.request.urlopen(url, timeout=30) as resp:
                resp.read()
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    finally:
        app.stop()
    times.sort()
    return {"p50_ms": statistics.median(times) * 1e3, "p99_ms": times[int(len(times) * 0.99) - 1] * 1e3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=300)
    args = parser.parse_args()
    results: dict[str, Any] = {}
    results["no agent"] = measure(None, args.requests, args.warmup)
    col = collector()
    target = col.grpc
    try:
        results["healthy"] = measure(target, args.requests, args.warmup)
        results["TLS mismatch"] = measure(target, args.requests, args.warmup, SW_AGENT_FORCE_TLS="true")
        for mode, name in (("slow", "never answers"), ("error", "answers errors"), ("reset", "resets mid-stream")):
            fault = Proc([PYTHON, str(FAULTS), mode, target], env(), "ready port=")
            try:
                results[name] = measure(f"127.0.0.1:{fault.line.split('=')[1]}", args.requests, args.warmup)
            finally:
                fault.stop()
        half = collector()
        half.signal(signal.SIGSTOP)
        try:
            results["half-open (SIGSTOP)"] = measure(half.grpc, args.requests, args.warmup)
        finally:
            half.stop()
    finally:
        col.stop()
    results["name does not resolve"] = measure("no-such-host.invalid:11800", args.requests, args.warmup)
    results["connection refused"] = measure(f"127.0.0.1:{free_port()}", args.requests, args.warmup)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
