"""Start the agent at interpreter start-up, from the environment alone.

``company_skywalking.pth`` (installed at the root of site-packages) calls ``start()`` when a process
starts with ``SW_AGENT_AUTOSTART`` set, or as the driver of a submitted Ray job whose runtime_env names our
worker setup hook (``ray job submit --runtime-env-json '{"worker_process_setup_hook":
"skywalking.plugins.sw_ray.setup_worker", ...}'``). Ray applies a job's or a Serve application's
``env_vars`` to the processes it starts, which makes this the way to trace Serve config deploys and
KubeRay. Never raises: a failing ``.pth`` line would print a traceback in every process of the environment.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"  # a submitted Ray job's config, set for its driver
SETUP_HOOK = "skywalking.plugins.sw_ray.setup_worker"


def wanted(environ: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    """Whether this process should start the agent: ``SW_AGENT_AUTOSTART`` decides when set; otherwise a
    submitted job's driver does when the job's runtime_env uses our worker setup hook."""
    value = environ.get("SW_AGENT_AUTOSTART")
    if value is not None:
        return value.strip().lower() in ("true", "1", "yes", "on")
    return SETUP_HOOK in environ.get(JOB_CONFIG_ENV, "") and \
        job_runtime_env(environ).get("worker_process_setup_hook") == SETUP_HOOK


def job_runtime_env(environ: dict[str, str] | os._Environ[str] = os.environ) -> dict[str, Any]:
    """The runtime_env of the Ray job this process belongs to (``ray job submit``), else ``{}``."""
    try:
        env = json.loads(environ.get(JOB_CONFIG_ENV) or "{}").get("runtime_env")
    except (ValueError, AttributeError):
        return {}
    return env if isinstance(env, dict) else {}


def start() -> None:
    try:
        if not wanted():
            return
        from skywalking import agent
        from skywalking.bootstrap import should_start

        if not should_start():
            return

        agent.start()
    except Exception as exc:  # agent.start() logs its own failures; this is the import failing
        try:
            sys.stderr.write(f"company-skywalking: agent not started at start-up ({type(exc).__name__}: {exc})\n")
        except Exception:
            pass
