"""``sw-python``: run a command with the SkyWalking agent bootstrapped into every Python it starts.

Usage::

    sw-python [-d] run [-p] <command ...>

The CLI does not start the agent itself.  It prepends the ``loader`` directory (which holds a
``sitecustomize.py``) to ``PYTHONPATH``, records which interpreter it ran under, and then
replaces itself with ``command`` via ``execvpe``.  Agent configuration is read from ``SW_*``
environment variables only.
"""

from __future__ import annotations

import errno
import logging
import os
import platform
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

logger = logging.getLogger("skywalking.bootstrap")

PROG = "sw-python"

#: Directory put on ``PYTHONPATH``; a plain directory, not a package.
LOADER_DIR = os.path.realpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "loader"))

#: Module uWSGI imports in the master so a ``postfork`` hook starts the agent in each worker.
UWSGI_HOOK_MODULE = "skywalking.bootstrap.hooks.uwsgi_hook"

#: uWSGI option env vars (aliases of ``shared-python-import``); the hook goes into the first unset one.
UWSGI_IMPORT_VARS = (
    "UWSGI_SHARED_PYTHON_IMPORT",
    "UWSGI_SHARED_IMPORT",
    "UWSGI_SHARED_PYIMPORT",
    "UWSGI_SHARED_PY_IMPORT",
)

EXIT_USAGE = 2
EXIT_CANNOT_EXECUTE = 126
EXIT_NOT_FOUND = 127

USAGE = f"usage: {PROG} [-h] [-d] run [-h] [-p] [--] command [args ...]"

HELP = f"""{USAGE}

Run COMMAND with the SkyWalking Python agent started in it (and in any child
Python process that inherits PYTHONPATH). The agent is configured through
SW_* environment variables.

options:
  -h, --help     show this help message and exit
  -d, --debug    debug logs for sw-python and its loader; sets
                 SW_AGENT_LOGGING_LEVEL=DEBUG for the agent

run options:
  -p, --prefork  COMMAND is a pre-fork server (gunicorn or uwsgi): start the
                 agent in every worker process instead of the master
"""


class UsageError(Exception):
    """Bad command line; reported with the usage line and exit code 2."""


@dataclass(frozen=True)
class Invocation:
    """A parsed ``sw-python`` command line."""

    command: list[str] = field(default_factory=list)
    debug: bool = False
    prefork: bool = False
    show_help: bool = False


def parse_args(argv: Sequence[str]) -> Invocation:
    """Parse ``[-d] run [-p] [--] command ...``; everything from ``command`` on is left untouched."""
    args = list(argv)
    debug = False
    i = 0
    while True:
        if i >= len(args):
            raise UsageError('missing subcommand "run"')
        arg = args[i]
        i += 1
        if arg in ("-h", "--help"):
            return Invocation(show_help=True)
        if arg in ("-d", "--debug"):
            debug = True
        elif arg == "run":
            break
        elif arg.startswith("-"):
            raise UsageError(f"unrecognized option: {arg}")
        else:
            raise UsageError(f'invalid subcommand: {arg!r} (choose from "run")')

    prefork = False
    while i < len(args):
        arg = args[i]
        if arg == "--":
            i += 1
            break
        if arg in ("-h", "--help"):
            return Invocation(show_help=True)
        if arg in ("-p", "--prefork"):
            prefork = True
        elif arg in ("-d", "--debug"):
            debug = True
        elif arg.startswith("-") and arg != "-":
            raise UsageError(f"run: unrecognized option: {arg}")
        else:
            break
        i += 1

    command = args[i:]
    if not command:
        raise UsageError("run: missing command to execute")
    return Invocation(command=command, debug=debug, prefork=prefork)


def _same_path(a: str, b: str) -> bool:
    return bool(a) and os.path.realpath(a) == os.path.realpath(b)


def prepend_pythonpath(current: str | None, entry: str) -> str:
    """Return ``current`` with ``entry`` first, keeping other entries in order and dropping duplicates of it."""
    rest = [p for p in current.split(os.pathsep) if not _same_path(p, entry)] if current else []
    return os.pathsep.join([entry, *rest])


