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

"$(dirname "$0")/apt-install.sh" rabbitmq-server || exit 1
path=$(find_script) || fail "rabbitmq-server was installed but its start script was not found"
echo "$path"
