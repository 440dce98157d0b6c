"""A Ray cluster as production runs it (``ray start``), jobs submitted to it, and checks of the traces
that come out."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.protocol.procs import Collector, Service, clean_env, free_port, wait_for

# `ray job submit` and `serve deploy` talk to the dashboard, which needs ray[default] (ray29 installs plain ray)
needs_dashboard = pytest.mark.skipif(importlib.util.find_spec("aiohttp") is None,
                                     reason="the dashboard (ray[default]) is not installed")

APPS = Path(__file__).parent / "apps" / "jobs"
BIN = Path(sys.executable).parent
HOOK = "skywalking.plugins.sw_ray.setup_worker"
# every process the tests start reports here; none waits for the OAP
SW = {"SW_AGENT_LOGGING_LEVEL": "WARNING"}


@dataclass
class Cluster:
    dashboard: str  # the job and Serve REST address
    temp_dir: str

    def submit(self, entrypoint: list[str], runtime_env: dict[str, Any]) -> dict[str, Any]:
        """``ray job submit`` and wait; the JSON line the job printed."""
        runtime_env = {"working_dir": str(APPS), **runtime_env}
        deadline = time.monotonic() + 90
        while True:
            out = subprocess.run([str(BIN / "ray"), "job", "submit", "--address", self.dashboard,
                                  "--runtime-env-json", json.dumps(runtime_env), "--", *entrypoint],
                                 env=clean_env(), capture_output=True, text=True, timeout=300)
            # right after `ray start` the dashboard may not have its job agent yet
            if "No available agent to submit job" not in out.stderr or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert out.returncode == 0 and "succeeded" in out.stdout, f"{out.stdout[-4000:]}\n{out.stderr[-3000:]}"
        lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
        if not lines:  # the CLI's log tail can end before the driver's last lines arrive: read the whole log
            job = re.search(r"Job '(\S+)' submitted", out.stdout)
            assert job, out.stdout[-4000:]
            logs = subprocess.run([str(BIN / "ray"), "job", "logs", "--address", self.dashboard, job.group(1)],
                                  env=clean_env(), capture_output=True, text=True, timeout=120)
            lines = [line for line in logs.stdout.splitlines() if line.startswith("{")]
            assert lines, f"the job printed no result:\n{logs.stdout[-4000:]}\n{logs.stderr[-3000:]}"
        return json.loads(lines[-1])


def start_cluster(**env: str) -> Cluster:
    """``ray start --head`` on 127.0.0.1 with ``env`` in the node's environment."""
    temp_dir = tempfile.mkdtemp(prefix="swray")  # short: Ray's socket paths must fit in 107 characters
    port, dashboard = free_port(), free_port()
    out = subprocess.run([str(BIN / "ray"), "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1",
                          "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
                          "--num-cpus=4", "--disable-usage-stats", f"--temp-dir={temp_dir}",
                          # never Ray's fixed default ports (52365, ...): a process left by another Ray on the
                          # machine would keep this node's dashboard agent from starting ("No available agent")
                          f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
                          f"--runtime-env-agent-port={free_port()}", f"--metrics-export-port={free_port()}"],
                         env=clean_env(RAY_AUTH_MODE="disabled", **env), capture_output=True, text=True, timeout=180)
    if out.returncode != 0:
        stop_cluster(temp_dir)
        raise AssertionError(f"ray start failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return Cluster(f"http://127.0.0.1:{dashboard}", temp_dir)


def stop_cluster(temp_dir: str) -> None:
    subprocess.run([str(BIN / "ray"), "stop", "--force"], env=clean_env(), capture_output=True, timeout=120)
    shutil.rmtree(temp_dir, ignore_errors=True)


def segments_of(collector: Collector, service: str, count: int) -> list[dict[str, Any]]:
    def got() -> list[dict[str, Any]] | None:
        segs = collector.api(f"/api/segments?service={service}")
        return segs if len(segs) >= count else None

    try:
        wait_for(got, timeout=30, what=f"{count} segments of {service}")
    except AssertionError as e:
        got_ops = [[(s["spanType"], s["operationName"]) for s in seg["spans"]]
                   for seg in collector.api(f"/api/segments?service={service}")]
        raise AssertionError(f"{e}; got {got_ops}") from None
    collector.settled()
    return collector.api(f"/api/segments?service={service}")


def check_linked_traces(segments: list[dict[str, Any]], traces: int, root_instance: str | None) -> None:
    """``traces`` traces, each with one root segment (``root_instance`` if given: the driver's), every other
    segment's entry span linked by a ref to a span of the same trace, and every Ray exit span answered by the
    entry span it called: no trace starts at an exit span whose callee was not traced."""
    by_trace: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for seg in segments:
        by_trace[seg["traceId"]].append(seg)
    assert len(by_trace) == traces, {t: [[s["operationName"] for s in seg["spans"]] for seg in segs]
                                     for t, segs in by_trace.items()}
    for trace_id, segs in by_trace.items():
        spans = {(seg["segmentId"], span["spanId"]): span for seg in segs for span in seg["spans"]}
        called = {(ref["parentTraceSegmentId"], ref["parentSpanId"]) for seg in segs for span in seg["spans"]
                  for ref in span.get("refs") or []}
        roots = [seg for seg in segs if not any(span.get("refs") for span in seg["spans"])]
        assert len(roots) == 1, (trace_id, [[s["operationName"] for s in seg["spans"]] for seg in roots])
        if root_instance is not None:
            assert roots[0]["serviceInstance"] == root_instance
        for key in called:
            assert key in spans, f"trace {trace_id}: a ref points at a span that is not in the trace: {key}"
        for (seg_id, span_id), span in spans.items():
            if span["spanType"] == "Exit" and span["operationName"].startswith("Ray/"):
                assert (seg_id, span_id) in called, f"trace {trace_id}: {span['operationName']} called nothing traced"


def check_instances(collector: Collector, services: set[str]) -> None:
    """One instance per process that traced something: the instances registered under ``services`` are exactly
    those their segments came from (Ray's controller, proxies and idle workers registered nothing), and no
    process registered twice (a replica only as its deployment, not first as the driver's service)."""
    registered = [i for i in collector.api("/api/inventory")["instances"] if i["service"] in services]
    instances = [i["name"] for i in registered]
    reported = {seg["serviceInstance"] for name in services for seg in collector.api(f"/api/segments?service={name}")}
    assert sorted(instances) == sorted(reported), [i for i in registered if i["name"] not in reported]
    pids = [name.split("-pid:")[1] for name in instances]
    assert len(pids) == len(set(pids)), instances


def driver_instance(collector: Collector, pid: int) -> str:
    (name,) = {i["name"] for i in collector.api("/api/inventory")["instances"] if f"-pid:{pid}@" in i["name"]}
    return name


# (traces, segments) of job.py: fan -> 2 x leaf; Counter creation; Counter.add -> leaf
JOB_TRACES, JOB_SEGMENTS = 3, 9


def deploy_and_check(cluster: Cluster, collector: Collector, service: str, incoming: str, env_vars: dict[str, str],
                     services: tuple[str, str, str]) -> None:
    """``serve deploy`` of tests/ray/apps/jobs/serve_app.py as application ``service`` (with ``env_vars`` in its
    runtime_env), then one request (``incoming``: untraced, or from an sw6 caller) must make one linked trace:
    ingress + handle call + task, across ``services`` (the two deployments' and the task's)."""
    port = free_port()
    config = APPS / f"serve-{incoming}.yaml"
    config.write_text(json.dumps({  # YAML is a superset of JSON
        "proxy_location": "HeadOnly", "http_options": {"host": "127.0.0.1", "port": port},
        "applications": [{"name": service, "route_prefix": "/", "import_path": "tests.ray.apps.jobs.serve_app:app",
                          # importable on the cluster (PYTHONPATH: the repo); Ray 2.40 ships no local:// working_dir
                          "runtime_env": {"env_vars": env_vars} if env_vars else {}}]}))
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

        def request_traces() -> list[list[dict[str, Any]]] | None:
            segs = [s for name in services for s in collector.api(f"/api/segments?service={name}")]
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
            received = [(seg["service"], seg["traceId"], [(s["spanType"], s["operationName"]) for s in seg["spans"]])
                        for seg in collector.api("/api/segments")]
            raise AssertionError(f"{e}; received: {received}") from None
        collector.settled()
        for trace in traces:
            seen = {seg["service"] for seg in trace}
            assert set(services) <= seen, seen  # the task worker reports under the app's name
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
        check_instances(collector, set(services))
        assert collector.api("/api/drops") == []
    finally:
        if caller is not None:
            caller.stop()
        subprocess.run([str(BIN / "serve"), "shutdown", "-y", "-a", cluster.dashboard], env=clean_env(),
                       capture_output=True, timeout=120)
        config.unlink(missing_ok=True)
