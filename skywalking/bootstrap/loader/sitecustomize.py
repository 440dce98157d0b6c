"""SkyWalking bootstrap loader, imported by ``site`` as ``sitecustomize``.

``sw-python`` puts this directory on ``PYTHONPATH``, so every Python interpreter started under
it (and every child inheriting that ``PYTHONPATH``) runs this file at start-up.  It chains to
the user's own ``sitecustomize`` (if any), then starts the agent.  Nothing here may ever break
the user's program: every failure becomes one warning line on stderr.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # no ``typing`` import at every interpreter start
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_SW_PREFIX = "sw-python: warning: "
_SW_STATE_KEY = "_skywalking_bootstrap_loader_state"


def _sw_warn(message: str) -> None:
    try:
        sys.stderr.write(_SW_PREFIX + message.replace("\n", " ") + "\n")
        sys.stderr.flush()
    except Exception:
        pass


def _sw_debug_enabled() -> bool:
    return os.environ.get("SW_AGENT_SW_PYTHON_CLI_DEBUG_ENABLED", "").lower() == "true"


def _sw_debug(message: str, *args: object) -> None:
    if not _sw_debug_enabled():
        return
    import logging

    log = logging.getLogger("skywalking.bootstrap")
    if not any(getattr(h, "_sw_python_loader", False) for h in log.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[sw-python loader] %(levelname)s %(message)s"))
        handler._sw_python_loader = True  # type: ignore[attr-defined]
        log.addHandler(handler)
        log.setLevel(logging.DEBUG)
        log.propagate = False
    log.debug(message, *args)


def _sw_real(path: str) -> str:
    try:
        return os.path.realpath(path or os.curdir)
    except Exception:
        return path


def _sw_state() -> Any:
    """Per-process state shared by every copy of this loader (a copy may chain to another)."""
    import types

    state: Any = sys.modules.get(_SW_STATE_KEY)  # a plain module that carries our attributes
    if state is None:
        state = types.ModuleType(_SW_STATE_KEY)
        state.loader_dirs = []
        state.active = False
        sys.modules[_SW_STATE_KEY] = state
    return state


def _sw_guard(what: str, func: Callable[..., None], *args: Any) -> None:
    try:
        func(*args)
    except Exception as exc:
        _sw_warn(f"{what} ({type(exc).__name__}: {exc})")


def _sw_chain(excluded: set[str]) -> None:
    """Execute the next ``sitecustomize`` on ``sys.path`` that is not a loader directory."""
    import importlib.machinery
    import importlib.util

    search = [p for p in sys.path if isinstance(p, str) and _sw_real(p) not in excluded]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", search)
    if spec is None or spec.loader is None:
        _sw_debug("no other sitecustomize to chain to")
        return
    _sw_debug("chaining to %s", spec.origin)
    ours = sys.modules.get("sitecustomize")
    module = importlib.util.module_from_spec(spec)
    # The user's module stays registered, exactly as without the loader.
    sys.modules["sitecustomize"] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        if ours is not None:
            sys.modules["sitecustomize"] = ours
        if sys.flags.verbose or _sw_debug_enabled():
            import traceback

            traceback.print_exc()
        _sw_warn(f"error in sitecustomize {spec.origin}: {type(exc).__name__}: {exc}")


def _sw_strip_pythonpath(loader_dirs: set[str]) -> None:
    """Remove loader directories from ``PYTHONPATH`` so child processes are not instrumented."""
    current = os.environ.get("PYTHONPATH")
    if not current:
        return
    kept = [p for p in current.split(os.pathsep) if not (p and _sw_real(p) in loader_dirs)]
    value = os.pathsep.join(kept)
    if value:
        os.environ["PYTHONPATH"] = value
    else:
        del os.environ["PYTHONPATH"]
    _sw_debug("propagation disabled, PYTHONPATH for children: %r", value)


def _sw_check_interpreter() -> None:
    expected_prefix = os.environ.get("SW_PYTHON_PREFIX")
    expected_version = os.environ.get("SW_PYTHON_VERSION")
    problems = []
    if expected_prefix and _sw_real(sys.prefix) != _sw_real(expected_prefix):
        problems.append(f"prefix {_sw_real(sys.prefix)} != {expected_prefix}")
    if expected_version:
        import platform

        version = platform.python_version()
        if version != expected_version:
            problems.append(f"version {version} != {expected_version}")
    if problems:
        _sw_warn(
            f"interpreter mismatch with the one sw-python ran under ({'; '.join(problems)}); "
            "the agent may not work in this process"
        )


def _sw_start_agent() -> None:
    prefork = os.environ.get("SW_PYTHON_PREFORK", "").lower()
    if prefork == "uwsgi":
        _sw_debug("uwsgi pre-fork: the agent is started in each worker by the postfork hook")
        return
    try:
        from skywalking import agent
        from skywalking.bootstrap import should_start
    except Exception as exc:
        _sw_warn(f"SkyWalking agent not started, cannot import it ({type(exc).__name__}: {exc})")
        return
    if not should_start():
        _sw_debug("one of Ray's own processes: not traced (SW_PLUGIN_RAY_TRACE_SYSTEM_PROCESSES)")
        return
    _sw_debug("starting the agent (prefork=%r)", prefork or None)
    try:
        agent.start()
    except Exception as exc:
        _sw_warn(f"SkyWalking agent failed to start ({type(exc).__name__}: {exc})")


def _sw_bootstrap() -> None:
    here = _sw_real(os.path.dirname(os.path.abspath(__file__)))
    state = _sw_state()
    if here not in state.loader_dirs:
        state.loader_dirs.append(here)
    outermost = not state.active
    state.active = True
    _sw_debug("loader %s (pid %s)", here, os.getpid())

    _sw_guard("cannot chain to the next sitecustomize", _sw_chain, set(state.loader_dirs))
    if not outermost:
        return  # the loader copy that chained to this one does the rest

    if os.environ.get("SW_AGENT_SW_PYTHON_BOOTSTRAP_PROPAGATE", "").lower() == "false":
        _sw_guard("cannot strip the loader from PYTHONPATH", _sw_strip_pythonpath, set(state.loader_dirs))
    _sw_guard("cannot check the interpreter", _sw_check_interpreter)
    _sw_guard("SkyWalking agent not started", _sw_start_agent)


try:
    _sw_bootstrap()
except Exception as _sw_exc:
    _sw_warn(f"SkyWalking bootstrap failed ({type(_sw_exc).__name__}: {_sw_exc})")
