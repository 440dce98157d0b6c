#!/bin/sh
# Print the directory holding PostgreSQL's server binaries (initdb, postgres, psql) for the PostgreSQL plugin tests
# (sw_psycopg2, sw_psycopg, sw_asyncpg). When there is none, install Debian's postgresql package with apt-get (as
# root, or through password-less sudo) without starting its service. Exits non-zero with the reason on stderr when
# no server can be had. Installer output goes to stderr.
set -u

fail() {
    echo "tools/postgres-server.sh: $*" >&2
    exit 1
}

find_bin() {
    if path=$(command -v initdb) && [ -x "$(dirname "$path")/postgres" ]; then
        dirname "$(readlink -f "$path")"
        return 0
    fi
    # Debian keeps them off PATH, one directory per major version: take the newest
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -n -r); do
        if [ -x "$dir/initdb" ] && [ -x "$dir/postgres" ]; then
            echo "$dir"
            return 0
        fi
    done
    return 1
}

if dir=$(find_bin); then
    echo "$dir"
    exit 0
fi

"$(dirname "$0")/apt-install.sh" postgresql || exit 1
dir=$(find_bin) || fail "postgresql was installed but no initdb/postgres binaries were found"
echo "$dir"
