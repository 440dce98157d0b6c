"""Real processes for the protocol tests: the bundled collector and traced HTTP services."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from skywalking.collector.process import CollectorProcess

ROOT = Path(__file__).resolve().parents[2]
SERVICE = Path(__file__).parent / "apps" / "service.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, interval: float = 0.1, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


def get_json(url: str, data: bytes | None = None, timeout: float = 10.0) -> Any:
    with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=timeout) as resp:
        return json.load(resp)


class Proc:
    """A child process whose stdout/stderr are collected by a thread; waits for a ready line."""

    def __init__(self, cmd: list[str], env: dict[str, str], ready: str, timeout: float = 30.0) -> None:
        self.popen = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, start_new_session=True)
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._ready = threading.Event()
        self.ready_line = ""
        for stream, sink in ((self.popen.stdout, self.stdout), (self.popen.stderr, self.stderr)):
            threading.Thread(target=self._pump, args=(stream, sink, ready), daemon=True).start()
        if not self._ready.wait(timeout):
            self.stop()
            raise AssertionError(f"{cmd} not ready:\n{''.join(self.stdout)}\n{''.join(self.stderr)}")

    def _pump(self, stream: Any, sink: list[str], ready: str) -> None:
        for line in stream:
            sink.append(line)
            if line.startswith(ready) and not self._ready.is_set():
                self.ready_line = line.strip()
                self._ready.set()

    def stop(self, kill: bool = False) -> None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL if kill else signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(10)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SW_", "PYTHONPATH"))}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


class Collector(CollectorProcess):
    """The shared collector subprocess (skywalking.collector.process) with short delays and a JSON client."""

    def __init__(self, grpc_port: int = 0, http_port: int = 0, register_delay: float = 0.2, *extra: str) -> None:
        super().__init__("--register-delay", str(register_delay), "--print-delay", "0.5", *extra,
                         grpc_port=grpc_port, http_port=http_port, env=clean_env(), cwd=ROOT)

    @property
    def stdout(self) -> list[str]:
        return self.stdout_lines

    @property
    def stderr(self) -> list[str]:
        return self.stderr_lines

    def api(self, path: str, post: bool = False) -> Any:
        return get_json(f"http://{self.http}{path}", b"" if post else None)

    def trace(self, trace_id: str, segments: int) -> dict[str, Any]:
        def got() -> dict[str, Any] | None:
            try:
                trace = self.api(f"/api/traces/{trace_id}")
            except OSError:
                return None
            return trace if len(trace.get("segments", [])) >= segments else None

        return wait_for(got, what=f"{segments} segment(s) of trace {trace_id}")

    def segments(self, count: int) -> list[dict[str, Any]]:
        """Every received segment, once there are at least ``count``."""
        def got() -> list[dict[str, Any]] | None:
            segments = self.api("/api/segments")
            return segments if len(segments) >= count else None

        return wait_for(got, what=f"{count} segments")

    def settled(self) -> None:
        """No segment waits for OAP's retry window any more."""
        wait_for(lambda: not self.api("/api/pending"), timeout=15, what="pending segments to settle")


class Service(Proc):
    def __init__(self, name: str, backend: str, protocol: str = "v6", **env: str) -> None:
        settings = {"SW_AGENT_NAME": name, "SW_AGENT_COLLECTOR_BACKEND_SERVICES": backend,
                    "SW_AGENT_PROTOCOL_VERSION": protocol, "SW_AGENT_REGISTER_WAIT": "15",
                    "SW_AGENT_COLLECTOR_HEARTBEAT_PERIOD": "1", "SW_AGENT_RESET_COOL_DOWN": "0.5",
                    "SW_AGENT_INSTANCE_NAME": f"{name}-instance",
                    # traced by hand through the public API: the stdlib HTTP plugins would trace it twice
                    "SW_AGENT_DISABLE_PLUGINS": "sw_http_server,sw_urllib_request"}
        settings.update(env)
        super().__init__([sys.executable, str(SERVICE)], clean_env(**settings), "ready port=")
        self.port = int(self.ready_line.split("=")[1])
        self.url = f"http://127.0.0.1:{self.port}"

    def call(self, path: str = "/call", headers: dict[str, str] | None = None, **query: str) -> dict[str, Any]:
        url = f"{self.url}{path}" + (f"?{urlencode(query)}" if query else "")
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as resp:
            return json.load(resp)

    def stats(self) -> dict[str, Any]:
        return get_json(f"{self.url}/stats")
