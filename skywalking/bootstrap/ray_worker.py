"""Node-level activation for a Ray cluster started elsewhere: every Python worker imports this module.

    SW_AGENT_NAME=my-service SW_AGENT_COLLECTOR_BACKEND_SERVICES=oap:11800 \\
    RAY_preload_python_modules=skywalking.bootstrap.ray_worker ray start --head

Ray's raylet reads ``RAY_preload_python_modules`` at start and has each worker import the listed modules
after it connected, before it runs any task; workers inherit the ``SW_*`` variables from the raylet.
Importing this module starts the agent as the job's ``worker_process_setup_hook`` would. It never raises:
a failing preload import would take the worker down.
"""

from __future__ import annotations

try:
    from skywalking.plugins.sw_ray import start_in_worker

    start_in_worker(preloaded=True)
except Exception:  # pragma: no cover - last line of defence; start_in_worker() logs its own failures
    pass
