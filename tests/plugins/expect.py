"""Expected-data matching for the plugin tests: the segments the bundled collector received against a JSON
file per plugin.

An expected file lists segments, each with its ``service`` and its spans in the order the agent finished them
(the entry span last). A span lists only the fields it checks; ``tags`` is a mapping checked key by key and
``refs`` a list of mappings. Values match literally, except strings with a matcher prefix:

* ``"re:<regex>"``: the whole value matches the regular expression;
* ``"not null"``: present and not empty;
* ``"gt <n>"``: a number greater than n;
* ``"{name}"`` inside a value: replaced by the test's variables first (ports, for example).

Every expected segment must be matched by a different received segment; extra received segments are fine
only if ``"exact": true`` is not set at the top of the file.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any


def load(path: Path, **variables: Any) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    for name, value in variables.items():
        text = text.replace("{" + name + "}", str(value))
    return json.loads(text)


def value_matches(expected: Any, actual: Any) -> bool:
    if isinstance(expected, str):
        if expected.startswith("re:"):
            return actual is not None and re.fullmatch(expected[3:], str(actual)) is not None
        if expected == "not null":
            return actual not in (None, "", [], {})
        if expected.startswith("gt "):
            return isinstance(actual, (int, float)) and actual > float(expected[3:])
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(value_matches(v, actual.get(k)) for k, v in expected.items())
    if isinstance(expected, list):
        return isinstance(actual, list) and len(expected) == len(actual) and all(
            value_matches(e, a) for e, a in zip(expected, actual, strict=True))
    return expected == actual


def span_mismatch(expected: dict[str, Any], actual: dict[str, Any]) -> str | None:
    """Why ``actual`` does not match ``expected`` (None when it does)."""
    for key, want in expected.items():
        if key == "tags":
            tags = {t["key"]: t["value"] for t in actual.get("tags", [])}
            for tag, value in want.items():
                if not value_matches(value, tags.get(tag)):
                    return f"tag {tag}: expected {value!r}, got {tags.get(tag)!r}"
        elif not value_matches(want, actual.get(key)):
            return f"{key}: expected {want!r}, got {actual.get(key)!r}"
    return None


def segment_mismatch(expected: dict[str, Any], actual: dict[str, Any]) -> str | None:
    if expected.get("service") not in (None, actual.get("service")):
        return f"service {actual.get('service')!r}"
    spans = actual.get("spans", [])
    if len(spans) != len(expected["spans"]):
        return f"{len(spans)} spans: {[s['operationName'] for s in spans]}"
    for i, (want, got) in enumerate(zip(expected["spans"], spans, strict=True)):
        why = span_mismatch(want, got)
        if why:
            return f"span {i} ({got.get('operationName')}): {why}"
    return None


def check(expected: dict[str, Any], received: list[dict[str, Any]]) -> None:
    """Raise AssertionError with every near miss when an expected segment has no match."""
    free = list(received)
    for n, want in enumerate(expected["segments"]):
        misses = []
        for got in free:
            why = segment_mismatch(want, got)
            if why is None:
                free.remove(got)
                break
            misses.append(why)
        else:
            raise AssertionError(f"expected segment {n} ({want.get('service')}) not received; near misses:\n  "
                                 + "\n  ".join(misses or ["(nothing received)"]))
    if expected.get("exact") and free:
        raise AssertionError(f"{len(free)} unexpected segment(s): {[s['spans'][-1]['operationName'] for s in free]}")
