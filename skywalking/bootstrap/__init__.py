"""Bootstrapping helpers: the ``sw-python`` CLI, the ``sitecustomize`` loader, the ``.pth`` autostart and
pre-fork hooks."""

from __future__ import annotations

import os
import sys


def ray_system_process(argv0: str) -> bool:
    """Whether this interpreter runs one of Ray's own programs (the dashboard and its agent, the runtime-env
    agent, the log monitor, the autoscaler monitor), as opposed to a worker that runs user code."""
    if not argv0.endswith(".py") or os.path.basename(argv0) == "default_worker.py":
        return False
    from importlib.util import find_spec

    try:
        spec = find_spec("ray")
    except (ImportError, ValueError):
        return False
    if spec is None:  # Ray is not installed
        return False
    path = os.path.realpath(argv0)
    return any(path.startswith(os.path.realpath(where) + os.sep) for where in spec.submodule_search_locations or [])


def ray_worker_process() -> bool:
    """Whether this interpreter is a Ray worker (it runs Ray's ``default_worker.py``)."""
    return bool(sys.argv) and os.path.basename(sys.argv[0] or "") == "default_worker.py"


def should_start() -> bool:
    """False in Ray's own processes unless ``SW_PLUGIN_RAY_TRACE_SYSTEM_PROCESSES`` is true: loaded into every
    Python process (``sw-python run``, ``SW_AGENT_AUTOSTART`` on a node), the agent would trace the dashboard's
    health checks, the runtime-env agent's calls and cloud-metadata probes."""
    if not ray_system_process(sys.argv[0] if sys.argv else ""):
        return True
    return os.environ.get("SW_PLUGIN_RAY_TRACE_SYSTEM_PROCESSES", "").strip().lower() in ("true", "1", "yes", "on")
