"""Check that tox.ini's plugin matrix agrees with the plugins' own ``instruments`` declarations (the single
source of the supported versions), and print the envs ``make test-plugins`` runs.

Usage: ``python tools/check_matrix.py`` (exit 1 and one line per problem if they disagree) or
``python tools/check_matrix.py --envs`` (the comma-separated env list for ``tox -e``).

Rules: a plugin that declares a distribution has tox envs ``plugin-<name>-oldest`` and ``plugin-<name>-newest``
(``sw_<name>``; Ray keeps its own env names, see ``OWN_ENVS``); the oldest env pins every declared distribution
with ``==`` to a release of the declared floor (``>=2.25`` accepts ``2.25.1``, not ``2.26``), the newest env
installs it unpinned; no env pins a plugin's distribution outside the declared range; every ``plugin-*`` env
names an existing plugin; every env section is in ``envlist`` and the other way round.
"""

from __future__ import annotations

import configparser
import itertools
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from packaging.requirements import InvalidRequirement, Requirement  # noqa: E402
from packaging.utils import canonicalize_name  # noqa: E402
from packaging.version import InvalidVersion, Version  # noqa: E402

from skywalking import plugins  # noqa: E402

TOX_INI = ROOT / "tox.ini"
# plugins whose matrix envs keep names of their own (used in docs and CI); the newest Ray runs in `make test`
OWN_ENVS: dict[str, tuple[str, ...]] = {"sw_ray": ("ray29", "ray240")}
# envs of the agent itself that need a library `make test` lacks (agent_protocol=kafka needs kafka-python)
AGENT_ENVS: tuple[str, ...] = ("transport-kafka",)
_FACTOR = re.compile(r"^([\w!,-]+):\s*(.+)$")


@dataclass
class Env:
    name: str
    deps: list[str] = field(default_factory=list)  # requirement strings that apply to this env

    def pins(self) -> dict[str, str]:
        """canonical distribution name -> the version pinned with ``==`` (others are left out)."""
        out = {}
        for dep in self.deps:
            try:
                req = Requirement(dep)
            except InvalidRequirement:
                continue
            exact = [s.version for s in req.specifier if s.operator == "=="]
            if exact:
                out[canonicalize_name(req.name)] = exact[0]
        return out

    def unpinned(self) -> set[str]:
        names = set()
        for dep in self.deps:
            try:
                req = Requirement(dep)
            except InvalidRequirement:
                continue
            if not req.specifier:
                names.add(canonicalize_name(req.name))
        return names


def expand(text: str) -> list[str]:
    """tox brace expansion: ``a-{x,y}-b`` -> ``a-x-b``, ``a-y-b`` (several groups multiply)."""
    parts = re.split(r"\{([^{}]*)\}", text)
    choices = [[p] if i % 2 == 0 else [c.strip() for c in p.split(",")] for i, p in enumerate(parts)]
    return ["".join(combo) for combo in itertools.product(*choices)]


def _split_list(value: str) -> list[str]:
    """A tox list value (commas or newlines, braces kept together) expanded."""
    items, depth, cur = [], 0, ""
    for ch in value:
        if ch in ",\n" and depth == 0:
            items.append(cur)
            cur = ""
            continue
        depth += (ch == "{") - (ch == "}")
        cur += ch
    items.append(cur)
    return [name for item in items if item.strip() for name in expand(item.strip())]


