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

command -v apt-get >/dev/null 2>&1 || fail "no PostgreSQL server binaries and no apt-get to install them; install postgresql"
if [ "$(id -u)" -eq 0 ]; then
    root=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    root="sudo -n"
else
    fail "no PostgreSQL server binaries, and installing them (apt-get install postgresql) needs root"
fi

# keep the package's cluster service from starting: the tests run their own server on a free port
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
    $root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >&2
}

if ! install; then
    echo "tools/postgres-server.sh: apt-get install failed; retrying after apt-get update" >&2
    $root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || fail "apt-get update failed"
    install || fail "apt-get install postgresql failed"
fi

dir=$(find_bin) || fail "postgresql was installed but no initdb/postgres binaries were found"
echo "$dir"
