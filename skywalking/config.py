"""Agent configuration: one declarative table of options.

Every option has a name, a type, a default, an environment variable and a doc line; the
configuration reference (docs/configuration.md) is generated from ``OPTIONS`` by
``python -m tools.gen_docs``. Values are module attributes, as in upstream
``apache-skywalking``: ``config.agent_name`` reads, ``config.agent_name = 'x'`` writes (and is
type-checked), ``config.init(**kw)`` sets several at once. Environment variables are read once,
when this module is first imported.
"""

from __future__ import annotations

import copyreg
import difflib
import importlib
import json
import os
import re
import sys
import types
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from skywalking.loggings import logger


class ConfigError(ValueError):
    """A configuration value or name that cannot be used."""


class UnknownOptionError(ConfigError, KeyError):
    """``config.init`` got a name that is not an option (a KeyError, as upstream raised)."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0])


@dataclass(frozen=True)
class Option:
    name: str
    type: type
    default: Any
    doc: str
    choices: tuple[str, ...] = ()
    env: str = ""

    @property
    def env_var(self) -> str:
        return self.env or "SW_" + self.name.upper()


_INSTANCE_NAME_DEFAULT = uuid.uuid4().hex  # one per process

# Options listed in the order of upstream's table, then ours. Keep the docs short and true.
OPTIONS: tuple[Option, ...] = (
    # -- reporting ---------------------------------------------------------------------------
    Option("agent_collector_backend_services", str, "oap_host:oap_port",
           "Comma-separated gRPC addresses (`host:port`) of the OAP; the agent fails over between them."),
    Option("agent_protocol", str, "grpc",
           "Reporter transport. Only `grpc` is implemented; `http` and `kafka` are accepted and fall back "
           "to `grpc` with one warning.", choices=("grpc", "http", "kafka")),
    Option("agent_name", str, "Python Service Name",
           "Service name. With `agent_namespace` set, the reported name is `name|namespace`."),
    Option("agent_instance_name", str, _INSTANCE_NAME_DEFAULT,
           "Instance name; defaults to a random hex string generated once per process."),
    Option("agent_namespace", str, "", "Namespace: suffix of the service name; under sw6 also the header prefix "
           "(`<namespace>-sw6`), as the Java 6.6.0 agent does."),
    Option("kafka_bootstrap_servers", str, "localhost:9092", "Kafka reporter only (not implemented; accepted)."),
    Option("kafka_namespace", str, "", "Kafka reporter only (not implemented; accepted)."),
    Option("kafka_topic_management", str, "skywalking-managements", "Kafka reporter only (not implemented; accepted)."),
    Option("kafka_topic_segment", str, "skywalking-segments", "Kafka reporter only (not implemented; accepted)."),
    Option("kafka_topic_log", str, "skywalking-logs", "Kafka reporter only (not implemented; accepted)."),
    Option("kafka_topic_meter", str, "skywalking-meters", "Kafka reporter only (not implemented; accepted)."),
    Option("kafka_reporter_custom_configurations", str, "", "Kafka reporter only (not implemented; accepted)."),
    Option("agent_force_tls", bool, False, "Use a TLS gRPC channel (system root certificates)."),
    Option("agent_authentication", str, "", "Sent as gRPC metadata `authentication` on every call when non-empty."),
    Option("agent_logging_level", str, "INFO", "Level of the agent's own `skywalking` logger (`DEBUG` ... `OFF`)."),
    Option("agent_collector_heartbeat_period", int, None,
           "Seconds between heartbeats (sw6 ping / v3 keepAlive). Unset: 3 under v6 (as the Java agent: an OAP "
           "reset is noticed within seconds), 30 under v8 (upstream's default)."),
    Option("agent_collector_properties_report_period_factor", int, 10,
           "v8 only: instance properties are re-sent every N heartbeats."),
    Option("agent_instance_properties_json", str, "",
           "JSON object of extra instance properties, e.g. `{\"team\": \"llm\"}`."),
    Option("agent_experimental_fork_support", bool, False,
           "Restart the agent in children of `os.fork()` (instance name gets `-child(<pid>)`). Workers of gunicorn "
           "and uWSGI masters start it without this option (docs/prefork.md); other children trace nothing without "
           "it."),
    Option("agent_queue_timeout", int, 1, "Seconds one reporting stream may keep pulling from the queue."),
    Option("agent_asyncio_enhancement", bool, False,
           "Upstream's asyncio reporter switch. Accepted; this agent always reports from one background thread."),
    Option("agent_sw_python_bootstrap_propagate", bool, False,
           "`sw-python run`: when `False` (literally), children of the started program are not instrumented. "
           "Only the env var is read, by the loader."),
    Option("agent_sw_python_cli_debug_enabled", bool, False, "Set by `sw-python -d`: forces agent DEBUG logging."),
    Option("agent_trace_reporter_max_buffer_size", int, 10000,
           "Bound of the segment queue; segments finished while it is full are dropped and counted."),
    Option("agent_trace_ignore_path", str, "",
           "Comma-separated Ant patterns (`?`, `*`, `**`) of operation names not to trace."),
    Option("agent_ignore_suffix", str, ".jpg,.jpeg,.js,.css,.png,.bmp,.gif,.ico,.mp3,.mp4,.html,.svg",
           "Comma-separated suffixes of operation names not to trace (case-sensitive)."),
    Option("correlation_element_max_number", int, 3, "Maximum number of correlation (sw8-correlation) entries."),
    Option("correlation_value_max_length", int, 128, "Maximum length of a correlation value; longer ones are refused."),
    Option("agent_profile_active", bool, True, "Profiling. Inactive: OAP 6.6.0 has no profiling receiver."),
    Option("agent_collector_get_profile_task_interval", int, 20, "Profiling only (inactive)."),
    Option("agent_profile_max_parallel", int, 5, "Profiling only (inactive)."),
    Option("agent_profile_duration", int, 10, "Profiling only (inactive)."),
    Option("agent_profile_dump_max_stack_depth", int, 500, "Profiling only (inactive)."),
    Option("agent_profile_snapshot_transport_buffer_size", int, 50, "Profiling only (inactive)."),
    Option("agent_log_reporter_active", bool, True, "Log reporting. Inactive: OAP 6.6.0 has no log receiver."),
    Option("agent_log_reporter_safe_mode", bool, False, "Log reporting only (inactive)."),
    Option("agent_log_reporter_max_buffer_size", int, 10000, "Log reporting only (inactive)."),
    Option("agent_log_reporter_level", str, "WARNING", "Log reporting only (inactive)."),
    Option("agent_log_reporter_ignore_filter", bool, False, "Log reporting only (inactive)."),
    Option("agent_log_reporter_formatted", bool, True, "Log reporting only (inactive)."),
    Option("agent_log_reporter_layout", str, "%(asctime)s [%(threadName)s] %(levelname)s %(name)s - %(message)s",
           "Log reporting only (inactive)."),
    Option("agent_cause_exception_depth", int, 10, "Traceback depth recorded in span error logs."),
    Option("agent_meter_reporter_active", bool, True, "Meter reporting. Inactive: OAP 6.6.0 has no meter receiver."),
    Option("agent_meter_reporter_max_buffer_size", int, 10000, "Meter reporting only (inactive)."),
    Option("agent_meter_reporter_period", int, 20, "Meter reporting only (inactive)."),
    Option("agent_pvm_meter_reporter_active", bool, True, "Meter reporting only (inactive)."),
    Option("agent_disable_plugins", list, [],
           "Comma-separated plugin names (or regular expressions matching whole names) not to install, "
           "e.g. `sw_grpc,sw_redis`."),
    Option("plugin_http_http_params_length_threshold", int, 1024, "Maximum length of the `http.params` tag."),
    Option("plugin_http_ignore_method", str, "", "Comma-separated HTTP methods not to trace, e.g. `GET,OPTIONS`."),
    Option("plugin_sql_parameters_max_length", int, 0, "Maximum length of `db.sql.parameters`; 0 records none."),
    Option("plugin_pymongo_trace_parameters", bool, False, "pymongo: record the filters (no plugin yet)."),
    Option("plugin_pymongo_parameters_max_length", int, 512, "pymongo: maximum length of recorded filters."),
    Option("plugin_elasticsearch_trace_dsl", bool, False, "elasticsearch: record the DSL (no plugin yet)."),
    Option("plugin_flask_collect_http_params", bool, False, "Flask: record request parameters as `http.params`."),
    Option("plugin_sanic_collect_http_params", bool, False, "Sanic: record request parameters (no plugin yet)."),
    Option("plugin_django_collect_http_params", bool, False, "Django: record request parameters as `http.params`."),
    Option("plugin_fastapi_collect_http_params", bool, False, "FastAPI: record request parameters as `http.params`."),
    Option("plugin_starlette_route_template", bool, False,
           "FastAPI/Starlette: name entry spans after the matched route template (`/items/{item_id}`) instead of the "
           "raw path, which keeps the number of OAP endpoints bounded."),
    Option("plugin_bottle_collect_http_params", bool, False, "Bottle: record request parameters (no plugin yet)."),
    Option("plugin_celery_parameters_length", int, 512, "Celery: maximum length of `celery.parameters`."),
    Option("plugin_grpc_ignored_methods", str, "",
           "Comma-separated full gRPC method names (`/pkg.Svc/Method`) not to trace (case-insensitive)."),
    Option("plugin_ray_propagate", bool, True,
           "Ray: `ray.init()` after `agent.start()` adds a worker setup hook and this configuration to the job's "
           "runtime_env, so every worker starts the agent."),
    Option("plugin_ray_exit_until_ready", bool, False,
           "Ray Core: true ends a task or actor call's exit span when its result is ready, so that it shows the "
           "round trip (one completion callback per call: on Ray 2.60 about 0.1 ms of caller CPU and 0.13 ms of "
           "latency); false (the default, as Ray's own tracing does) ends it when the "
           "call is submitted, and the callee's entry span shows how long the call ran."),
    Option("plugin_ray_serve_service_name", str, "{deployment}",
           "Ray Serve: the service name each replica reports under; `{app}` and `{deployment}` are replaced. "
           "Empty keeps the driver's service name."),
    Option("plugin_ray_spool", bool, True,
           "Ray workers write each finished segment ahead to a node-local spool (`skywalking-spool` in the Ray "
           "session directory) so that a worker Ray force-kills loses nothing that finished: another agent "
           "process on the node delivers what it left within seconds. Costs one small file write per segment."),
    Option("plugin_ray_trace_system_processes", bool, False,
           "Ray: also trace Ray's own processes (dashboard, dashboard agent, runtime-env agent, monitors) when the "
           "agent is loaded into every Python process (`sw-python run`, `SW_AGENT_AUTOSTART` on a node). Off, their "
           "health checks, internal calls and cloud-metadata probes make no traces. Workers are always traced."),
    Option("sample_n_per_3_secs", int, 0,
           "Keep at most N new traces per 3 seconds (0 keeps all). Traces continued from a caller are always kept."),
    # -- company-skywalking ------------------------------------------------------------------
    Option("agent_protocol_version", str, "v6",
           "Wire protocol: `v6` (sw6 / trace protocol v2, OAP 6.6.0) or `v8` (sw8 / v3, OAP 8+).",
           choices=("v6", "v8")),
    Option("agent_reset_cool_down", float, 1.0,
           "v6: after the OAP asks for a reset (ServiceMetadataReset, e.g. it restarted with empty storage), the "
           "agent registers again after a random pause between half and all of this many seconds, which spreads a "
           "fleet's re-registration; meanwhile segments are held (within `agent_trace_reporter_max_buffer_size`) "
           "and sw6 headers skipped. The Java agent waits 30 s; see docs/reporting.md for why we do not."),
    Option("agent_register_wait", float, 0.0,
           "v6: seconds `agent.start()` waits for the OAP to issue the instance id, with eager registration. "
           "Tracing never waits (segments are held until the ids arrive); only an sw6 header sent before then is "
           "skipped (counted). Set it when the very first outgoing call must carry an sw6 header."),
    Option("agent_registration", str, "auto",
           "v6: when the process registers with the OAP. `eager`: at `agent.start()`. `on-demand`: when it first "
           "has a segment to report or a header to send (processes that trace nothing register nothing). "
           "`auto`: on demand in Ray workers, eager elsewhere.", choices=("auto", "eager", "on-demand")),
    Option("agent_trace_max_calls_per_span", int, 0,
           "Trace at most this many outgoing calls (exit spans) under one span; further calls are not traced "
           "(counted, and logged by the reporter) and neither is anything their callees do: a fan-out of thousands "
           "of Ray tasks stays one readable trace. 0: no cap besides the 300 spans a segment holds (further spans "
           "are likewise counted, logged and not traced)."),
    Option("agent_autostart", bool, False,
           "Start the agent when a Python process starts, with no code change and no `sw-python`: the installed "
           "`company_skywalking.pth` reads this variable at interpreter start-up. Meant for environments that "
           "Ray starts processes in: a Serve application's or a job's `runtime_env` `env_vars`, a node's "
           "environment. A submitted Ray job whose runtime_env names our worker setup hook starts it in its "
           "driver too."),
    Option("agent_propagation", str, "",
           "Headers to emit: `sw6`, `sw8` or `sw6,sw8`. Empty follows the protocol version. Inbound, "
           "whichever header arrives is read."),
)

_BY_NAME: dict[str, Option] = {o.name: o for o in OPTIONS}
_BY_ENV: dict[str, Option] = {o.env_var: o for o in OPTIONS}
# SW_* variables of ours that are not options: set by sw-python for its loader, or by the Ray plugin for workers
INTERNAL_ENV = frozenset(("SW_PYTHON_PREFIX", "SW_PYTHON_VERSION", "SW_PYTHON_PREFORK", "SW_RAY_USER_SETUP_HOOK"))
_explicit: set[str] = set()  # options set by an env var, config.init or an assignment
_TRUE = frozenset(("true", "1", "yes", "on"))
_FALSE = frozenset(("false", "0", "no", "off"))
_HEADERS = ("sw6", "sw8")


def _coerce(opt: Option, value: Any) -> Any:
    """Convert ``value`` to the option's type or raise ConfigError saying why."""
    t = opt.type
    if value is None and opt.default is None:
        return None  # "unset": the agent picks the default for the protocol
    if t is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ConfigError(f"{opt.name} expects a boolean (true/false), got {value!r}")
    if t is int:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ConfigError(f"{opt.name} expects an integer, got {value!r}")
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{opt.name} expects an integer, got {value!r}") from None
    if t is float:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ConfigError(f"{opt.name} expects a number, got {value!r}")
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"{opt.name} expects a number, got {value!r}") from None
        if number < 0 or number != number:
            raise ConfigError(f"{opt.name} must not be negative, got {value!r}")
        return number
    if t is list:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            return [v.strip() for v in value if v.strip()]
        raise ConfigError(f"{opt.name} expects a comma-separated string or a list of strings, got {value!r}")
    if not isinstance(value, str):
        raise ConfigError(f"{opt.name} expects a string, got {value!r}")
    if opt.choices:
        value = value.strip().lower()
        if value not in opt.choices:
            raise ConfigError(f"{opt.name} must be one of {', '.join(opt.choices)}; got {value!r}")
    if opt.name == "agent_collector_backend_services" and value != opt.default:
        _check_backends(value)
    if opt.name == "agent_propagation" and value.strip():
        parts = [p.strip().lower() for p in value.split(",") if p.strip()]
        bad = [p for p in parts if p not in _HEADERS]
        if bad or not parts:
            raise ConfigError(f"agent_propagation takes sw6, sw8 or sw6,sw8; got {value!r}")
        value = ",".join(dict.fromkeys(parts))
    return value


