"""The propagation seam: header formats and protocol rules live in skywalking.trace.propagation only.

The behaviour through real spans (inject / extract under v6, v8 and both headers) is in test_context.py;
here: what each protocol makes of each inbound form, the choice made at start, and the layering rules
that keep spans and contexts wire-neutral.
"""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

import pytest

from skywalking import agent, config
from skywalking.reporter.memory import MemoryReporter
from skywalking.trace import propagation
from skywalking.trace.context import get_context
from skywalking.trace.handoff import Handoff
from skywalking.trace.headers import SW6, SW8
from skywalking.trace.identity import new_identity
from skywalking.trace.ids import ID
from skywalking.trace.tracer import TRACER

TRACE = Path(__file__).resolve().parents[2] / "skywalking" / "trace"
SW6_ID = ID("1.2.3", (1, 2, 3))
SW8_ID = ID("a1b2c3.4.5")
CALLER = new_identity("caller", "caller-1")


def sw6() -> SW6:
    return SW6(SW6_ID, ID("1.2.4", (1, 2, 4)), 2, 7, 8, "#10.0.0.1:80", "#/entry", "#/parent")


def sw8(trace_id: ID = SW8_ID) -> SW8:
    return SW8(trace_id, ID("a1b2c3.4.6"), 1, "svc", "inst", "/parent", "10.0.0.1:80")


def handoff(trace_id: ID) -> Handoff:
    return Handoff(trace_id, ID("1.2.4", (1, 2, 4)), 3, CALLER, CALLER, "#/entry", "#/parent", "/parent", "ray", None)


def test_v6_links_sw6_and_handoffs_and_keeps_only_the_trace_of_sw8() -> None:
    v6 = propagation.select("v6", ("sw6",), "sw6")
    trace, ref = v6.link(sw6())
    assert trace == SW6_ID and ref is not None
    assert (ref.parent_instance, ref.entry_instance, ref.client_address, ref.entry_endpoint, ref.endpoint) == (
        7, 8, "10.0.0.1:80", "/entry", "/parent")
    assert v6.link(sw8(ID("4.5.6", (4, 5, 6)))) == (ID("4.5.6"), None)  # sw6-shaped: the trace carries over
    assert v6.link(sw8()) == (None, None)  # v2 cannot carry a string trace id: a new trace
    trace, ref = v6.link(handoff(SW6_ID))
    assert trace == SW6_ID and ref is not None and ref.parent_instance == CALLER
    assert v6.link(handoff(SW8_ID)) == (None, None)


def test_v8_links_sw8_and_handoffs_and_keeps_only_the_trace_of_sw6() -> None:
    v8 = propagation.select("v8", ("sw8",), "sw6")
    trace, ref = v8.link(sw8())
    assert trace == SW8_ID and ref is not None and (ref.service, ref.service_instance) == ("svc", "inst")
    trace, ref = v8.link(sw6())
    assert ref is None and trace == SW6_ID and trace.parts is None  # a v3 segment carries the text form only
    trace, ref = v8.link(handoff(SW8_ID))
    assert trace == SW8_ID and ref is not None


@pytest.mark.parametrize(("protocol", "formats", "key", "outbound", "inbound_keys"), [
    ("v6", ("sw6",), "sw6", ["sw6"], ("sw6", "sw8-correlation", "sw8")),
    ("v6", ("sw6", "sw8"), "prod-sw6", ["sw6", "sw8"], ("prod-sw6", "sw8-correlation", "sw8")),
    ("v8", ("sw8",), "sw6", ["sw8"], ("sw8-correlation", "sw8", "sw6")),
])
def test_select(protocol: str, formats: tuple[str, ...], key: str, outbound: list[str],
                inbound_keys: tuple[str, ...]) -> None:
    chosen = propagation.select(protocol, formats, key)
    assert chosen.version == protocol
    assert [f.name for f in chosen.outbound] == outbound and chosen.inbound_keys == inbound_keys
    value = "1-MS4yLjM=-MS4yLjQ=-2-7-8-IzEwLjAuMC4xOjgw-Iy9lbnRyeQ==-Iy9wYXJlbnQ="
    assert chosen.decode({key: value}) == sw6()  # the own sw6 header, under its configured name
    assert chosen.decode({key: "garbage", "sw8": "also garbage"}) is None  # never raises


