"""The fault suite: a traced app (tests/protocol/apps/service.py) whose backend misbehaves, on loopback only.

In every case the app's requests succeed, the agent's memory stays within its buffers, the books balance
(created = delivered + dropped + kept) and the log says what went wrong in gRPC's own words. Latency under these
faults is measured by ``make bench`` (bench/bench_faults.py), not asserted here.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from tests.protocol.procs import ROOT, Collector, Proc, Service, clean_env, free_port, get_json, wait_for

BUFFER = 300
LOADS, PER_LOAD, CALLS = 20, 100, 50
RSS_BOUND = 64 * 1024 * 1024  # bytes the app may grow by while 2 000 segments cannot be delivered


class FaultServer(Proc):
    def __init__(self, mode: str, *args: str) -> None:
        super().__init__([sys.executable, str(ROOT / "tools" / "fault_server.py"), mode, *args], clean_env(),
                         "ready port=")
        self.address = f"127.0.0.1:{self.ready_line.split('=')[1]}"


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def exercise(svc: Service) -> dict[str, Any]:
    """The app's workload under the fault: segments in bulk and ordinary requests; then the agent stops (at most
    5 s) and its final books are returned."""
    get_json(f"{svc.url}/load?n=10")  # warm up before the memory baseline
    before = rss(svc.popen.pid)
    for _ in range(LOADS):
        stats = get_json(f"{svc.url}/load?n={PER_LOAD}")
        assert stats["queued"] <= BUFFER and stats["held"] <= BUFFER
    for _ in range(CALLS):
        assert svc.call()["trace_id"] != "N/A"
    grown = rss(svc.popen.pid) - before
    assert grown < RSS_BOUND, f"the app grew by {grown / 2**20:.1f} MiB"
    final = get_json(f"{svc.url}/stop", timeout=30)
    assert final["created"] == 10 + LOADS * PER_LOAD + CALLS
    assert final["created"] == final["delivered"] + final["dropped_total"] + final["kept"], final
    return final


def service(spawn: Callable[..., Any], backend: str, **env: str) -> Service:
    return spawn(Service, "svc-fault", backend, SW_AGENT_REGISTER_WAIT="0",
                 SW_AGENT_TRACE_REPORTER_MAX_BUFFER_SIZE=str(BUFFER), **env)


def error_lines(svc: Service) -> list[str]:
    return [line for line in svc.stderr if "backend " in line and "retrying" in line]


def test_backend_never_answers(spawn: Callable[..., Any]) -> None:
    """Calls hang until their deadlines: the app does not wait, stop gives up after its 5 s and counts the rest."""
    fault = spawn(FaultServer, "slow")
    svc = service(spawn, fault.address)
    final = exercise(svc)
    assert final["delivered"] == 0


def test_backend_answers_errors(spawn: Callable[..., Any]) -> None:
    fault = spawn(FaultServer, "error")
    svc = service(spawn, fault.address)
    final = exercise(svc)
    assert final["delivered"] == 0 and final["failures"] >= 1
    assert any("INTERNAL: fault server: internal error" in line for line in error_lines(svc)), svc.stderr


def test_connections_reset_in_the_middle_of_a_stream(spawn: Callable[..., Any]) -> None:
    collector = spawn(Collector)
    proxy = spawn(FaultServer, "reset", collector.grpc)
    svc = service(spawn, proxy.address, SW_AGENT_COLLECTOR_HEARTBEAT_PERIOD="1")
    final = exercise(svc)
    assert final["failures"] >= 1
    collector.settled()
    assert collector.api("/api/drops") == []  # what got through before a reset was whole and valid


def test_half_open_backend(spawn: Callable[..., Any]) -> None:
    """The collector is stopped (SIGSTOP) after the agent registered: connections stay open, nothing answers."""
    collector = spawn(Collector)
    svc = service(spawn, collector.grpc)
    wait_for(lambda: get_json(f"{svc.url}/stats")["instance_id"] > 0, what="registration")
    os.killpg(collector.popen.pid, signal.SIGSTOP)
    try:
        exercise(svc)
    finally:
        os.killpg(collector.popen.pid, signal.SIGCONT)


def test_backend_name_that_does_not_resolve(spawn: Callable[..., Any]) -> None:
    svc = service(spawn, "no-such-host.invalid:11800")
    final = exercise(svc)
    assert final["delivered"] == 0
    (line, *_) = error_lines(svc)
    assert "backend no-such-host.invalid:11800: UNAVAILABLE: " in line and "resolv" in line.lower(), line
    # stop logged it before answering /stop; the thread that reads the app's stderr may not have got to it yet
    stop_lines = wait_for(lambda: [line for line in svc.stderr if "segment(s) not sent before stop" in line],
                          timeout=5, what="the stop line")
    assert stop_lines and all("no-such-host.invalid:11800" in line and "(last error: UNAVAILABLE: " in line
                              for line in stop_lines), stop_lines


def test_connection_refused(spawn: Callable[..., Any]) -> None:
    port = free_port()
    svc = service(spawn, f"127.0.0.1:{port}")
    exercise(svc)
    (line, *_) = error_lines(svc)
    assert f"backend 127.0.0.1:{port}: UNAVAILABLE: " in line and "Connection refused" in line, line


def test_tls_against_a_plaintext_backend(spawn: Callable[..., Any]) -> None:
    collector = spawn(Collector)
    svc = service(spawn, collector.grpc, SW_AGENT_FORCE_TLS="true")
    exercise(svc)
    (line, *_) = error_lines(svc)
    assert "UNAVAILABLE: " in line and "handshake" in line.lower(), line


def test_the_collector_survives_malformed_input(spawn: Callable[..., Any]) -> None:
    """10 000 malformed gRPC messages and 10 000 malformed HTTP requests, and 500 connections that speak no
    HTTP/2 at all: the bundled collector keeps serving."""
    collector = spawn(Collector)
    host, port = "127.0.0.1", collector.grpc_port
    channel = grpc.insecure_channel(collector.grpc)
    collect = channel.stream_unary("/TraceSegmentReportService/collect", request_serializer=lambda b: b,
                                   response_deserializer=lambda b: b)
    ping = channel.unary_unary("/ServiceInstancePing/doPing", request_serializer=lambda b: b,
                               response_deserializer=lambda b: b)
    garbage = [os.urandom(n % 300 + 1) for n in range(100)]
    for _ in range(50):  # 50 streams of 100 undecodable segments
        try:
            collect(iter(garbage), timeout=10)
        except grpc.RpcError:
            pass
    for i in range(5000):
        try:
            ping(garbage[i % 100], timeout=10)
        except grpc.RpcError:
            pass
    channel.close()
    for i in range(500):  # not HTTP/2
        with socket.create_connection((host, port), timeout=5) as s:
            s.sendall(garbage[i % 100] * 3)
    http_host, http_port = collector.http.rsplit(":", 1)
    bad = [b"GET /api/segments HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", b"\x00\x01garbage\r\n\r\n",
           b"POST /api/none HTTP/1.1\r\nContent-Length: 99999999\r\n\r\nab",
           b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n"]

    def hammer(n: int) -> None:
        for i in range(n):
            try:
                with socket.create_connection((http_host, int(http_port)), timeout=5) as s:
                    s.sendall(bad[i % len(bad)])
                    s.shutdown(socket.SHUT_WR)
                    s.recv(1024)
            except OSError:
                pass

    threads = [threading.Thread(target=hammer, args=(2500,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert collector.popen.poll() is None
    svc = spawn(Service, "svc-after-garbage", collector.grpc)
    resp = svc.call()
    collector.trace(resp["trace_id"], 1)
    with urllib.request.urlopen(f"http://{collector.http}/api/stats", timeout=5) as r:
        assert r.status == 200


def test_a_short_script_is_delivered_or_says_why(spawn: Callable[..., Any]) -> None:
    """``sw-python run`` on a script that ends at once: with no register wait, its segment still reaches the
    collector (the exit flush registers first); with no collector, it says what it could not send and why."""
    collector = spawn(Collector)
    script = ("from skywalking.trace.context import get_context\n"
              "with get_context().new_entry_span('/short'):\n    pass\n")
    sw_python = str(Path(sys.executable).parent / "sw-python")
    env = clean_env(SW_AGENT_NAME="svc-short", SW_AGENT_COLLECTOR_BACKEND_SERVICES=collector.grpc)
    done = subprocess.run([sw_python, "run", sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    wait_for(lambda: [s for s in collector.api("/api/segments") if s["service"] == "svc-short"], timeout=10,
             what="the short script's segment")
    env["SW_AGENT_COLLECTOR_BACKEND_SERVICES"] = f"127.0.0.1:{free_port()}"
    done = subprocess.run([sw_python, "run", sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0
    assert "1 segment(s) not sent before stop: the OAP at 127.0.0.1:" in done.stderr, done.stderr
    assert "issued no id for the instance they name within 5 s (last error: UNAVAILABLE: failed to connect" \
        in done.stderr, done.stderr
