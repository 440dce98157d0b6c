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

"$(dirname "$0")/apt-install.sh" redis-server || exit 1
path=$(command -v redis-server) || path=/usr/bin/redis-server
[ -x "$path" ] || fail "redis-server was installed but no binary was found"
echo "$path"