def test_the_choice_is_made_when_tracing_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Config written after start changes nothing until the next start: one segment never mixes id shapes."""
    config.init(agent_protocol_version="v6", agent_propagation="")
    agent.start(reporter=MemoryReporter())
    try:
        monkeypatch.setattr(config, "agent_protocol_version", "v8")
        with get_context().new_local_span("/a"):
            pass
        assert TRACER.propagation.version == "v6"
        assert agent.agent.reporter.segments[-1].segment_id.parts is not None  # type: ignore[union-attr]
    finally:
        agent.stop()
    agent.start(reporter=MemoryReporter())
    try:
        with get_context().new_local_span("/a"):
            pass
        assert TRACER.propagation.version == "v8"
        assert agent.agent.reporter.segments[-1].segment_id.parts is None  # type: ignore[union-attr]
    finally:
        agent.stop()
        monkeypatch.undo()
        propagation.install()


# -- layering -------------------------------------------------------------------------------------

def runtime_imports(path: Path) -> set[str]:
    """``skywalking.trace.*`` modules that ``path`` imports at run time, at module level or lazily inside a
    function (typing-only imports under TYPE_CHECKING do not count; nor does a module ``__getattr__``, which
    re-exports names that moved, for code written against upstream's layout)."""
    found = set()
    nodes: list[ast.AST] = []
    for top in ast.parse(path.read_text()).body:
        if isinstance(top, ast.If) and "TYPE_CHECKING" in ast.dump(top.test):
            continue
        if isinstance(top, ast.FunctionDef) and top.name == "__getattr__":
            continue
        nodes.extend(ast.walk(top))
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("skywalking.trace"):
            if node.module == "skywalking.trace":
                found.update(f"skywalking.trace.{a.name}" for a in node.names)
            else:
                found.add(node.module)
    return {m for m in found if (TRACE / f"{m.rsplit('.', 1)[1]}.py").exists()}


def test_trace_modules_import_each_other_without_a_cycle() -> None:
    graph = {f"skywalking.trace.{p.stem}": runtime_imports(p) for p in TRACE.glob("*.py") if p.stem != "__init__"}
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, "import cycle: " + " -> ".join((*path, module))
        if module in done:
            return
        for dep in graph.get(module, ()):
            visit(dep, (*path, module))
        done.add(module)

    for module in graph:
        visit(module, ())
    assert "skywalking.trace.context" not in graph["skywalking.trace.span"]


@pytest.mark.parametrize("module", ["span.py", "context.py", "segment.py", "noop.py"])
def test_spans_and_contexts_know_no_header_format(module: str) -> None:
    """No sw6/sw8 name or header literal in code (comments and docstrings may explain)."""
    source = (TRACE / module).read_text()
    docstrings = {node.body[0].value.lineno for node in ast.walk(ast.parse(source))  # type: ignore[attr-defined]
                  if isinstance(node, ast.FunctionDef | ast.ClassDef | ast.Module | ast.AsyncFunctionDef)
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type in (tokenize.NAME, tokenize.STRING) and tok.start[0] not in docstrings:
            assert "sw6" not in tok.string.lower() and "sw8" not in tok.string.lower(), \
                f"{module}:{tok.start[0]} names a header format: {tok.string!r}"


def test_only_the_context_touches_its_private_members() -> None:
    root = TRACE.parent
    for path in root.rglob("*.py"):
        if path == TRACE / "context.py" or "gen" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                target = node.value
                if isinstance(target, ast.Name) and target.id == "ctx" or \
                        isinstance(target, ast.Attribute) and target.attr == "context" and not \
                        path.name == "sw_grpc.py":
                    pytest.fail(f"{path.relative_to(root)}:{node.lineno} reads a context's private .{node.attr}")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr" \
                    and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) \
                    and node.args[1].value in ("_segment", "_first", "_correlation"):
                pytest.fail(f"{path.relative_to(root)}:{node.lineno} fetches a context's private member")
