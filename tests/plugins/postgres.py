"""A real PostgreSQL server for the PostgreSQL plugin tests (tools/postgres-server.sh prints the binaries' directory,
installing Debian's package when there is none): 127.0.0.1:<free port> and a unix socket in a temp dir that also
holds the data. PostgreSQL refuses to run as root: as root the server runs as the ``postgres`` user."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from tests.plugins.servers import server_path
from tests.protocol.procs import ROOT
from tools.server_process import ServerProcess

SCRIPT = ROOT / "tools" / "postgres-server.sh"
DATABASE = "sw_test"


def postgres_bin_dir() -> Path:
    """The directory tools/postgres-server.sh prints; skips (fails under CI / SW_REQUIRE_POSTGRES) without one."""
    return Path(server_path(SCRIPT, "PostgreSQL server", "SW_REQUIRE_POSTGRES"))


class PostgresServer(ServerProcess):
    """``postgres`` on 127.0.0.1:<free port> and a unix socket in ``socket_dir``, the temp dir that also holds the
    data (initdb, trust authentication, user ``postgres``, database ``sw_test``); stop() ends it and removes the
    dir."""

    name = "postgres"
    not_ready = "postgres did not start"
    stop_signal = signal.SIGINT  # fast shutdown: ends the sessions, no waiting for clients
    signal_group = False  # to the postmaster alone: it stops its children
    stop_timeout = 20.0

    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self._as: dict[str, Any] = {}
        super().__init__()

    @property
    def socket_dir(self) -> str:
        return self.dir

    @property
    def data(self) -> str:
        return os.path.join(self.dir, "data")

    def setup(self) -> None:
        if os.geteuid() == 0:  # postgres refuses to run as root
            import pwd

            entry = pwd.getpwnam("postgres")  # created by Debian's package
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
            self._as = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        done = subprocess.run([str(self.bin / "initdb"), "-D", self.data, "-U", "postgres", "-A", "trust", "-E",
                               "UTF8", "--locale=C", "--no-sync"],
                              capture_output=True, text=True, timeout=120, check=False, cwd=self.dir, **self._as)
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{done.stdout}\n{done.stderr}")

    def command(self) -> list[str]:
        return [str(self.bin / "postgres"), "-D", self.data, "-k", self.socket_dir, "-p", str(self.port),
                "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
                "-c", "full_page_writes=off", "-c", "max_connections=40"]

    def popen_options(self) -> dict[str, Any]:
        return self._as

    def ready(self) -> bool:
        try:
            return subprocess.run([str(self.bin / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)],
                                  check=False, timeout=10).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def started(self) -> None:
        self.psql(f"CREATE DATABASE {DATABASE}", database="postgres")

    def psql(self, sql: str, database: str = DATABASE) -> str:
        done = subprocess.run([str(self.bin / "psql"), "-X", "-q", "-A", "-t", "-h", self.socket_dir, "-p",
                               str(self.port), "-U", "postgres", "-d", database, "-c", sql],
                              capture_output=True, text=True, timeout=30, check=True)
        return done.stdout.strip()
