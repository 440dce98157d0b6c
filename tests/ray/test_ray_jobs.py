"""Ray in production shape: a cluster started with ``ray start``, work shipped to it with ``ray job submit`` and
``serve deploy``, the agent switched on in each of the documented ways (docs/ray.md, "Deploying")."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.protocol.procs import Collector
from tests.ray.cluster import (
    BIN,
    HOOK,
    JOB_SEGMENTS,
    JOB_TRACES,
    SW,
    Cluster,
    check_instances,
    check_linked_traces,
    deploy_and_check,
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
    deploy_and_check(cluster, collector, service, incoming, {
        "SW_AGENT_AUTOSTART": "true", "SW_AGENT_NAME": service,
        "SW_PLUGIN_RAY_SERVE_SERVICE_NAME": f"{service}-{{deployment}}",
        "SW_AGENT_COLLECTOR_BACKEND_SERVICES": collector.grpc, **SW},
        (f"{service}-Front", f"{service}-Backend", service))
