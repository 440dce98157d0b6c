"""The config table: upstream names, env vars and defaults; parsing; derived settings."""

from __future__ import annotations

import json
import logging
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from skywalking import config

# (name, env var, default) of every upstream 1.2.0 option (apache-skywalking 1.2.0's skywalking/config.py), except
# agent_instance_name whose default is random.
UPSTREAM = [
    ("agent_collector_backend_services", "SW_AGENT_COLLECTOR_BACKEND_SERVICES", "oap_host:oap_port"),
    ("agent_protocol", "SW_AGENT_PROTOCOL", "grpc"),
    ("agent_name", "SW_AGENT_NAME", "Python Service Name"),
    ("agent_namespace", "SW_AGENT_NAMESPACE", ""),
    ("kafka_bootstrap_servers", "SW_KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"),
    ("kafka_namespace", "SW_KAFKA_NAMESPACE", ""),
    ("kafka_topic_management", "SW_KAFKA_TOPIC_MANAGEMENT", "skywalking-managements"),
    ("kafka_topic_segment", "SW_KAFKA_TOPIC_SEGMENT", "skywalking-segments"),
    ("kafka_topic_log", "SW_KAFKA_TOPIC_LOG", "skywalking-logs"),
    ("kafka_topic_meter", "SW_KAFKA_TOPIC_METER", "skywalking-meters"),
    ("kafka_reporter_custom_configurations", "SW_KAFKA_REPORTER_CUSTOM_CONFIGURATIONS", ""),
    ("agent_force_tls", "SW_AGENT_FORCE_TLS", False),
    ("agent_authentication", "SW_AGENT_AUTHENTICATION", ""),
    ("agent_logging_level", "SW_AGENT_LOGGING_LEVEL", "INFO"),
    ("agent_collector_heartbeat_period", "SW_AGENT_COLLECTOR_HEARTBEAT_PERIOD", None),  # 3 (v6) / 30 (v8)
    ("agent_collector_properties_report_period_factor", "SW_AGENT_COLLECTOR_PROPERTIES_REPORT_PERIOD_FACTOR", 10),
    ("agent_instance_properties_json", "SW_AGENT_INSTANCE_PROPERTIES_JSON", ""),
    ("agent_experimental_fork_support", "SW_AGENT_EXPERIMENTAL_FORK_SUPPORT", False),
    ("agent_queue_timeout", "SW_AGENT_QUEUE_TIMEOUT", 1),
    ("agent_asyncio_enhancement", "SW_AGENT_ASYNCIO_ENHANCEMENT", False),
    ("agent_sw_python_bootstrap_propagate", "SW_AGENT_SW_PYTHON_BOOTSTRAP_PROPAGATE", False),
    ("agent_sw_python_cli_debug_enabled", "SW_AGENT_SW_PYTHON_CLI_DEBUG_ENABLED", False),
    ("agent_trace_reporter_max_buffer_size", "SW_AGENT_TRACE_REPORTER_MAX_BUFFER_SIZE", 10000),
    ("agent_trace_ignore_path", "SW_AGENT_TRACE_IGNORE_PATH", ""),
    ("agent_ignore_suffix", "SW_AGENT_IGNORE_SUFFIX", ".jpg,.jpeg,.js,.css,.png,.bmp,.gif,.ico,.mp3,.mp4,.html,.svg"),
    ("correlation_element_max_number", "SW_CORRELATION_ELEMENT_MAX_NUMBER", 3),
    ("correlation_value_max_length", "SW_CORRELATION_VALUE_MAX_LENGTH", 128),
    ("agent_profile_active", "SW_AGENT_PROFILE_ACTIVE", True),
    ("agent_collector_get_profile_task_interval", "SW_AGENT_COLLECTOR_GET_PROFILE_TASK_INTERVAL", 20),
    ("agent_profile_max_parallel", "SW_AGENT_PROFILE_MAX_PARALLEL", 5),
    ("agent_profile_duration", "SW_AGENT_PROFILE_DURATION", 10),
    ("agent_profile_dump_max_stack_depth", "SW_AGENT_PROFILE_DUMP_MAX_STACK_DEPTH", 500),
    ("agent_profile_snapshot_transport_buffer_size", "SW_AGENT_PROFILE_SNAPSHOT_TRANSPORT_BUFFER_SIZE", 50),
    ("agent_log_reporter_active", "SW_AGENT_LOG_REPORTER_ACTIVE", True),
    ("agent_log_reporter_safe_mode", "SW_AGENT_LOG_REPORTER_SAFE_MODE", False),
    ("agent_log_reporter_max_buffer_size", "SW_AGENT_LOG_REPORTER_MAX_BUFFER_SIZE", 10000),
    ("agent_log_reporter_level", "SW_AGENT_LOG_REPORTER_LEVEL", "WARNING"),
    ("agent_log_reporter_ignore_filter", "SW_AGENT_LOG_REPORTER_IGNORE_FILTER", False),
    ("agent_log_reporter_formatted", "SW_AGENT_LOG_REPORTER_FORMATTED", True),
    ("agent_log_reporter_layout", "SW_AGENT_LOG_REPORTER_LAYOUT",
     "%(asctime)s [%(threadName)s] %(levelname)s %(name)s - %(message)s"),
    ("agent_cause_exception_depth", "SW_AGENT_CAUSE_EXCEPTION_DEPTH", 10),
    ("agent_meter_reporter_active", "SW_AGENT_METER_REPORTER_ACTIVE", True),
    ("agent_meter_reporter_max_buffer_size", "SW_AGENT_METER_REPORTER_MAX_BUFFER_SIZE", 10000),
    ("agent_meter_reporter_period", "SW_AGENT_METER_REPORTER_PERIOD", 20),
    ("agent_pvm_meter_reporter_active", "SW_AGENT_PVM_METER_REPORTER_ACTIVE", True),
    ("agent_disable_plugins", "SW_AGENT_DISABLE_PLUGINS", []),
    ("plugin_http_http_params_length_threshold", "SW_PLUGIN_HTTP_HTTP_PARAMS_LENGTH_THRESHOLD", 1024),
    ("plugin_http_ignore_method", "SW_PLUGIN_HTTP_IGNORE_METHOD", ""),
    ("plugin_sql_parameters_max_length", "SW_PLUGIN_SQL_PARAMETERS_MAX_LENGTH", 0),
    ("plugin_pymongo_trace_parameters", "SW_PLUGIN_PYMONGO_TRACE_PARAMETERS", False),
    ("plugin_pymongo_parameters_max_length", "SW_PLUGIN_PYMONGO_PARAMETERS_MAX_LENGTH", 512),
    ("plugin_elasticsearch_trace_dsl", "SW_PLUGIN_ELASTICSEARCH_TRACE_DSL", False),
    ("plugin_flask_collect_http_params", "SW_PLUGIN_FLASK_COLLECT_HTTP_PARAMS", False),
    ("plugin_sanic_collect_http_params", "SW_PLUGIN_SANIC_COLLECT_HTTP_PARAMS", False),
    ("plugin_django_collect_http_params", "SW_PLUGIN_DJANGO_COLLECT_HTTP_PARAMS", False),
    ("plugin_fastapi_collect_http_params", "SW_PLUGIN_FASTAPI_COLLECT_HTTP_PARAMS", False),
    ("plugin_bottle_collect_http_params", "SW_PLUGIN_BOTTLE_COLLECT_HTTP_PARAMS", False),
    ("plugin_celery_parameters_length", "SW_PLUGIN_CELERY_PARAMETERS_LENGTH", 512),
    ("plugin_grpc_ignored_methods", "SW_PLUGIN_GRPC_IGNORED_METHODS", ""),
    ("sample_n_per_3_secs", "SW_SAMPLE_N_PER_3_SECS", 0),
]


