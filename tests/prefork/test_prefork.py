"""Pre-fork servers, for real: gunicorn and uWSGI processes under ``sw-python run`` (no flag, and ``-p``) and with
``agent.start()`` in a preloaded app, reporting to the bundled collector.

Each case sends REQUESTS requests and checks: one entry span received per request; every worker reports as an
instance of its own (its pid in the instance's properties, one instance per pid); the master registers nothing;
gRPC printed no fork warning.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.protocol.procs import ROOT, Collector, clean_env, free_port, wait_for

REQUESTS = 36
BIN = Path(sys.executable).parent
APPS = Path(__file__).parent / "apps"
GRPC_FORK_WARNINGS = ("skipping fork() handlers", "Fork support is only compatible", "fork_posix")


def _have(tool: str) -> bool:
    return (BIN / tool).exists()


class Server:
    """A pre-fork server started under the test's environment; stopped gracefully (gunicorn: SIGTERM, uWSGI:
    SIGINT), killed if it does not stop."""

    def __init__(self, cmd: list[str], env: dict[str, str], stop_signal: int) -> None:
        self.stop_signal = stop_signal
        self.log = open(f"/tmp/prefork-{os.getpid()}-{time.monotonic_ns()}.log", "w+")
        self.popen = subprocess.Popen(cmd, env=env, cwd=APPS, stdout=self.log, stderr=subprocess.STDOUT,
                                      start_new_session=True)

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text()

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, self.stop_signal)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(10)
        self.log.close()
        os.unlink(self.log.name)


def _get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.read().decode()
    except OSError:
        return None


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    col = Collector()
    yield col
    col.stop()


CASES = {
    # name: (server, arguments, sw-python run options, env)
    "gunicorn-sync": ("gunicorn", ["-w", "3", "prefork_app:app"], [], {}),
    "gunicorn-sync-preload": ("gunicorn", ["-w", "3", "--preload", "prefork_app:app"], [], {}),
    "gunicorn-gthread": ("gunicorn", ["-w", "2", "-k", "gthread", "--threads", "4", "prefork_app:app"], [], {}),
    "gunicorn-uvicorn": ("gunicorn", ["-w", "2", "-k", "uvicorn.workers.UvicornWorker", "prefork_app:asgi"], [], {}),
    "gunicorn-p": ("gunicorn", ["-w", "3", "prefork_app:app"], ["-p"], {}),
    "gunicorn-preload-agent-in-app": ("gunicorn", ["-w", "3", "--preload", "prefork_app:app"], None,
                                      {"SW_TEST_START_IN_APP": "1"}),
    "uwsgi-master": ("uwsgi", ["--master", "--processes", "2"], [], {}),
    "uwsgi-lazy-apps": ("uwsgi", ["--master", "--processes", "2", "--lazy-apps"], [], {}),
    "uwsgi-threads": ("uwsgi", ["--master", "--processes", "2", "--enable-threads", "--threads", "2"], [], {}),
    "uwsgi-p": ("uwsgi", ["--master", "--processes", "2"], ["-p"], {}),
}


def _command(server: str, args: list[str], port: int, sw_python: list[str] | None) -> list[str]:
    if server == "gunicorn":
        cmd = [str(BIN / "gunicorn"), "-b", f"127.0.0.1:{port}", "--graceful-timeout", "5", *args]
    else:
        cmd = [str(BIN / "uwsgi"), "--http-socket", f"127.0.0.1:{port}", "--wsgi-file", "prefork_app.py",
               "--callable", "app", "--need-app", "--die-on-term", *args]
    return cmd if sw_python is None else [str(BIN / "sw-python"), "run", *sw_python, *cmd]


@pytest.mark.parametrize("case", list(CASES))
def test_every_worker_reports_as_its_own_instance(collector: Collector, case: str) -> None:
    server, args, sw_python, extra = CASES[case]
    if not _have(server):
        pytest.skip(f"{server} is not installed")
    service = f"prefork-{case}"
    port = free_port()
    env = clean_env(SW_AGENT_NAME=service, SW_AGENT_COLLECTOR_BACKEND_SERVICES=collector.grpc,
                    SW_AGENT_INSTANCE_NAME="web", PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(APPS)])
    proc = Server(_command(server, args, port, sw_python), env,
                  signal.SIGTERM if server == "gunicorn" else signal.SIGINT)
    try:
        wait_for(lambda: _get(f"http://127.0.0.1:{port}/"), timeout=30, what=f"{case} to serve")
        before = 1  # the readiness probe that got an answer
        pids = [_get(f"http://127.0.0.1:{port}/") for _ in range(REQUESTS)]
        served = {int(p.split("=")[1]) for p in pids if p}
        # the probe may have been answered by a worker that served none of the requests

        assert len(pids) == REQUESTS and None not in pids
        wait_for(lambda: len(_entries(collector, service)) >= before + REQUESTS, timeout=20,
                 what=f"{REQUESTS} entry spans of {service}")
        time.sleep(1)  # nothing more arrives
        entries = _entries(collector, service)
        assert len(entries) == before + REQUESTS, f"{len(entries)} entry segments for {before + REQUESTS} requests"
        instances = _instances(collector, service)
        master = proc.popen.pid
        assert master not in instances.values(), "the master registered an instance"
        assert len(set(instances.values())) == len(instances), f"a pid registered twice: {instances}"
        reporting = {seg["serviceInstance"] for seg in entries}
        assert reporting <= set(instances), (reporting, instances)
        assert {instances[name] for name in reporting} >= served  # each worker under its own instance
        output = proc.output()
        assert not [w for w in GRPC_FORK_WARNINGS if w in output], output[-3000:]
    finally:
        proc.stop()


def _entries(collector: Collector, service: str) -> list[dict]:
    return [seg for seg in collector.api("/api/segments") if seg["service"] == service
            and any(span["spanType"] == "Entry" for span in seg["spans"])]


def _instances(collector: Collector, service: str) -> dict[str, int]:
    """Instance name -> pid (``process_no``) of every instance registered for ``service``."""
    inventory = collector.api("/api/inventory")
    (sid,) = [s["id"] for s in inventory["services"] if s["name"] == service]
    return {i["name"]: int(i["properties"]["process_no"]) for i in inventory["instances"] if i["serviceId"] == sid}


V8_CASES = ("gunicorn-sync-preload", "gunicorn-preload-agent-in-app", "uwsgi-master", "uwsgi-lazy-apps")


@pytest.mark.parametrize("case", V8_CASES)
def test_under_v8_every_worker_reports_segments_logs_and_meters_and_the_master_nothing(collector: Collector,
                                                                                        case: str) -> None:
    """Under v8 each worker also runs the log reporter and the meter thread after the fork: one log record per
    request, in the request's trace, from the worker that served it; meters from workers only."""
    server, args, sw_python, extra = CASES[case]
    if not _have(server):
        pytest.skip(f"{server} is not installed")
    service = f"prefork-v8-{case}"
    port = free_port()
    env = clean_env(SW_AGENT_NAME=service, SW_AGENT_COLLECTOR_BACKEND_SERVICES=collector.grpc,
                    SW_AGENT_INSTANCE_NAME="web", SW_AGENT_PROTOCOL_VERSION="v8", SW_AGENT_METER_REPORTER_PERIOD="1",
                    PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(APPS)])
    proc = Server(_command(server, args, port, sw_python), env,
                  signal.SIGTERM if server == "gunicorn" else signal.SIGINT)
    try:
        wait_for(lambda: _get(f"http://127.0.0.1:{port}/"), timeout=30, what=f"{case} to serve")
        pids = [_get(f"http://127.0.0.1:{port}/") for _ in range(REQUESTS)]
        assert None not in pids
        served = {int(p.split("=")[1]) for p in pids if p}
        total = REQUESTS + 1  # and the readiness probe
        wait_for(lambda: len(_entries(collector, service)) >= total, timeout=20, what="entry spans")
        logs = wait_for(lambda: (got := collector.api(f"/api/logs?service={service}")) and len(got) >= total
                        and got, timeout=20, what=f"{total} log records")
        time.sleep(1.5)  # nothing more arrives, and a meter period passes
        entries = _entries(collector, service)
        logs = collector.api(f"/api/logs?service={service}")
        assert len(entries) == total and len(logs) == total
        by_segment = {seg["segmentId"]: seg for seg in entries}
        master = proc.popen.pid
        for log in logs:
            pid = int(log["body"].rsplit(" ", 1)[1])
            assert log["serviceInstance"] == f"web-child({pid})" and pid != master
            segment = by_segment[log["traceContext"]["traceSegmentId"]]  # the request's own segment
            assert segment["serviceInstance"] == log["serviceInstance"]
        assert {int(log["body"].rsplit(" ", 1)[1]) for log in logs} >= served
        meters = collector.api(f"/api/meters?service={service}")
        instances = {m["serviceInstance"] for m in meters}
        assert instances and all(i.startswith("web-child(") for i in instances)
        assert f"web-child({master})" not in instances
        output = proc.output()
        assert not [w for w in GRPC_FORK_WARNINGS if w in output], output[-3000:]
    finally:
        proc.stop()


def test_master_detection_needs_a_server() -> None:
    """Outside gunicorn and uWSGI (this very process), nothing is a pre-fork master."""
    from skywalking.bootstrap import prefork

    assert prefork.detect() is None



