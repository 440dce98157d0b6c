"""Ray in production shape: a cluster started with ``ray start``, work shipped to it with ``ray job submit`` and
``serve deploy``, the agent switched on in each of the documented ways (docs/ray.md, "Deploying")."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest

from tests.protocol.procs import Collector, Service, clean_env, free_port, wait_for
from tests.ray.cluster import (
    APPS,
    BIN,
    HOOK,
    JOB_SEGMENTS,
    JOB_TRACES,
    SW,
    Cluster,
    check_instances,
    check_linked_traces,
    driver_instance,
    needs_dashboard,
    segments_of,
    start_cluster,
    stop_cluster,
)
from tests.ray.conftest import serve_traced


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    collector = Collector()
    yield collector
    collector.stop()


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A cluster nobody instrumented: tracing comes only from what each job or application asks for."""
    cluster = start_cluster()
    yield cluster
    stop_cluster(cluster.temp_dir)


@needs_dashboard
@pytest.mark.parametrize("how", ["agent-in-script", "sw-python-entrypoint", "runtime-env-only"])
def test_submitted_job_is_traced(how: str, cluster: Cluster, collector: Collector) -> None:
    service = f"job-{how}"
    env_vars = {"SW_AGENT_NAME": service, "SW_AGENT_COLLECTOR_BACKEND_SERVICES": collector.grpc, **SW}
    runtime_env: dict[str, Any] = {"env_vars": env_vars}
    entrypoint = [sys.executable, "job.py"]
    if how == "agent-in-script":
        entrypoint.append("agent")
    elif how == "sw-python-entrypoint":
        entrypoint = [str(BIN / "sw-python"), "run", *entrypoint]
    else:  # the job's code untouched: our hook and SW_* in the runtime_env, nothing else
        runtime_env["worker_process_setup_hook"] = HOOK
    result = cluster.submit(entrypoint, runtime_env)
    assert (result["fan"], result["add"], result["driver_traced"]) == ([2, 12], 106, True)
    segments = segments_of(collector, service, JOB_SEGMENTS)
    check_linked_traces(segments, JOB_TRACES, driver_instance(collector, result["driver_pid"]))
    check_instances(collector, {service})
    assert collector.api("/api/drops") == []


@needs_dashboard
@serve_traced
@pytest.mark.parametrize("incoming", ["untraced", "sw6"])
def test_serve_config_deploy_is_traced(incoming: str, cluster: Cluster, collector: Collector) -> None:
    """``serve deploy config.yaml`` (what KubeRay's RayService does), tracing asked for in the application's
    runtime_env alone."""
    service = f"calc-{incoming}"
    port = free_port()
    config = APPS / f"serve-{incoming}.yaml"
    config.write_text(json.dumps({  # YAML is a superset of JSON
        "proxy_location": "HeadOnly", "http_options": {"host": "127.0.0.1", "port": port},
        "applications": [{"name": service, "route_prefix": "/", "import_path": "tests.ray.apps.jobs.serve_app:app",
                          # importable on the cluster (PYTHONPATH: the repo); Ray 2.40 ships no local:// working_dir
                          "runtime_env": {"env_vars": {
                              "SW_AGENT_AUTOSTART": "true", "SW_AGENT_NAME": service,
                              "SW_PLUGIN_RAY_SERVE_SERVICE_NAME": f"{service}-{{deployment}}",
                              "SW_AGENT_COLLECTOR_BACKEND_SERVICES": collector.grpc, **SW}}}]}))
    caller = None
    try:
        out = subprocess.run([str(BIN / "serve"), "deploy", str(config), "-a", cluster.dashboard], env=clean_env(),
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-3000:]
        url = f"http://127.0.0.1:{port}/calc/7"

        def answered() -> dict[str, Any] | None:
            try:
                with urllib.request.urlopen(url, timeout=30) as resp:
                    return json.load(resp)
            except OSError:
                return None

        assert wait_for(answered, timeout=180, interval=1, what="the deployed application") == {"value": 49}
        if incoming == "sw6":
            caller = Service("upstream-java", collector.grpc)
            assert caller.call(next=url)["downstream"] == {"value": 49}
        front, back = f"{service}-Front", f"{service}-Backend"

        def request_traces() -> list[list[dict[str, Any]]] | None:
            segs = [s for name in (front, back, service) for s in collector.api(f"/api/segments?service={name}")]
            by_trace: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for seg in segs:
                by_trace[seg["traceId"]].append(seg)
            # ingress entry + handle exit, replica entry + task exit, task entry (segments may split per thread)
            # (the ingress is named after the route Serve matched: /calc/{x} once the proxy knows the app's routes)
            done = [t for t in by_trace.values() if {"Ray/Serve/" + service + "/Backend.compute", "Ray/Task/square"}
                    <= {s["operationName"] for seg in t for s in seg["spans"]}
                    and sum(s["spanType"] == "Entry" for seg in t for s in seg["spans"]) == 3]
            return done if len(done) >= (2 if incoming == "sw6" else 1) else None

        try:
            traces = wait_for(request_traces, timeout=60, what="the request's whole trace")
        except AssertionError as e:
            seen = [(seg["service"], seg["traceId"], [(s["spanType"], s["operationName"]) for s in seg["spans"]])
                    for seg in collector.api("/api/segments")]
            raise AssertionError(f"{e}; received: {seen}") from None
        collector.settled()
        for trace in traces:
            services = {seg["service"] for seg in trace}
            assert {front, back, service} <= services, services  # the task worker reports under the app's name
            entries = [s for seg in trace for s in seg["spans"] if s["spanType"] == "Entry"]
            (ingress,) = [s for s in entries if s["operationName"].startswith("GET:/")]
            if ingress.get("refs"):  # continued from the sw6 caller
                assert incoming == "sw6"
                upstream = collector.api("/api/segments?service=upstream-java")
                assert any(seg["segmentId"] == ingress["refs"][0]["parentTraceSegmentId"] for seg in upstream)
            assert all(s.get("refs") for s in entries if s is not ingress)
        if incoming == "sw6":
            assert any(s.get("refs") for t in traces for seg in t for s in seg["spans"]
                       if s["operationName"].startswith("GET:/") and s["spanType"] == "Entry")
        check_instances(collector, {front, back, service})
        assert collector.api("/api/drops") == []
    finally:
        if caller is not None:
            caller.stop()
        subprocess.run([str(BIN / "serve"), "shutdown", "-y", "-a", cluster.dashboard], env=clean_env(),
                       capture_output=True, timeout=120)
        config.unlink(missing_ok=True)