def fresh_config(env: dict[str, str], code: str) -> str:
    """Run ``code`` in a new interpreter (env vars are read at import) and return its stdout."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("SW_")}
    full.update(env)
    out = subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout + out.stderr


@pytest.mark.parametrize(("name", "env", "default"), UPSTREAM, ids=[u[0] for u in UPSTREAM])
def test_every_upstream_option_has_its_name_env_and_default(name: str, env: str, default: object) -> None:
    opt = next(o for o in config.OPTIONS if o.name == name)
    assert opt.env_var == env
    assert opt.default == default
    assert opt.doc


def test_table_has_61_upstream_options_plus_ours() -> None:
    names = {o.name for o in config.OPTIONS}
    assert len(UPSTREAM) + 1 == 61  # + agent_instance_name
    assert {u[0] for u in UPSTREAM} | {"agent_instance_name"} <= names
    assert {"agent_protocol_version", "agent_propagation", "agent_reset_cool_down", "agent_register_wait"} <= names
    assert len(names) == len(config.OPTIONS)


def test_env_vars_are_read_at_import() -> None:
    env = {"SW_AGENT_NAME": "svc-a", "SW_AGENT_FORCE_TLS": "True", "SW_SAMPLE_N_PER_3_SECS": "7",
           "SW_AGENT_DISABLE_PLUGINS": "sw_grpc, sw_redis", "SW_AGENT_PROTOCOL_VERSION": "V8",
           "SW_AGENT_PROPAGATION": "sw8,sw6", "SW_AGENT_PROFILE_ACTIVE": "false"}
    out = fresh_config(env, "import json; from skywalking import config as c; print(json.dumps(c.options()))")
    values = json.loads(out.splitlines()[0])
    assert values["agent_name"] == "svc-a"
    assert values["agent_force_tls"] is True
    assert values["sample_n_per_3_secs"] == 7
    assert values["agent_disable_plugins"] == ["sw_grpc", "sw_redis"]
    assert values["agent_protocol_version"] == "v8"
    assert values["agent_propagation"] == "sw8,sw6"
    assert values["agent_profile_active"] is False


def test_bad_env_value_keeps_default_and_says_why() -> None:
    out = fresh_config({"SW_AGENT_COLLECTOR_HEARTBEAT_PERIOD": "soon", "SW_AGENT_PROTOCOL_VERSION": "v7"},
                       "from skywalking import config as c; "
                       "print(c.agent_collector_heartbeat_period, c.agent_protocol_version)")
    assert "None v6" in out
    assert "SW_AGENT_COLLECTOR_HEARTBEAT_PERIOD" in out and "expects an integer" in out
    assert "SW_AGENT_PROTOCOL_VERSION" in out and "v6, v8" in out


def test_instance_name_default_is_per_process() -> None:
    code = "from skywalking import config as c; print(c.agent_instance_name)"
    a, b = fresh_config({}, code).split()[0], fresh_config({}, code).split()[0]
    assert a != b and len(a) == 32


def test_init_unknown_name_raises_key_error_with_hint() -> None:
    with pytest.raises(KeyError) as e:
        config.init(agent_nam="x")
    assert "agent_name" in str(e.value)
    with pytest.raises(config.UnknownOptionError):
        config.init(service_name="old v0 name")


def test_init_bad_values_raise_and_change_nothing() -> None:
    before = config.agent_name
    with pytest.raises(config.ConfigError, match="integer"):
        config.init(agent_name="new", agent_collector_heartbeat_period="x")
    assert config.agent_name == before
    with pytest.raises(ValueError, match="v6, v8"):
        config.init(agent_protocol_version="v9")
    with pytest.raises(ValueError, match="sw6, sw8"):
        config.init(agent_propagation="b3")
    with pytest.raises(ValueError, match="boolean"):
        config.init(agent_force_tls="maybe")
    with pytest.raises(ValueError, match="negative"):
        config.init(agent_register_wait=-1)
    config.init(agent_register_wait="2.5")
    assert config.agent_register_wait == 2.5


def test_init_coerces_and_attribute_writes_are_checked() -> None:
    config.init(agent_force_tls="true", sample_n_per_3_secs="5", agent_disable_plugins="a,b",
                agent_propagation=" SW6 , sw8 ,sw6")
    assert config.agent_force_tls is True
    assert config.sample_n_per_3_secs == 5
    assert config.agent_disable_plugins == ["a", "b"]
    assert config.agent_propagation == "sw6,sw8"
    config.agent_name = "written"
    assert config.agent_name == "written"
    with pytest.raises(config.ConfigError):
        config.agent_queue_timeout = "long"  # type: ignore[assignment]


def test_init_derives_service_headers_and_propagation() -> None:
    config.init(agent_name="svc", agent_namespace="", agent_protocol_version="v6", agent_propagation="")
    assert (config.SERVICE_NAME, config.PROPAGATION, config.SW6_HEADER) == ("svc", ("sw6",), "sw6")
    assert config.HEARTBEAT_PERIOD == 3
    config.init(agent_namespace="prod", agent_protocol_version="v8")
    assert (config.SERVICE_NAME, config.PROPAGATION, config.SW6_HEADER) == ("svc|prod", ("sw8",), "prod-sw6")
    assert config.HEARTBEAT_PERIOD == 30
    config.init(agent_collector_heartbeat_period=7)
    assert config.HEARTBEAT_PERIOD == 7
    assert config.agent_name == "svc"  # upstream rewrote the option itself; we derive SERVICE_NAME
    config.init(agent_propagation="sw6,sw8")
    assert config.PROPAGATION == ("sw6", "sw8")


def test_assigning_http_ignore_method_applies_at_once() -> None:
    assert not config.ignore_http_method_check("get")
    config.plugin_http_ignore_method = "GET"
    assert config.ignore_http_method_check("get") and not config.ignore_http_method_check("post")
    config.plugin_http_ignore_method = ""
    assert not config.ignore_http_method_check("get")


def test_assigning_trace_ignore_path_applies_at_once() -> None:
    config.agent_trace_ignore_path = "/health/**"
    regex = config.RE_IGNORE_PATH
    assert regex is not None and regex.match("/health/live") and not regex.match("/api/users")
    config.agent_ignore_suffix = ""
    config.agent_trace_ignore_path = ""
    assert config.RE_IGNORE_PATH is None


def test_assigning_namespace_and_name_renames_service_and_sw6_header() -> None:
    config.agent_name = "svc"
    config.agent_namespace = "prod"
    assert (config.SERVICE_NAME, config.SW6_HEADER) == ("svc|prod", "prod-sw6")
    config.agent_name = "other"
    assert config.SERVICE_NAME == "other|prod"
    config.agent_namespace = ""
    assert (config.SERVICE_NAME, config.SW6_HEADER) == ("other", "sw6")


def test_assigning_propagation_and_protocol_applies_at_once() -> None:
    config.agent_propagation = ""
    config.agent_protocol_version = "v8"
    assert (config.PROPAGATION, config.HEARTBEAT_PERIOD) == (("sw8",), 30)
    config.agent_propagation = "sw6, sw8"
    assert config.PROPAGATION == ("sw6", "sw8")
    config.agent_collector_heartbeat_period = 9
    assert config.HEARTBEAT_PERIOD == 9


def test_a_write_recomputes_only_what_depends_on_it(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[str] = []
    counted = []
    for d in config._DERIVATIONS:
        def compute(d: config._Derivation = d) -> tuple[object, ...]:
            ran.extend(d.outputs)
            return d.compute()
        counted.append(config._Derivation(d.outputs, d.inputs, compute))
    monkeypatch.setattr(config, "_DERIVATIONS", counted)
    config.agent_name = "svc"
    assert ran == ["SERVICE_NAME"]
    ran.clear()
    config.agent_protocol_version = "v8"
    assert sorted(ran) == ["HEARTBEAT_PERIOD", "PROPAGATION"]
    ran.clear()
    config.agent_queue_timeout = 2
    assert ran == []
    assert config.derived_settings()["SW6_HEADER"] == {"agent_namespace"}


def test_write_listeners_run_after_their_setting_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[object] = []
    monkeypatch.setattr(config, "_LISTENERS", {})
    config.on_recompute("RE_HTTP_IGNORE_METHOD", lambda: seen.append(config.RE_HTTP_IGNORE_METHOD))
    config.agent_name = "unrelated"
    assert seen == []
    config.plugin_http_ignore_method = "PUT"
    assert len(seen) == 1 and seen[0] is config.RE_HTTP_IGNORE_METHOD is not None
    with pytest.raises(ValueError, match="not a derived setting"):
        config.on_recompute("agent_name", lambda: None)


def test_ignore_path_written_after_start_applies_to_operations_seen_before(start_agent: object) -> None:
    from skywalking.trace.context import get_context

    rep = start_agent()  # type: ignore[operator]
    with get_context().new_entry_span("/late"):
        pass
    config.agent_trace_ignore_path = "/late"  # after the agent has memoised "/late" as traced
    with get_context().new_entry_span("/late"):
        pass
    with get_context().new_entry_span("/kept"):
        pass
    assert [seg.spans[-1].op for seg in rep.segments] == ["/late", "/kept"]


def test_derived_values_follow_the_environment() -> None:
    out = fresh_config({"SW_AGENT_NAME": "env-svc", "SW_AGENT_NAMESPACE": "ns", "SW_PLUGIN_HTTP_IGNORE_METHOD": "HEAD",
                        "SW_AGENT_PROTOCOL_VERSION": "v8"},
                       "from skywalking import config as c; "
                       "print(c.SERVICE_NAME, c.SW6_HEADER, c.PROPAGATION, c.ignore_http_method_check('head'))")
    assert out.split("\n")[0] == "env-svc|ns ns-sw6 ('sw8',) True"


def test_option_check_validates_and_normalises_any_option() -> None:
    opt = config.Option("x", str, "placeholder", "doc", check=lambda v: v.upper())
    assert config._coerce(opt, "abc") == "ABC"
    assert config._coerce(opt, "placeholder") == "placeholder"  # the default is kept as it is
    with pytest.raises(config.ConfigError, match="has no port"):
        config.init(agent_collector_backend_services="oap")
    config.agent_collector_backend_services = "oap:11800, [::1]:11800"
    assert config.agent_collector_backend_services == "oap:11800, [::1]:11800"
    config.agent_propagation = "  "
    assert config.agent_propagation == ""


@pytest.mark.parametrize(("patterns", "path", "ignored"), [
    ("/health/**", "/health/live", True),
    ("/health/**", "/health", False),
    ("/api/?/x", "/api/1/x", True),
    ("/api/?/x", "/api/12/x", False),
    ("/a/*/c", "/a/b/c", True),
    ("/a/*/c", "/a/b/d/c", False),
    ("/a/**/c", "/a/c", True),
    ("/a/**/c", "/a/b/d/c", True),
    ("", "/img.png", True),
    ("", "/img.PNG", False),
    ("", "/api/users", False),
])
def test_ignore_path_and_suffix_rules(patterns: str, path: str, ignored: bool) -> None:
    config.init(agent_trace_ignore_path=patterns)
    regex = config.RE_IGNORE_PATH
    assert (regex is not None and regex.match(path) is not None) is ignored


def test_http_and_grpc_method_rules() -> None:
    config.init(plugin_http_ignore_method="get, Options", plugin_grpc_ignored_methods="/pkg.Svc/Ping")
    assert config.ignore_http_method_check("GET") and config.ignore_http_method_check("options")
    assert not config.ignore_http_method_check("POST")
    assert config.ignore_grpc_method_check("/PKG.svc/ping")
    assert not config.ignore_grpc_method_check("/pkg.Svc/Other")


def test_instance_properties_json(caplog: pytest.LogCaptureFixture) -> None:
    config.init(agent_instance_properties_json='{"team": "llm", "n": 3}')
    assert config.instance_properties() == {"team": "llm", "n": "3"}
    config.init(agent_instance_properties_json="[1, 2]")
    logging.getLogger("skywalking").addHandler(caplog.handler)
    try:
        assert config.instance_properties() == {}
    finally:
        logging.getLogger("skywalking").removeHandler(caplog.handler)
    assert "not a JSON object" in caplog.text


def test_config_module_pickles_by_reference() -> None:
    # Ray cloudpickles deployments; their __init__ refers to the config module as a global
    assert pickle.loads(pickle.dumps(config)) is config


def test_generated_docs_are_current() -> None:
    from tools import gen_docs

    with open(gen_docs.CONFIG_DOC, encoding="utf-8") as f:
        assert f.read() == gen_docs.render_config(), "run `make docs`"
    with open(gen_docs.PLUGINS_DOC, encoding="utf-8") as f:
        assert f.read() == gen_docs.render_plugins(), "run `make docs`"
    with open(gen_docs.OAP_DOC, encoding="utf-8") as f:
        text = f.read()
    assert text == gen_docs.render_oap(), "run `make docs`"
    assert "Ray:\n  id: 7020\n  languages: Python" in text and "Python:\n  id: 7000" in text


def test_generated_stub_is_current() -> None:
    from tools import gen_config_stub

    with open(gen_config_stub.STUB, encoding="utf-8") as f:
        assert f.read() == gen_config_stub.render_stub(), "run `make docs`"


def test_stub_lets_mypy_accept_options_and_reject_misspellings(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    snippet = tmp_path / "snippet.py"
    snippet.write_text("from skywalking import config\n"
                       "name: str = config.agent_name\n"
                       "period: int | None = config.agent_collector_heartbeat_period\n"
                       "config.agent_name = 'svc'\n"
                       "config.init(agent_name='svc')\n"
                       "service: str = config.SERVICE_NAME\n"
                       "strict: int = config.agent_collector_heartbeat_period\n"
                       "config.agent_nmae\n", encoding="utf-8")
    env = {**os.environ, "MYPYPATH": str(Path(__file__).resolve().parents[2])}
    out = subprocess.run([sys.executable, "-m", "mypy", "--follow-imports=silent", "--no-error-summary",
                          "--cache-dir", str(tmp_path / "cache"), str(snippet)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    errors = [line for line in out.stdout.splitlines() if ": error:" in line]
    assert [e.split(":")[1] for e in errors] == ["7", "8"], out.stdout + out.stderr
    assert "int | None" in errors[0] and '"agent_nmae"' in errors[1]
