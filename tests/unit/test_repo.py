"""The repository stands on its own.

Every file git tracks (or would track: untracked files that are not ignored count too) must not name a
path of a development machine or of material outside the repository, and every section sign must cite
a file of the repository that has that section, e.g. ``docs/protocol/sw6.md`` followed by the section
number. A bare section number is only allowed in a Markdown file, where it means a section of that file.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECTION = "\u00a7"  # written as an escape so that this file holds no section sign of its own

# paths that only exist on somebody's machine (built by concatenation so that this file does not match)
FORBIDDEN = ("/" + "work/", "/" + "home/", "/" + "Users/", "/" + "root/", "shared" + "/spec", "../" + "shared")
SKIP_SUFFIXES = (".key", ".crt", ".pem", ".png", ".jpg", ".gif", ".ico", ".whl", ".gz", ".zip")

_NUM = r"\d+(?:\.\d+)*"
# a Markdown file, then one or more section numbers joined by ",", "and", "to" or a dash
_CITED = re.compile(
    rf"(?P<path>[\w./-]+\.md)[)\]`'\"]*\s*(?P<refs>{SECTION}{_NUM}(?:\s*(?:,|and|to|–|-)\s*{SECTION}?{_NUM})*)")
# a Markdown link whose text is a section number and whose target is the file (an anchor may follow)
_LINKED = re.compile(rf"\[{SECTION}(?P<refs>{_NUM})\]\((?P<path>[\w./-]+\.md)(?:#[^)\s]*)?\)")
_BARE = re.compile(rf"{SECTION}(?P<num>{_NUM})")
_HEADING = re.compile(rf"^#{{1,6}}\s+(?P<num>{_NUM})\.?\s", re.M)


def repo_files() -> list[Path]:
    """Files git tracks plus untracked ones it does not ignore, that exist."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        pytest.skip("not a git checkout")
    names = sorted({n for n in out.decode("utf-8", "surrogateescape").split("\0") if n})
    return [ROOT / n for n in names if (ROOT / n).is_file()]


def read_text(path: Path) -> str | None:
    """The file's text, or None for binary files and the certificate / key fixtures."""
    if path.suffix in SKIP_SUFFIXES:
        return None
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def sections(path: Path, cache: dict[Path, set[str] | None]) -> set[str] | None:
    """The numbers of a Markdown file's numbered headings (``## 8. …`` → ``8``, ``### 8.4 …`` → ``8.4``), or
    None if the file does not exist."""
    if path not in cache:
        cache[path] = ({m["num"] for m in _HEADING.finditer(path.read_text(encoding="utf-8"))}
                       if path.is_file() else None)
    return cache[path]


def _target(cited: str, where: Path) -> Path:
    """A cited path: from the repository root, else relative to the citing file."""
    from_root = ROOT / cited
    return from_root if from_root.is_file() else (where.parent / cited).resolve()


def machine_paths(text: str) -> list[tuple[int, str]]:
    """(line, forbidden string) for every development-machine path in ``text``."""
    return [(i, bad) for i, line in enumerate(text.splitlines(), 1) for bad in FORBIDDEN if bad in line]


def bad_sections(text: str, where: Path, cache: dict[Path, set[str] | None]) -> list[tuple[int, str]]:
    """(line, problem) for every section sign in ``text`` that does not cite an existing section of a
    repository file. ``where`` is the file the text comes from."""
    problems: list[tuple[int, str]] = []
    covered: set[int] = set()

    def check(path: Path, nums: list[str], start: int, label: str) -> None:
        line = text.count("\n", 0, start) + 1
        have = sections(path, cache)
        if have is None:
            problems.append((line, f"{label}: no such file"))
            return
        for num in nums:
            if num not in have:
                problems.append((line, f"{label}: {path.relative_to(ROOT)} has no section {num}"))

    for regex in (_CITED, _LINKED):
        for m in regex.finditer(text):
            nums = re.findall(_NUM, m["refs"])
            check(_target(m["path"], where), nums, m.start(), m.group(0))
            covered.update(i for i in range(m.start("refs") - 1, m.end("refs")) if text[i] == SECTION)
    for i, ch in enumerate(text):
        if ch != SECTION or i in covered:
            continue
        m = _BARE.match(text, i)
        line_no = text.count("\n", 0, i) + 1
        snippet = text[max(0, i - 30):i + 12].replace("\n", " ")
        if m and where.suffix == ".md":
            check(where, [m["num"]], i, snippet)  # a bare number in Markdown: a section of the same file
        else:
            problems.append((line_no, f"{snippet!r}: a section sign that names no file of the repository"))
    return problems


def test_no_machine_paths_or_dangling_section_references() -> None:
    cache: dict[Path, set[str] | None] = {}
    problems = []
    for path in repo_files():
        text = read_text(path)
        if text is None:
            continue
        rel = path.relative_to(ROOT)
        problems += [f"{rel}:{line}: names {bad!r}" for line, bad in machine_paths(text)]
        if SECTION in text:
            problems += [f"{rel}:{line}: {what}" for line, what in bad_sections(text, path, cache)]
    assert not problems, "\n".join(problems)


def test_the_checker_flags_what_it_should() -> None:
    doc = "docs/protocol/sw6.md"
    cache: dict[Path, set[str] | None] = {}
    code = ROOT / "skywalking" / "example.py"  # a non-Markdown file: a bare number is not enough
    s = SECTION
    ok = [f"# see {doc} {s}8.4", f"({doc} {s}5.4, {s}5.5)", f"{doc} {s}3.2 to {s}3.5", f"{doc} {s}8",
          f"[{s}8.3](docs/protocol/sw6.md#83-the-bytes-must-parse-unparseable)"]
    for text in ok:
        assert bad_sections(text, code, cache) == [], text
    bad = [f"# {s}3.4", f"spec {s}3.4", f"shared/notes.md {s}3.4", f"{doc} {s}99.1", f"{doc} {s}8.4, {s}99",
           f"{s} alone", f"[{s}8.3](docs/nowhere.md#x)"]
    for text in bad:
        assert bad_sections(text, code, cache), text
    own = ROOT / "docs" / "protocol" / "sw6.md"  # in Markdown, a bare number is a section of the same file
    assert bad_sections(f"see {s}7.4", own, cache) == []
    assert bad_sections(f"see {s}70.4", own, cache)
    assert bad_sections(f"see {s}7.4", ROOT / "docs" / "ray.md", cache)  # ray.md has no numbered sections
    assert machine_paths("x\nopen('" + "/" + "home/me/f')") == [(2, "/" + "home/")]
    assert machine_paths("tempfile.mkdtemp(dir='/tmp')") == []
