"""Agent lifecycle in real interpreters: the user's seed demo, inactive options, start/stop safety."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("SW_")}
    full["PYTHONPATH"] = str(ROOT)
    full.update(env or {})
    return subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True, timeout=120,
                          cwd=ROOT)


def test_seed_demo_imports_and_configures() -> None:
    code = """
import sys
sys.path.insert(0, 'tests/fixtures')
import seed_demo
from skywalking import agent, config
seed_demo.Downstream.func_or_class()           # config.init(...) + agent.start() as in the user's __init__
assert agent.started() and config.agent_name == 'ray-downstream'
assert config.kafka_bootstrap_servers == 'localhost:9094' and config.agent_protocol_version == 'v6'
# serve.ingress wraps the user's class in an ASGI wrapper; run the user's own __init__
user_cls = next(c for c in seed_demo.Upstream.func_or_class.__mro__ if c.__dict__.get('upstream'))
user_cls.__init__(object.__new__(user_cls), downstream=None)  # a second start: a logged no-op
assert config.agent_name == 'ray-upstream'
agent.stop()
print('SEED-OK')
"""
    out = run(code)
    assert out.returncode == 0, out.stderr
    assert "SEED-OK" in out.stdout
    assert "Traceback" not in out.stderr
    err = out.stderr
    # the three the demo sets; agent_pvm_meter_reporter_active is on by default but was not set: not named
    assert err.count("inactive options (OAP 6.6.0 has no receiver for them): agent_log_reporter_active, "
                     "agent_meter_reporter_active, agent_profile_active") == 1
    assert "already started in this process" in err


def test_unsupported_transport_is_reported_not_raised() -> None:
    out = run("from skywalking import agent, config\n"
              "config.init(agent_protocol='kafka', agent_protocol_version='v8', agent_asyncio_enhancement=True,\n"
              "            agent_profile_active=True, agent_logging_level='DEBUG')\n"
              "agent.start(); agent.start(); agent.stop(); agent.stop(); print('OK')")
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr
    assert out.stderr.count("agent_protocol=kafka needs kafka (pip install 'company-skywalking[kafka]'); "
                            "reporting over grpc") == 1
    assert "inactive options" not in out.stderr  # under v8 logs, meters and profiling all run
    assert "agent_asyncio_enhancement is accepted but unused" in out.stderr


def test_configuration_that_does_nothing_is_named_once() -> None:
    """A misspelled SW_* variable gets a warning with the closest option's variable; options left at their defaults
    are not listed as inactive; a backend address without a port is refused, saying why."""
    out = run("from skywalking import agent\nagent.start(); agent.stop()",
              {"SW_AGENT_COLECTOR_BACKEND_SERVICES": "127.0.0.1:11800", "SW_AGENT_NAME": "typo-svc"})
    assert out.stderr.count("environment variable SW_AGENT_COLECTOR_BACKEND_SERVICES is not a company-skywalking "
                            "option and is ignored; did you mean 'SW_AGENT_COLLECTOR_BACKEND_SERVICES'?") == 1
    assert "inactive options" not in out.stderr and "SW_AGENT_NAME is not" not in out.stderr
    out = run("from skywalking import config\nprint(config.agent_collector_backend_services)",
              {"SW_AGENT_COLLECTOR_BACKEND_SERVICES": "127.0.0.1"})
    assert "ignoring env SW_AGENT_COLLECTOR_BACKEND_SERVICES: agent_collector_backend_services: '127.0.0.1' has no " \
           "port; give the OAP's gRPC address as host:port, e.g. 127.0.0.1:11800" in out.stderr, out.stderr
    out = run("from skywalking import config\ntry:\n    config.init(agent_collector_backend_services='oap')\n"
              "except ValueError as e:\n    print(e)")
    assert out.stdout.strip() == "agent_collector_backend_services: 'oap' has no port; give the OAP's gRPC address " \
                                 "as host:port, e.g. 127.0.0.1:11800"


def test_cli_debug_forces_debug_logging() -> None:
    out = run("from skywalking import agent, loggings\nimport logging\nagent.start()\n"
              "print(loggings.logger.level == logging.DEBUG)", {"SW_AGENT_SW_PYTHON_CLI_DEBUG_ENABLED": "true"})
    assert out.stdout.strip().endswith("True"), out.stderr


def test_fork_support_restarts_in_the_child() -> None:
    code = """
import os
from skywalking import agent, config
from skywalking.reporter.memory import MemoryReporter
from skywalking.trace.context import get_context
config.init(agent_experimental_fork_support=True, agent_instance_name='inst')
agent.start(reporter=MemoryReporter())
pid = os.fork()
if pid == 0:
    ok = agent.started() and config.agent_instance_name == f'inst-child({os.getpid()})'
    with get_context().new_local_span('child-work'):
        pass
    rep = agent.agent._reporter
    os._exit(0 if ok and rep.count == 1 else 3)
