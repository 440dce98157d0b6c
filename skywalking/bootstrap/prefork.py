"""Pre-fork servers: is this process the master of gunicorn or uWSGI?

A master forks its workers after the agent was loaded into it (``sw-python run``, ``SW_AGENT_AUTOSTART``, an
``agent.start()`` in an app loaded with ``--preload``). Threads and gRPC channels do not survive ``fork``, and the
master serves no request, so the agent starts in the master only on paper: it reports nothing and registers
nothing there, and each worker starts its own reporter, under its own identity, after the fork.

How a worker gets started:

* gunicorn forks with ``os.fork``, which runs ``os.register_at_fork`` handlers: the worker starts at once.
* uWSGI forks in C and runs no Python at-fork handler (unless ``--py-call-osafterfork``); a uWSGI worker
  starts with its first span (``Master.is_worker`` tells a worker from the master).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any


@dataclass(frozen=True)
class Master:
    """This process is the master of a pre-fork ``server``; ``is_worker()`` is true in the processes it forks."""

    server: str
    is_worker: Callable[[], bool]


def detect() -> Master | None:
    """The pre-fork server this process is the master of, or None (not a server, or one of its workers)."""
    if _gunicorn_process():
        if _on_stack(_gunicorn_worker_frame):
            return None
        master_pid = os.getpid()
        return Master("gunicorn", lambda: os.getpid() != master_pid)
    if _uwsgi_process():
        module = _uwsgi_module()
        if module is not None and _uwsgi_worker_id(module) > 0:
            return None
        return Master("uwsgi", _uwsgi_in_worker)
    return None


def _gunicorn_process() -> bool:
    if sys.argv and os.path.basename(sys.argv[0] or "").startswith("gunicorn"):
        return True  # the gunicorn script (sys.argv is set before site runs)
    argv = getattr(sys, "orig_argv", [])
    if any(a == "-m" and b == "gunicorn" for a, b in zip(argv, argv[1:], strict=False)):
        return True
    return "gunicorn.arbiter" in sys.modules


def _gunicorn_worker_frame(frame: FrameType) -> bool:
    """gunicorn's child runs its worker inside ``Arbiter.spawn_worker``, where the fork happened."""
    return frame.f_code.co_name == "spawn_worker" and frame.f_code.co_filename.endswith(
        os.path.join("gunicorn", "arbiter.py"))


def _on_stack(test: Callable[[FrameType], bool]) -> bool:
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        if test(frame):
            return True
        frame = frame.f_back
    return False


def _uwsgi_process() -> bool:
    if "uwsgi" in sys.modules:
        return True
    names = [sys.executable or ""]
    try:
        names.append(os.readlink("/proc/self/exe"))
    except OSError:
        pass
    return any(os.path.basename(n).startswith("uwsgi") for n in names)


def _uwsgi_module() -> Any:
    """uWSGI's embedded ``uwsgi`` module; None while Python is being initialised (it is added after)."""
    try:
        import uwsgi
    except ImportError:
        return None
    return uwsgi


def _uwsgi_worker_id(module: Any) -> int:
    try:
        return int(module.worker_id())
    except Exception:
        return 0


def _uwsgi_in_worker() -> bool:
    module = _uwsgi_module()
    return module is not None and _uwsgi_worker_id(module) > 0