_HOST_PORT = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+):(\d{1,5})$")


def _check_backends(value: str) -> None:
    """Each address of ``agent_collector_backend_services`` is ``host:port`` (``[v6]:port``); gRPC target URIs
    (``dns:///...``, ``unix:...``) pass as they are."""
    addresses = [a.strip() for a in value.split(",") if a.strip()]
    if not addresses:
        raise ConfigError("agent_collector_backend_services is empty; give the OAP's gRPC address as host:port, "
                          "e.g. 127.0.0.1:11800")
    for address in addresses:
        if ":/" in address or address.startswith("unix:"):
            continue
        match = _HOST_PORT.match(address)
        if match is None or not 0 < int(match.group(1)) < 65536:
            problem = "has no port" if ":" not in address.strip("[]") or address.endswith("]") else "is not host:port"
            raise ConfigError(f"agent_collector_backend_services: {address!r} {problem}; give the OAP's gRPC address "
                              "as host:port, e.g. 127.0.0.1:11800")


def _from_env(opt: Option) -> Any:
    raw = os.environ.get(opt.env_var)
    if raw is None:
        return opt.default
    _explicit.add(opt.name)
    try:
        return _coerce(opt, raw)
    except ConfigError as e:
        logger.error("ignoring env %s: %s; using the default %r", opt.env_var, e, opt.default)
        return opt.default


