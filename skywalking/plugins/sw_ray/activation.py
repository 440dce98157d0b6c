"""Getting the agent into every Ray worker: the job's ``worker_process_setup_hook`` added at ``ray.init()``,
node-level preloading (``skywalking.bootstrap.ray_worker``), and the flush when a worker's task loop ends."""

from __future__ import annotations

import os
from typing import Any

from skywalking import agent, config
from skywalking.bootstrap.autostart import SETUP_HOOK, job_runtime_env
from skywalking.loggings import logger
from skywalking.plugins.sw_ray import core

HOOK = "worker_process_setup_hook"
WORKER_LINGER = 0.2  # seconds: a worker Ray kills at job end loses at most this much without the spool
USER_HOOK_ENV = "SW_RAY_USER_SETUP_HOOK"


def _config_env() -> dict[str, str]:
    """The driver's configuration as SW_* variables (only what differs from the defaults)."""
    env = {}
    for opt in config.OPTIONS:
        if opt.name == "agent_instance_name":
            continue  # every worker is its own instance
        value = getattr(config, opt.name)
        if value == opt.default:
            continue
        if isinstance(value, bool):
            env[opt.env_var] = "true" if value else "false"
        elif isinstance(value, list):
            env[opt.env_var] = ",".join(value)
        elif value is not None:
            env[opt.env_var] = str(value)
    return env


def with_tracing(runtime_env: dict[str, Any] | None, job_env: dict[str, Any]) -> dict[str, Any]:
    """``runtime_env`` (what ``ray.init()`` was given) plus what workers need to trace: our setup hook and
    the agent's configuration as ``SW_*`` variables. What the submitted job (``job_env``) or the caller
    already set wins and ours only fills what is missing, so Ray's merge of the two never conflicts."""
    merged = dict(runtime_env or {})
    given = merged.get("env_vars") or {}
    taken = {**(job_env.get("env_vars") or {}), **given}
    ours = {k: v for k, v in _config_env().items() if k not in taken}
    hook, job_hook = merged.get(HOOK), job_env.get(HOOK)
    if job_hook is not None:
        if job_hook != SETUP_HOOK:
            logger.info("sw_ray: the job's runtime_env has its own %s; call "
                        "skywalking.plugins.sw_ray.setup_worker() from it to trace the workers", HOOK)
    elif hook is None or isinstance(hook, str):
        if hook is not None and hook != SETUP_HOOK and USER_HOOK_ENV not in taken:
            ours[USER_HOOK_ENV] = hook  # ours runs first, then the user's
        merged[HOOK] = SETUP_HOOK
    else:
        logger.info("sw_ray: runtime_env has its own callable %s; call "
                    "skywalking.plugins.sw_ray.setup_worker() from it to trace the workers", HOOK)
    if ours:
        merged["env_vars"] = {**ours, **given}
    return merged


def ray_init(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    if agent.started() and config.plugin_ray_propagate:
        try:
            kwargs = {**kwargs, "runtime_env": with_tracing(kwargs.get("runtime_env"), job_runtime_env())}
        except Exception:
            logger.warning("sw_ray: could not add the worker setup hook", exc_info=True)
    context = wrapped(*args, **kwargs)
    if agent.started():
        core.ensure_spool(write_ahead=False)  # a driver on a node delivers what killed workers left there too
    return context


def main_loop(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """A worker's task loop ends (actor out of scope, SIGTERM, job end) with ``sys.exit``: flush while
    the interpreter can still start threads (CPython 3.12.0/3.12.1 cannot at exit; gRPC needs one)."""
    try:
        return wrapped(*args, **kwargs)
    finally:
        agent.stop()


def start_in_worker(preloaded: bool = False) -> None:
    """Start the agent in this Ray worker, named ``<service>-<node id prefix>-<pid>``, unless it already
    runs (node-level preloading and the job's setup hook may both ask). ``preloaded``: every worker of
    the cluster runs this (``skywalking.bootstrap.ray_worker``). Never raises."""
    try:
        if preloaded:
            core.set_cluster_wide()
        if agent.started():
            return
        import ray

        node = ray.get_runtime_context().get_node_id() or "node"
        config.agent_instance_name = f"{config.agent_name}-{node[:8]}-{os.getpid()}"
        agent.start()
        reporter = agent.agent.reporter
        if reporter is not None and hasattr(reporter, "linger"):
            reporter.linger = WORKER_LINGER
        core.ensure_spool()
    except Exception:
        logger.warning("sw_ray: the agent did not start in this worker", exc_info=True)


def setup_worker() -> None:
    """``runtime_env`` worker setup hook: start the agent in a Ray worker. Our part never raises (a raising
    hook makes Ray exit the worker); a chained user hook keeps its own behaviour."""
    start_in_worker()
    user_hook = os.environ.get(USER_HOOK_ENV)
    if user_hook:
        from importlib import import_module

        module, _, attr = user_hook.rpartition(".")
        getattr(import_module(module), attr)()  # the user's hook keeps its own failure semantics
