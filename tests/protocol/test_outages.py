"""The OAP going away and coming back, for real: the bundled collector killed and restarted on the same port.

Tracing resumes within seconds of the collector answering again; what was made meanwhile is delivered with the ids
the new collector issued; nothing reaches it under an id the old one issued; and the agent's books balance:
created = delivered + dropped, by reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tests.protocol.procs import Collector, Service, free_port, get_json, wait_for

RESUME_WITHIN = 5.0  # seconds from the collector answering again to the first segment it receives


# the agent's own defaults, not the fast ones the other protocol tests use
DEFAULTS = {"SW_AGENT_COLLECTOR_HEARTBEAT_PERIOD": "3", "SW_AGENT_RESET_COOL_DOWN": "1"}


def load(svc: Service, n: int) -> dict[str, Any]:
    return get_json(f"{svc.url}/load?n={n}")


def stop(svc: Service) -> dict[str, Any]:
    return get_json(f"{svc.url}/stop", timeout=30)


def received(collector: Collector, service: str) -> list[dict[str, Any]]:
    return [s for s in collector.api("/api/segments") if s["service"] == service]


def test_restart_resumes_within_seconds_and_delivers_what_was_made_meanwhile(spawn: Callable[..., Any]) -> None:
    first = spawn(Collector)
    port, http_port = first.grpc_port, first.http_port
    svc = spawn(Service, "svc-restart", first.grpc, **DEFAULTS)
    load(svc, 20)
    wait_for(lambda: svc.stats()["delivered"] == 20, what="20 segments delivered")
    first.stop(kill=True)
    for _ in range(3):  # made while the collector is down: queued, sent after the restart with the new ids
        load(svc, 10)
        time.sleep(1)
    second = spawn(Collector, grpc_port=port, http_port=http_port)
    ready = time.monotonic()
    wait_for(lambda: received(second, "svc-restart"), timeout=30, interval=0.05, what="a segment after the restart")
    resumed = time.monotonic() - ready
    print(f"tracing resumed {resumed:.2f} s after the collector answered again")
    assert resumed < RESUME_WITHIN
    wait_for(lambda: len(received(second, "svc-restart")) == 30, what="the 30 segments made during the outage")
    second.settled()
    assert second.api("/api/drops") == []
    final = stop(svc)
    assert final["created"] == final["delivered"] == 50 and final["dropped"] == {}
    assert final["resets"] == 1


def test_a_restart_between_two_batches_sends_nothing_under_old_ids(spawn: Callable[..., Any]) -> None:
    """The collector restarts while the agent has nothing to send and no heartbeat falls in between: the first
    batch after it goes over a new connection, which is checked (a ping) before segments go out; the new collector
    asks for a reset and the batch waits for the new ids instead of being dropped for unknown ones."""
    first = spawn(Collector)
    port, http_port = first.grpc_port, first.http_port
    svc = spawn(Service, "svc-quiet", first.grpc, SW_AGENT_COLLECTOR_HEARTBEAT_PERIOD="300")
    load(svc, 5)
    wait_for(lambda: svc.stats()["delivered"] == 5, what="5 segments delivered")
    time.sleep(1)  # the endpoint name registered after the send
    first.stop(kill=True)
    second = spawn(Collector, grpc_port=port, http_port=http_port)
    load(svc, 5)
    wait_for(lambda: len(received(second, "svc-quiet")) == 5, timeout=15, what="the 5 segments made after it")
    second.settled()
    assert second.api("/api/drops") == []
    final = stop(svc)
    assert final["created"] == final["delivered"] == 10 and final["resets"] == 1


def test_counts_add_up_through_an_outage_an_overflow_and_a_reset(spawn: Callable[..., Any]) -> None:
    port = free_port()
    svc = spawn(Service, "svc-books", f"127.0.0.1:{port}", SW_AGENT_REGISTER_WAIT="0",
                SW_AGENT_TRACE_REPORTER_MAX_BUFFER_SIZE="10", **DEFAULTS)
    load(svc, 25)  # no collector: 10 wait, 15 overflow
    stats = svc.stats()
    assert stats["created"] == 25 and stats["dropped"] == {"queue full": 15}
    assert stats["queued"] + stats["held"] == 10
    collector = spawn(Collector, grpc_port=port)
    wait_for(lambda: svc.stats()["delivered"] == 10, timeout=15, what="the 10 kept segments delivered")
    collector.api("/api/reset", post=True)  # the collector forgets every id
    wait_for(lambda: svc.stats()["resets"] == 1, timeout=10, what="the reset")
    load(svc, 5)
    wait_for(lambda: svc.stats()["delivered"] == 15, timeout=15, what="delivery under the new ids")
    final = stop(svc)
    assert final["created"] == 30 and final["delivered"] == 15 and final["dropped"] == {"queue full": 15}
    assert final["created"] == final["delivered"] + final["dropped_total"] + final["kept"]
    collector.settled()
    assert collector.api("/api/drops") == []
    # the stop-time summary is logged before /stop answers; the thread reading stderr may not have got to it yet
    lines = wait_for(lambda: (found := [line for line in svc.stderr if "dropped" in line])[1:] and found,
                     timeout=5, what="the stop-time drop summary")
    assert "dropped 1 segment(s): queue full (further drops are summed up every 30 s)" in lines[0]
    assert lines[1].rstrip().endswith("dropped 14 segment(s) since the last report (queue full: 14); in all 30 "
                                      "created, 15 delivered, 15 dropped"), lines
    assert len(lines) == 2, lines