# -- module attribute access ------------------------------------------------------------------

class _ConfigModule(types.ModuleType):
    """Type-checks ``config.<option> = value`` writes; reads are plain module attributes."""

    def __setattr__(self, name: str, value: Any) -> None:
        opt = _BY_NAME.get(name)
        if opt is not None:
            value = _coerce(opt, value)
            _explicit.add(name)
        super().__setattr__(name, value)


def _reduce_module(module: types.ModuleType) -> tuple[Any, tuple[str]]:
    return importlib.import_module, (module.__name__,)


_module = sys.modules[__name__]
for _opt in OPTIONS:
    setattr(_module, _opt.name, _from_env(_opt))  # the plain module's setattr: only env vars count as explicit
_module.__class__ = _ConfigModule
# pickle (and cloudpickle, which Ray uses to ship deployments that reference `config`) by name
copyreg.pickle(_ConfigModule, _reduce_module)


def init(**kwargs: Any) -> None:
    """Set options by name. Unknown names raise ``UnknownOptionError`` (a KeyError); bad values
    raise ``ConfigError`` (a ValueError). Nothing is changed unless every value is valid."""
    coerced: dict[str, Any] = {}
    for name, value in kwargs.items():
        opt = _BY_NAME.get(name)
        if opt is None:
            raise UnknownOptionError(f"invalid configuration option {name!r}{did_you_mean(name, _BY_NAME)}")
        coerced[name] = _coerce(opt, value)
    for name, value in coerced.items():
        setattr(_module, name, value)


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``known`` to a misspelled ``name``, else ``""``."""
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def unknown_env(environ: Mapping[str, str] = os.environ) -> list[str]:
    """A warning for each ``SW_*`` environment variable that is neither an option nor one of ours (a misspelled
    option is otherwise ignored without a word)."""
    return [f"environment variable {var} is not a company-skywalking option and is ignored"
            f"{did_you_mean(var, [*_BY_ENV, *INTERNAL_ENV])}"
            for var in sorted(environ) if var.startswith("SW_") and var not in _BY_ENV and var not in INTERNAL_ENV]


def explicitly_set(name: str) -> bool:
    """Whether option ``name`` was set by its env var, ``config.init`` or an assignment (not left at its default)."""
    return name in _explicit


def options() -> dict[str, Any]:
    """Current value of every option."""
    return {o.name: getattr(_module, o.name) for o in OPTIONS}


def options_with_default_value_and_type() -> dict[str, tuple[Any, type]]:
    return {o.name: (o.default, o.type) for o in OPTIONS}


# -- derived settings (recomputed by finalize) -------------------------------------------------

RE_IGNORE_PATH: re.Pattern[str] | None = None
RE_HTTP_IGNORE_METHOD: re.Pattern[str] | None = None
RE_GRPC_IGNORED_METHODS: frozenset[str] = frozenset()
SERVICE_NAME: str = ""
PROPAGATION: tuple[str, ...] = ("sw6",)
SW6_HEADER: str = "sw6"
HEARTBEAT_PERIOD: float = 3.0


def _ant_to_regex(pattern: str) -> str:
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("/**/", i):
            out.append("/(?:.*/)?")
            i += 4
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return "".join(out)


def finalize() -> None:
    """Recompute derived settings from the options. Called by ``agent.start()``."""
    global RE_IGNORE_PATH, RE_HTTP_IGNORE_METHOD, RE_GRPC_IGNORED_METHODS, SERVICE_NAME, PROPAGATION, SW6_HEADER, \
        HEARTBEAT_PERIOD
    m = _module
    suffixes = [re.escape(s.strip()) for s in m.agent_ignore_suffix.split(",") if s.strip()]
    paths = [_ant_to_regex(p.strip()) for p in m.agent_trace_ignore_path.split(",") if p.strip()]
    alternatives = []
    if suffixes:
        alternatives.append(f"^.+(?:{'|'.join(suffixes)})$")
    if paths:
        alternatives.append(f"^(?:{'|'.join(paths)})$")
    RE_IGNORE_PATH = re.compile("|".join(alternatives)) if alternatives else None

    methods = [re.escape(s.strip().upper()) for s in m.plugin_http_ignore_method.split(",") if s.strip()]
    RE_HTTP_IGNORE_METHOD = re.compile(f"^(?:{'|'.join(methods)})$", re.IGNORECASE) if methods else None
    RE_GRPC_IGNORED_METHODS = frozenset(s.strip().lower() for s in m.plugin_grpc_ignored_methods.split(",")
                                        if s.strip())

    SERVICE_NAME = f"{m.agent_name}|{m.agent_namespace}" if m.agent_namespace else m.agent_name
    if m.agent_propagation:
        PROPAGATION = tuple(m.agent_propagation.split(","))
    else:
        PROPAGATION = ("sw6",) if m.agent_protocol_version == "v6" else ("sw8",)
    SW6_HEADER = f"{m.agent_namespace}-sw6" if m.agent_namespace else "sw6"
    period = m.agent_collector_heartbeat_period
    HEARTBEAT_PERIOD = float(period if period else (3 if m.agent_protocol_version == "v6" else 30))


def instance_properties() -> dict[str, str]:
    """``agent_instance_properties_json`` parsed; a bad value is logged and ignored."""
    raw = _module.agent_instance_properties_json
    if not raw:
        return {}
    try:
        value = json.loads(raw)
        if not isinstance(value, dict):
            raise ValueError("not a JSON object")
    except ValueError as e:
        logger.error("ignoring agent_instance_properties_json: %s", e)
        return {}
    return {str(k): str(v) for k, v in value.items()}


def ignore_http_method_check(method: str) -> bool:
    """True if HTTP requests with this method are not traced (``plugin_http_ignore_method``)."""
    return RE_HTTP_IGNORE_METHOD is not None and RE_HTTP_IGNORE_METHOD.match(method) is not None


def ignore_grpc_method_check(method: str) -> bool:
    """True if this full gRPC method name is not traced (``plugin_grpc_ignored_methods``)."""
    return method.lower() in RE_GRPC_IGNORED_METHODS


finalize()
