"""Logs and meters under v8, end to end: a process under the agent (apps/telemetry_app.py) reports to the bundled
collector's ``LogReportService`` and ``MeterReportService``; under v6 nothing is installed and nothing is sent."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.protocol.procs import ROOT, Collector, clean_env, wait_for

APP = Path(__file__).parent / "apps" / "telemetry_app.py"


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    col = Collector()
    yield col
    col.stop()


def run(collector: Collector, scenario: str, protocol: str = "v8", *args: str,
        **env: str) -> tuple[dict[str, Any], str]:
    settings = {"SW_AGENT_NAME": f"telemetry-{scenario}", "SW_AGENT_COLLECTOR_BACKEND_SERVICES": collector.grpc,
                "SW_AGENT_PROTOCOL_VERSION": protocol, "SW_AGENT_INSTANCE_NAME": f"{scenario}-1",
                "SW_AGENT_METER_REPORTER_PERIOD": "1", **env}
    done = subprocess.run([sys.executable, str(APP), scenario, *args], env=clean_env(**settings), cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    lines = [line for line in done.stdout.splitlines() if line.startswith("result=")]
    assert done.returncode == 0 and lines, done.stdout + done.stderr
    return json.loads(lines[0][len("result="):]), done.stderr


def test_logs_carry_their_trace_context_level_tags_and_no_credentials(collector: Collector) -> None:
    result, _ = run(collector, "logs", SW_AGENT_LOG_REPORTER_SAFE_MODE="true")
    logs = wait_for(lambda: collector.api("/api/logs?service=telemetry-logs") or None, what="logs")
    assert result["stats"]["log"]["created"] == result["stats"]["log"]["delivered"] == 3 == len(logs)
    by_text = {d["tags"]["level"] + " " + d["body"].split(" - ", 1)[1].splitlines()[0]: d for d in logs}
    assert set(by_text) == {"WARNING order 7 for bob", "ERROR calling http://db.local/stock failed",
                            "ERROR from a thread without a span"}
    warning = by_text["WARNING order 7 for bob"]
    assert warning["traceContext"] == {"traceId": result["traceId"], "traceSegmentId": result["segmentId"],
                                       "spanId": result["spanId"]}
    assert warning["endpoint"] == "/orders/{id}"
    assert warning["serviceInstance"] == "logs-1"
    assert warning["tags"] == {"level": "WARNING", "logger": "shop.orders", "thread": "MainThread"}
    error = by_text["ERROR calling http://db.local/stock failed"]
    assert "KeyError: 'stock'" in error["body"] and "secret" not in error["body"]
    outside = by_text["ERROR from a thread without a span"]
    assert "traceContext" not in outside and outside["endpoint"] == "" and outside["tags"]["thread"] == "worker-1"
    assert result["patched"] and result["restored"]
    segment = collector.trace(result["traceId"], 1)["segments"][0]
    assert segment["segmentId"] == result["segmentId"]


def test_unformatted_logs_send_the_template_and_its_arguments(collector: Collector) -> None:
    run(collector, "logs", SW_AGENT_NAME="telemetry-raw", SW_AGENT_LOG_REPORTER_FORMATTED="false",
        SW_AGENT_LOG_REPORTER_LEVEL="INFO")
    logs = wait_for(lambda: collector.api("/api/logs?service=telemetry-raw") or None, what="logs")
    by_body = {d["body"]: d for d in logs}
    assert "below the reporter's level" in by_body  # INFO is reported at level INFO
    order = by_body["order %s for %s"]
    assert order["tags"]["argument.0"] == "7" and order["tags"]["argument.1"] == "bob"
    failed = by_body["calling http://bob:secret@db.local/stock failed"]  # safe mode off: unchanged
    assert "KeyError: 'stock'" in failed["tags"]["exception"]


def test_meters_report_values_labels_and_pvm_gauges_each_period(collector: Collector) -> None:
    result, _ = run(collector, "meters", "v8", "2.5")
    meters = wait_for(lambda: collector.api("/api/meters?service=telemetry-meters") or None, what="meters")
    by_name: dict[str, list[dict[str, Any]]] = {}
    for m in meters:
        by_name.setdefault(m["name"], []).append(m)
    assert [m["value"] for m in by_name["orders_total"]][-1] == 3.0  # the final flush at stop saw the last one
    assert by_name["orders_total"][0]["labels"] == {"shop": "north"}
    assert by_name["queue_depth"][0]["labels"] == {"queue": "q1"} and by_name["queue_depth"][0]["value"] == 100.0
    rates = [m["value"] for m in by_name["orders_rate"]]
    assert rates[0] == 5.0 and set(rates[1:]) == {0.0}  # RATE reports what was added since the last report
    hist = by_name["latency_ms"][-1]
    assert [(b["bucket"], b["count"]) for b in hist["buckets"]] == [(0.0, 1), (10.0, 2), (50.0, 1), (100.0, 1)]
    assert {"instance_pvm_process_cpu_utilization", "instance_pvm_thread_active_count",
            "instance_pvm_gc_g0", "instance_pvm_total_mem_utilization"} <= set(by_name)
    thread = result["stats"]["meter"]["thread"]
    assert thread["periods"] >= 3 and thread["cpu_ms_last_period"] >= 0
    assert result["stats"]["meter"]["created"] == result["stats"]["meter"]["delivered"]
    assert "SkyWalkingMeter" in result["threads"]


def test_under_v6_nothing_is_installed_and_the_user_is_told_once(collector: Collector) -> None:
    before = collector.api("/api/stats")
    result, stderr = run(collector, "logs", "v6", SW_AGENT_NAME="telemetry-v6", SW_AGENT_LOG_REPORTER_ACTIVE="true")
    assert not result["patched"] and result["stats"] == {}
    assert not {"SkyWalkingMeter", "SkyWalkingDataSender", "SkyWalkingProfiler"} & set(result["threads"])
    told = [line for line in stderr.splitlines() if "inactive options" in line]
    assert len(told) == 1 and "agent_log_reporter_active" in told[0] and "OAP 6.6.0" in told[0]
    after = collector.api("/api/stats")
    assert after["logsReceived"] == before["logsReceived"]
    assert after["meterValuesReceived"] == before["meterValuesReceived"]
    # upstream's defaults turn them on: said only when the user did
    _, quiet = run(collector, "idle", "v6", SW_AGENT_NAME="telemetry-v6-defaults")
    assert "inactive options" not in quiet


def test_logs_that_cannot_be_sent_are_counted_not_lost_silently(collector: Collector) -> None:
    from tests.protocol.procs import free_port

    result, stderr = run(collector, "logs", SW_AGENT_COLLECTOR_BACKEND_SERVICES=f"127.0.0.1:{free_port()}",
                         SW_AGENT_LOG_REPORTER_MAX_BUFFER_SIZE="1", SW_AGENT_METER_REPORTER_ACTIVE="false")
    books = result["stats"]["log"]
    assert books["created"] == 3 and books["delivered"] == 0
    assert books["dropped_total"] == 3 and books["dropped"]["queue full"] >= 1
    assert "dropped 1 log(s): queue full" in stderr


def test_a_profile_task_from_the_collector_samples_the_thread_serving_its_endpoint(collector: Collector) -> None:
    from tests.protocol.procs import get_json

    spec = {"service": "telemetry-profile", "endpoint": "/slow", "duration": 1, "dumpPeriod": 20,
            "maxSamplingCount": 5, "minDurationThreshold": 100}
    task = get_json(f"http://{collector.http}/api/profile/tasks", json.dumps(spec).encode())
    result, _ = run(collector, "profile", SW_AGENT_NAME="telemetry-profile",
                    SW_AGENT_COLLECTOR_GET_PROFILE_TASK_INTERVAL="1", SW_AGENT_METER_REPORTER_ACTIVE="false")
    snapshots = wait_for(lambda: collector.api(f"/api/profile/snapshots?task={task['taskId']}") or None,
                         what="thread snapshots")
    assert len(snapshots) == 5  # maxSamplingCount: a 0.8 s request sampled every 20 ms after its first 100 ms
    assert {s["traceSegmentId"] for s in snapshots} == {result["segments"]["/slow"]}
    assert [s["sequence"] for s in snapshots] == [0, 1, 2, 3, 4]
    for s in snapshots:
        assert "busy_in_slow_endpoint" in s["stack"][0] or "busy_in_slow_endpoint" in s["stack"][1], s["stack"][:3]
        assert not any("busy_elsewhere" in frame for frame in s["stack"])
    assert result["profiler"]["requests"] == 1 and result["profiler"]["tasks"] == 1
    finished = wait_for(lambda: [t for t in collector.api("/api/profile/tasks")
                                 if t["taskId"] == task["taskId"] and t["finishedBy"]] or None, what="task finish")
    assert finished[0]["finishedBy"] == ["telemetry-profile/profile-1"]  # reported at the agent's stop


def test_loguru_records_are_reported_like_logging_ones(collector: Collector) -> None:
    pytest.importorskip("loguru")
    result, _ = run(collector, "loguru", SW_AGENT_NAME="telemetry-loguru", SW_AGENT_METER_REPORTER_ACTIVE="false",
                    SW_AGENT_LOG_REPORTER_LEVEL="INFO")
    logs = wait_for(lambda: collector.api("/api/logs?service=telemetry-loguru") or None, what="logs")
    assert result["stats"]["log"]["delivered"] == 2 == len(logs)
    paid = next(d for d in logs if "paid 12.5 for order 7" in d["body"])
    assert paid["tags"] == {"level": "SUCCESS", "logger": "__main__", "thread": "MainThread"}
    assert paid["traceContext"] == {"traceId": result["traceId"], "traceSegmentId": result["segmentId"],
                                    "spanId": result["spanId"]}
    assert paid["endpoint"] == "/loguru"
    failed = next(d for d in logs if "lookup failed" in d["body"])
    assert failed["tags"]["level"] == "ERROR" and "KeyError: 'missing'" in failed["body"]