_, status = os.waitpid(pid, 0)
print('CHILD', os.waitstatus_to_exitcode(status), config.agent_instance_name)
"""
    out = run(code)
    assert "CHILD 0 inst" in out.stdout, out.stdout + out.stderr


def test_a_forked_child_without_fork_support_traces_nothing() -> None:
    """Without ``agent_experimental_fork_support`` (and outside a pre-fork master) a child of ``os.fork`` does not
    trace: its copy of the parent's reporter has no threads, so a segment there would sit in a dead queue."""
    code = """
import os
from skywalking import agent
from skywalking.reporter.memory import MemoryReporter
from skywalking.trace.context import NOOP_CONTEXT, get_context
rep = MemoryReporter()
agent.start(reporter=rep)
pid = os.fork()
if pid == 0:
    with get_context().new_local_span('child-work'):
        pass
    os._exit(0 if get_context() is NOOP_CONTEXT and not agent.started() and rep.count == 0 else 3)
_, status = os.waitpid(pid, 0)
with get_context().new_local_span('parent-work'):
    pass
print('CHILD', os.waitstatus_to_exitcode(status), agent.started(), rep.count)
"""
    out = run(code)
    assert "CHILD 0 True 1" in out.stdout, out.stdout + out.stderr


def test_a_preforked_master_defers_to_its_workers() -> None:
    """In a pre-fork master (here, a process that looks like gunicorn's) the agent starts nothing: no reporter, no
    registration, no tracing; the child of each fork starts under an identity of its own."""
    code = """
import os, sys
sys.modules['gunicorn.arbiter'] = type(sys)('gunicorn.arbiter')  # what gunicorn's master has imported
from skywalking import agent, config
from skywalking.trace.context import NOOP_CONTEXT, get_context
config.init(agent_collector_backend_services='127.0.0.1:1', agent_instance_name='web')
agent.start()
master_ok = agent.agent.reporter is None and get_context() is NOOP_CONTEXT
pid = os.fork()
if pid == 0:
    ok = agent.started() and config.agent_instance_name == f'web-child({os.getpid()})' and \
        agent.agent.reporter is not None and get_context() is not NOOP_CONTEXT
    os._exit(0 if ok else 3)
_, status = os.waitpid(pid, 0)
print('MASTER', master_ok, 'CHILD', os.waitstatus_to_exitcode(status), agent.agent.reporter)
"""
    out = run(code)
    assert "MASTER True CHILD 0 None" in out.stdout, out.stdout + out.stderr
    assert "gunicorn master: the agent starts in each worker" in out.stderr


def test_set_identity_changes_who_reports_new_segments(start_agent: object) -> None:
    """``agent.set_identity``: segments started afterwards report as the new service and instance (a new identity,
    so a new OAP instance); a segment already started keeps the identity it started with."""
    from skywalking import agent, config
    from skywalking.trace.context import get_context

    rep = start_agent(agent_name="driver-svc")  # type: ignore[operator]
    first_instance = config.agent_instance_name
    with get_context().new_entry_span("/before"):  # live across the switch
        agent.set_identity("replica-svc", "replica-1")
    with get_context().new_entry_span("/after"):
        pass
    before, after = rep.segments
    assert before.identity[:2] == ("driver-svc", first_instance)
    assert after.identity[:2] == ("replica-svc", "replica-1") and after.identity[2] != before.identity[2]
    props = dict(after.identity[3])
    assert props["instance_name"] == "replica-1"
    assert (config.agent_name, config.agent_instance_name) == ("replica-svc", "replica-1")


def test_ray_workers_name_inactive_options_at_debug_only() -> None:
    """A Ray worker (argv0 default_worker.py) inherits the node's environment: what every worker would repeat is
    logged at DEBUG there."""
    code = ("import sys\nsys.argv[0] = '/x/ray/_private/workers/default_worker.py'\n"
            "from skywalking import agent, config\n"
            "config.init(agent_log_reporter_active=True, agent_logging_level={})\n"
            "agent.start(); agent.stop()")
    quiet = run(code.format("'INFO'"), {"SW_AGENT_NAMSPACE": "x"})
    assert "inactive options" not in quiet.stderr and "SW_AGENT_NAMSPACE" not in quiet.stderr, quiet.stderr
    loud = run(code.format("'DEBUG'"), {"SW_AGENT_NAMSPACE": "x"})
    assert "[DEBUG] inactive options (OAP 6.6.0 has no receiver for them): agent_log_reporter_active" in loud.stderr
    assert "did you mean 'SW_AGENT_NAMESPACE'?" in loud.stderr



# -- the reporter's protocol sessions and drop reasons ----------------------------------------------------------


def _failing_session(error: Exception) -> Any:
    from skywalking.reporter.session import Session

    class Failing(Session):
        def manage(self, channel: Any, generation: int) -> float:
            return 60.0

        def encode(self, segment: Any) -> bytes:
            raise error

    return Failing()


