"""uWSGI pre-fork hook, imported in the master via ``UWSGI_SHARED_PYTHON_IMPORT`` by ``sw-python run -p uwsgi``.

The agent must not run in the uWSGI master (its threads would not survive ``fork``); instead a
``postfork`` callback starts it in every worker, with the instance name suffixed ``-child(<pid>)``.
Outside uWSGI (no ``uwsgidecorators``) importing this module does nothing.
"""

from __future__ import annotations

import os
import socket
import sys

_registered = False


def _warn(message: str) -> None:
    try:
        print(f"sw-python: warning: {message}", file=sys.stderr, flush=True)
    except Exception:
        pass


def start_in_worker() -> None:
    """Post-fork callback: give this worker its own instance name, then start the agent. Never raises."""
    try:
        from skywalking import agent, config

        suffix = f"-child({os.getpid()})"
        name = str(getattr(config, "agent_instance_name", "") or "") or socket.gethostname()
        if not name.endswith(suffix):
            config.agent_instance_name = f"{name}{suffix}"
        agent.start()
    except Exception as exc:
        _warn(f"SkyWalking agent not started in uWSGI worker {os.getpid()} ({type(exc).__name__}: {exc})")


def register() -> bool:
    """Register :func:`start_in_worker` as a uWSGI ``postfork`` hook; False when not running under uWSGI."""
    global _registered
    if _registered:
        return True
    try:
        import uwsgidecorators  # only importable inside a uWSGI process
    except Exception:
        return False
    try:
        uwsgidecorators.postfork(start_in_worker)
    except Exception as exc:
        _warn(f"cannot register the uWSGI postfork hook ({type(exc).__name__}: {exc})")
        return False
    _registered = True
    return True


register()