def read_tox(path: Path = TOX_INI) -> tuple[list[str], dict[str, Env]]:
    """(envlist in order, every env defined by a ``[testenv:...]`` section with the deps that apply to it)."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(path)
    envlist = _split_list(parser.get("tox", "envlist", fallback=""))
    envs: dict[str, Env] = {}
    for section in parser.sections():
        if not section.startswith("testenv:"):
            continue
        for name in expand(section[len("testenv:"):]):
            env = envs.setdefault(name, Env(name))
            factors = set(name.split("-"))
            for line in parser.get(section, "deps", fallback="").splitlines():
                line = line.strip()
                if not line or line.startswith(("#", "-")):
                    continue
                match = _FACTOR.match(line)
                if match and not match.group(1).startswith(("http", "git")):
                    wanted = set(match.group(1).split(","))
                    if not wanted & factors:
                        continue
                    line = match.group(2).strip()
                env.deps.append(line)
    return envlist, envs


def declared() -> dict[str, list[Requirement]]:
    """plugin name -> its declared requirements (every shipped plugin, also those with none)."""
    out = {}
    for name in plugins.discover():
        plugin = plugins.load(name)
        if plugin is None:
            raise SystemExit(f"plugin {name} does not load")
        out[name] = [Requirement(spec) for spec in plugin.instruments]
    return out


def floor(req: Requirement) -> Version | None:
    lows = [Version(s.version) for s in req.specifier if s.operator in (">=", "==", "~=")]
    return min(lows) if lows else None


def plugin_envs(name: str) -> tuple[str, ...]:
    short = name.removeprefix("sw_")
    return OWN_ENVS.get(name, (f"plugin-{short}-oldest", f"plugin-{short}-newest"))


def _in_floor_series(pin: str, low: Version) -> bool:
    try:
        return Version(pin).release[:len(low.release)] == low.release
    except InvalidVersion:
        return False


def problems(tox_ini: Path = TOX_INI, decl: dict[str, list[Requirement]] | None = None) -> list[str]:
    """Every disagreement between tox.ini and the plugin declarations, one readable line each."""
    decl = declared() if decl is None else decl
    envlist, envs = read_tox(tox_ini)
    found = []
    for name in sorted(set(envs) - set(envlist)):
        found.append(f"tox.ini: env {name} has a section but is not in envlist")
    for name in envlist:
        if name not in envs and (name.startswith("plugin-") or name in {e for v in OWN_ENVS.values() for e in v}):
            found.append(f"tox.ini: env {name} is in envlist but has no section")
    for name in envs:
        match = re.fullmatch(r"plugin-(.+)-(oldest|newest)", name)
        if name.startswith("plugin-") and not match:
            found.append(f"tox.ini: env {name} is not named plugin-<plugin>-oldest|newest")
        elif match and f"sw_{match.group(1)}" not in decl:
            found.append(f"tox.ini: env {name} names plugin sw_{match.group(1)}, which does not exist")
    for plugin, reqs in sorted(decl.items()):
        if not reqs:
            continue  # standard library: runs in `make test`
        names = plugin_envs(plugin)
        missing = [e for e in names if e not in envs]
        if missing:
            found.append(f"{plugin}: no tox env {', '.join(missing)} (declares {', '.join(map(str, reqs))})")
            continue
        for req in reqs:
            dist, low = canonicalize_name(req.name), floor(req)
            if low is None:
                found.append(f"{plugin}: {req} declares no floor (>=)")
                continue
            pins = {e: envs[e].pins().get(dist) for e in names}
            if plugin in OWN_ENVS:
                if not any(p and _in_floor_series(p, low) for p in pins.values()):
                    found.append(f"{plugin}: none of {', '.join(names)} pins {req.name} to its floor {low} "
                                 f"(pins: {pins})")
                continue
            oldest, newest = names
            pin = pins[oldest]
            if pin is None:
                found.append(f"{plugin}: {oldest} does not pin {req.name} (declared floor {low})")
            elif not _in_floor_series(pin, low):
                found.append(f"{plugin}: {oldest} pins {req.name}=={pin} but the plugin declares {req.specifier}")
            if dist not in envs[newest].unpinned():
                found.append(f"{plugin}: {newest} does not install {req.name} unpinned")
        for env in envs.values():  # e.g. floors, ray240: a pin must lie in the declared range
            for req in reqs:
                pin = env.pins().get(canonicalize_name(req.name))
                if pin and not req.specifier.contains(pin, prereleases=True):
                    found.append(f"{plugin}: env {env.name} pins {req.name}=={pin}, outside {req.specifier}")
    return found


def matrix_envs(tox_ini: Path = TOX_INI) -> list[str]:
    """What `make test-plugins` runs: the plugin-* envs in envlist order, then the plugins' own envs and the
    agent's."""
    envlist, _ = read_tox(tox_ini)
    own = [e for names in OWN_ENVS.values() for e in names] + list(AGENT_ENVS)
    return [e for e in envlist if e.startswith("plugin-")] + [e for e in own if e in envlist]


def main(argv: list[str]) -> int:
    if argv[1:] == ["--envs"]:
        print(",".join(matrix_envs()))
        return 0
    if argv[1:]:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    found = problems()
    for line in found:
        print(line, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