def test_v6_notions_are_the_sessions_not_the_generic_reporters() -> None:
    """``Reporter`` and ``GrpcReporter`` know nothing of sw6 ids; the v6 session issues them, the v8 one does not;
    reporter modules import a protocol module only in ``create``."""
    import ast

    from skywalking.protocol_v6.session import V6Session
    from skywalking.protocol_v8.session import V8Session
    from skywalking.reporter import Reporter
    from skywalking.reporter.grpc import GrpcReporter
    from skywalking.reporter.session import IssuesIds

    for name in ("instance_id", "wait_ready", "resolve", "note_endpoint"):
        assert not hasattr(Reporter, name) and not hasattr(GrpcReporter, name), name
    v6 = V6Session(lambda i, iid: None, lambda: None, lambda: None)
    assert isinstance(v6, IssuesIds) and not isinstance(V8Session(), IssuesIds)
    for path in (ROOT / "skywalking" / "reporter").glob("*.py"):
        tree = ast.parse(path.read_text())
        allowed = {id(n) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) and f.name == "create"
                   for n in ast.walk(f)}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(("skywalking.protocol_v",)):
                assert id(node) in allowed, f"{path.name}:{node.lineno} imports {node.module}"


def test_v6_session_is_ready_once_its_own_identity_has_an_id_until_a_reset() -> None:
    from skywalking.protocol_v6.session import V6Session
    from skywalking.trace.identity import new_identity

    changes: list[int] = []
    resets: list[int] = []
    session = V6Session(lambda i, iid: changes.append(iid), lambda: resets.append(1), lambda: None)
    own, other = new_identity("svc", "a"), new_identity("svc", "b")
    session.set_own(own, want=False)
    assert not session.wait_ready(0)
    session.registry.on_change(other, 7)  # another identity's id does not make this process ready
    assert not session.wait_ready(0.01)
    session.registry.on_change(own, 5)
    assert session.wait_ready(0) and changes == [7, 5]
    session.registry.reset()
    assert not session.wait_ready(0) and resets == [1]


def test_the_agent_takes_sw6_ids_from_the_reporters_session(start_agent: object) -> None:
    """With a session that issues ids the tracing core gets its instance id and lookups; without one (v8), none."""
    from skywalking import agent
    from skywalking.reporter import Reporter
    from skywalking.trace.tracer import TRACER, no_ids, no_names

    class Plain(Reporter):  # no session: nothing issues ids
        def report(self, segment: Any) -> bool:
            return True

    rep = start_agent()  # type: ignore[operator]
    assert TRACER.instance_id == 2 and TRACER.resolve == rep.session.resolve
    assert TRACER.resolve(TRACER.identity) == 2 and TRACER.note_endpoint == rep.session.note_endpoint
    agent.stop()
    agent.start(reporter=Plain())
    assert agent.started()
    assert TRACER.instance_id == 0 and TRACER.resolve is no_ids and TRACER.note_endpoint is no_names


@pytest.mark.parametrize(("error", "reason"), [(ValueError("string field 7 is not valid UTF-8"),
                                                 "not accepted by the backend"),
                                                (KeyError("span"), "encoding failed")])
def test_a_segment_that_cannot_be_encoded_is_dropped_for_a_fixed_reason(error: Exception, reason: str) -> None:
    """The drop counter is keyed by the reason, never by the exception's text."""
    from skywalking.reporter.grpc import GrpcReporter
    from tests.unit.test_wire import golden_v2_segment

    reporter = GrpcReporter(_failing_session(error), 10, ["127.0.0.1:9"], False)
    batch = [golden_v2_segment(), golden_v2_segment()]
    assert reporter._send(batch, 1.0) is True and batch == []
    assert reporter.stats()["dropped"] == {reason: 2} and reporter.stats()["dropped_total"] == 2


def test_a_stream_refused_at_interpreter_exit_is_told_by_the_interpreters_state(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A RuntimeError while sending drops the queue as "interpreter exiting" only once the interpreter exits (the
    error's message does not matter); before, it propagates as it did."""
    import threading

    from skywalking.reporter.grpc import GrpcReporter
    from tests.unit.test_wire import golden_v2_segment

    def refuse(batch: list[Any], timeout: float) -> bool:
        raise RuntimeError("any message")

    running = GrpcReporter(_failing_session(ValueError()), 10, ["127.0.0.1:9"], False)
    monkeypatch.setattr(running, "_send", refuse)
    running.report(golden_v2_segment())
    with pytest.raises(RuntimeError):
        running._send_batches()
    assert running.stats()["dropped"] == {}
    reporter = GrpcReporter(_failing_session(ValueError()), 10, ["127.0.0.1:9"], False)
    monkeypatch.setattr(reporter, "_send", refuse)
    for _ in range(3):
        reporter.report(golden_v2_segment())
    monkeypatch.setattr(threading, "_SHUTTING_DOWN", True)
    reporter._send_batches()
    assert reporter.stats()["dropped"] == {"interpreter exiting: cannot open a stream": 3} and not reporter._queue
