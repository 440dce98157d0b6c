#!/bin/sh
# Print the path of a redis-server binary for the sw_redis plugin test. When none is on PATH, install Debian's
# redis-server package with apt-get (as root, or through password-less sudo), without starting its service.
# Exits non-zero with the reason on stderr when no binary can be had. Installer output goes to stderr.
set -u

fail() {
    echo "tools/redis-server.sh: $*" >&2
    exit 1
}

if path=$(command -v redis-server); then
    echo "$path"
    exit 0
fi

command -v apt-get >/dev/null 2>&1 || fail "no redis-server on PATH and no apt-get to install it; install redis-server"
if [ "$(id -u)" -eq 0 ]; then
    root=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    root="sudo -n"
else
    fail "no redis-server on PATH, and installing it (apt-get install redis-server) needs root"
fi

# keep the package's service from starting: the test runs its own server on a free port
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
    $root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >&2
}

if ! install; then
    echo "tools/redis-server.sh: apt-get install failed; retrying after apt-get update" >&2
    $root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || fail "apt-get update failed"
    install || fail "apt-get install redis-server failed"
fi

path=$(command -v redis-server) || path=/usr/bin/redis-server
[ -x "$path" ] || fail "redis-server was installed but no binary was found"
echo "$path"