def _warn(message: str) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def _configure_prefork(env: dict[str, str], command: Sequence[str]) -> None:
    server = os.path.basename(command[0])
    if server == "gunicorn":
        env["SW_AGENT_EXPERIMENTAL_FORK_SUPPORT"] = "True"
        env["SW_PYTHON_PREFORK"] = "gunicorn"
    elif server == "uwsgi":
        env["SW_PYTHON_PREFORK"] = "uwsgi"
        env["UWSGI_MASTER"] = "true"
        env["UWSGI_ENABLE_THREADS"] = "true"
        if any(UWSGI_HOOK_MODULE in env.get(var, "").split() for var in UWSGI_IMPORT_VARS):
            return
        free = next((var for var in UWSGI_IMPORT_VARS if not env.get(var)), None)
        if free is None:
            _warn(
                f"all of {', '.join(UWSGI_IMPORT_VARS)} are set; cannot install {UWSGI_HOOK_MODULE}, "
                "workers will not be instrumented"
            )
            return
        env[free] = UWSGI_HOOK_MODULE
        logger.debug("uwsgi: %s=%s", free, UWSGI_HOOK_MODULE)
    else:
        _warn(f"--prefork supports gunicorn and uwsgi only, not {server!r}; ignoring it")


def build_environment(base: Mapping[str, str], invocation: Invocation) -> dict[str, str]:
    """Environment for the exec'd command: ``base`` plus loader path, interpreter info and flags."""
    env = dict(base)
    env["PYTHONPATH"] = prepend_pythonpath(env.get("PYTHONPATH"), LOADER_DIR)
    env["SW_PYTHON_PREFIX"] = os.path.realpath(sys.prefix)
    env["SW_PYTHON_VERSION"] = platform.python_version()
    if invocation.debug:
        env["SW_AGENT_SW_PYTHON_CLI_DEBUG_ENABLED"] = "True"
        env["SW_AGENT_LOGGING_LEVEL"] = "DEBUG"
    if invocation.prefork:
        _configure_prefork(env, invocation.command)
    return env


def _enable_debug_logging() -> None:
    if not any(getattr(h, "_sw_python_cli", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(f"[{PROG}] %(levelname)s %(message)s"))
        handler._sw_python_cli = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False


def _flush() -> None:
    for handler in logger.handlers:
        handler.flush()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass


def _execute(command: Sequence[str], env: dict[str, str]) -> int:
    """Replace this process with ``command``; only returns (an exit code) if that fails."""
    logger.debug("executing %r", list(command))
    _flush()
    try:
        os.execvpe(command[0], list(command), env)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            print(f"{PROG}: command not found: {command[0]}", file=sys.stderr)
            return EXIT_NOT_FOUND
        print(f"{PROG}: cannot execute {command[0]}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_CANNOT_EXECUTE


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; on success never returns (the process becomes ``command``)."""
    try:
        invocation = parse_args(sys.argv[1:] if argv is None else argv)
    except UsageError as exc:
        print(USAGE, file=sys.stderr)
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if invocation.show_help:
        print(HELP, end="")
        return 0

    if invocation.debug:
        _enable_debug_logging()
    if not os.path.isfile(os.path.join(LOADER_DIR, "sitecustomize.py")):
        _warn(f"loader {LOADER_DIR}/sitecustomize.py is missing (broken install?); the agent will not start")
    env = build_environment(os.environ, invocation)
    logger.debug("loader directory: %s", LOADER_DIR)
    logger.debug("PYTHONPATH=%s", env["PYTHONPATH"])
    logger.debug("SW_PYTHON_PREFIX=%s SW_PYTHON_VERSION=%s", env["SW_PYTHON_PREFIX"], env["SW_PYTHON_VERSION"])
    return _execute(invocation.command, env)


def start() -> None:
    """Console-script entry point (``sw-python``)."""
    sys.exit(main())
