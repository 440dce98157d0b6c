#!/bin/sh
# MariaDB for the MySQL plugin tests (sw_pymysql, sw_mysqlclient).
#
#   tools/mariadb-server.sh                 print the path of the server binary (mariadbd or mysqld); when there is
#                                           none, install Debian's mariadb-server package without starting its service
#   tools/mariadb-server.sh --client-dev [command ...]
#                                           make sure the MariaDB client headers (libmariadb-dev) and pkg-config are
#                                           there, for building mysqlclient from source, then run the command if given
#                                           (tox.ini's mysqlclient envs use it as their install_command)
#
# Installs with apt-get as root or through password-less sudo. Exits non-zero with the reason on stderr when the
# packages cannot be had. Installer output goes to stderr. The test starts its own server on a free port.
set -u

fail() {
    echo "tools/mariadb-server.sh: $*" >&2
    exit 1
}

server_binary() {
    for candidate in mariadbd mysqld /usr/sbin/mariadbd /usr/sbin/mysqld; do
        if path=$(command -v "$candidate" 2>/dev/null) && [ -x "$path" ]; then
            echo "$path"
            return 0
        fi
    done
    return 1
}

# mysqlclient 2.1 asks mysql_config / mariadb_config, 2.2+ asks pkg-config (mysqlclient or mariadb)
have_client_dev() {
    { command -v mariadb_config || command -v mysql_config; } >/dev/null 2>&1 \
        && command -v pkg-config >/dev/null 2>&1 \
        && { pkg-config --exists mysqlclient || pkg-config --exists mariadb; } 2>/dev/null
}

apt_install() {
    "$(dirname "$0")/apt-install.sh" "$@" || exit 1
}

if [ "${1:-}" = "--client-dev" ]; then
    shift
    if ! have_client_dev; then
        apt_install libmariadb-dev pkg-config
        have_client_dev || fail "libmariadb-dev was installed but mariadb_config / mariadb.pc were not found"
    fi
    if [ "$#" -gt 0 ]; then
        exec "$@"
    fi
    command -v mariadb_config || command -v mysql_config
    exit 0
fi

if server_binary; then
    exit 0
fi
apt_install mariadb-server
server_binary || fail "mariadb-server was installed but no mariadbd / mysqld binary was found"
