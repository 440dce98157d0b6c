#!/bin/sh
# Print the path of a rabbitmq-server start script for the sw_rabbitmq plugin test (the one that runs the broker as
# the calling user; tests/plugins/rabbitmq.py starts it on free 127.0.0.1 ports). When there is none, install
# Debian's rabbitmq-server package with apt-get (as root, or through password-less sudo), without starting its
# service. Exits non-zero with the reason on stderr when none can be had. Installer output goes to stderr.
set -u

fail() {
    echo "tools/rabbitmq-server.sh: $*" >&2
    exit 1
}

# Debian's /usr/sbin/rabbitmq-server switches to the rabbitmq user (dropping our settings); this one does not
find_script() {
    for candidate in /usr/lib/rabbitmq/bin/rabbitmq-server "${RABBITMQ_HOME:-/nonexistent}/sbin/rabbitmq-server"; do
        if [ -x "$candidate" ]; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

if path=$(find_script); then
    echo "$path"
    exit 0
fi

command -v apt-get >/dev/null 2>&1 || fail "no rabbitmq-server and no apt-get to install it; install rabbitmq-server"
if [ "$(id -u)" -eq 0 ]; then
    root=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    root="sudo -n"
else
    fail "no rabbitmq-server, and installing it (apt-get install rabbitmq-server) needs root"
fi

# keep the package's service from starting: the test runs its own broker on free ports
policy=/usr/sbin/policy-rc.d
made_policy=""
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $root tee "$policy" >/dev/null && $root chmod 755 "$policy" && made_policy=1
fi
cleanup() {
    if [ -n "$made_policy" ]; then
        $root rm -f "$policy"
    fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

install() {
    $root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rabbitmq-server >&2
}

if ! install; then
    echo "tools/rabbitmq-server.sh: apt-get install failed; retrying after apt-get update" >&2
    $root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || fail "apt-get update failed"
    install || fail "apt-get install rabbitmq-server failed"
fi

path=$(find_script) || fail "rabbitmq-server was installed but its start script was not found"
echo "$path"
