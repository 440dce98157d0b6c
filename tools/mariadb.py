"""A throw-away MariaDB server on 127.0.0.1, shared by tests/plugins/test_mysql.py and bench/run.py (the DB
benchmark).

``MariaDB.start(init_sql)`` finds the server binary through tools/mariadb-server.sh (which installs Debian's
``mariadb-server`` package when there is none), initialises a data directory in a temp dir, starts ``mariadbd`` on a
free port with ``init_sql`` run at start-up (``account_sql`` makes a user and its databases), and waits until it
answers. ``pin(cpus)`` keeps it on some CPUs (the benchmark's choice); ``stop()`` ends the server and removes the
temp dir (tools/server_process.py does the process part). ``Unavailable``: no server binary could be had;
``RuntimeError``: one was found but did not start. Standard library only."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tools.server_process import ServerProcess

SCRIPT = Path(__file__).resolve().parent / "mariadb-server.sh"


class Unavailable(Exception):
    """No MariaDB server binary (tools/mariadb-server.sh failed); the message says why."""


def binaries() -> tuple[str, str]:
    """(server, install-db): the server path tools/mariadb-server.sh prints and the data directory initialiser."""
    try:
        done = subprocess.run([str(SCRIPT)], capture_output=True, text=True, timeout=900, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise Unavailable(f"{SCRIPT.name} did not run: {e}") from e
    lines = done.stdout.split()
    if done.returncode != 0 or not lines:
        raise Unavailable((done.stderr.strip().splitlines() or [f"{SCRIPT.name} exited with {done.returncode}"])[-1])
    server = lines[-1]
    for name in ("mariadb-install-db", "mysql_install_db"):
        found = shutil.which(name) or shutil.which(name, path=str(Path(server).parent.parent / "bin"))
        if found:
            return server, found
    raise Unavailable("mariadb-install-db is missing")


def account_sql(user: str, password: str, *databases: str) -> str:
    """SQL making ``databases`` and ``user`` (from 127.0.0.1 and localhost) with all privileges on them."""
    hosts = f"'{user}'@'127.0.0.1', '{user}'@'localhost'"
    lines = [f"CREATE DATABASE IF NOT EXISTS {db};" for db in databases]
    lines += [f"CREATE USER IF NOT EXISTS '{user}'@'{host}' IDENTIFIED BY '{password}';"
              for host in ("127.0.0.1", "localhost")]
    lines += [f"GRANT ALL PRIVILEGES ON {db}.* TO {hosts};" for db in databases]
    return "\n".join(lines) + "\n"


class MariaDB(ServerProcess):
    """``mariadbd`` on 127.0.0.1:<free port> with a fresh data directory; stop() ends it and removes the data."""

    name = "mariadb"
    not_ready = "mariadbd did not start"
    ready_timeout = 60.0

    def __init__(self, server: str, install_db: str, init_sql: str = "") -> None:
        self.server, self.install_db, self.init_sql = server, install_db, init_sql
        self.as_root = ["--user=root"] if os.geteuid() == 0 else []
        super().__init__()

    @classmethod
    def start(cls, init_sql: str = "") -> MariaDB:
        """A running server (``Unavailable`` when there is no binary, ``RuntimeError`` when it does not start)."""
        return cls(*binaries(), init_sql)

    @property
    def data(self) -> str:
        return os.path.join(self.dir, "data")

    @property
    def socket(self) -> str:
        return os.path.join(self.dir, "mysqld.sock")

    @property
    def init_file(self) -> str:
        return os.path.join(self.dir, "init.sql")

    def setup(self) -> None:
        try:
            done = subprocess.run([self.install_db, "--no-defaults", f"--datadir={self.data}", "--skip-test-db",
                                   "--auth-root-authentication-method=normal", "--skip-name-resolve", *self.as_root],
                                  capture_output=True, text=True, timeout=300, check=False)
        except subprocess.TimeoutExpired as e:
            raise RuntimeError(f"{self.install_db} timed out") from e
        if done.returncode != 0:
            raise RuntimeError(f"{self.install_db} failed:\n{done.stdout}\n{done.stderr}")
        Path(self.init_file).write_text(self.init_sql)  # every attempt runs it: its statements can run twice

    def command(self) -> list[str]:
        return [self.server, "--no-defaults", f"--datadir={self.data}", f"--socket={self.socket}",
                f"--port={self.port}", "--bind-address=127.0.0.1", f"--pid-file={self.dir}/mariadb.pid",
                f"--init-file={self.init_file}", "--skip-name-resolve", "--skip-log-bin",
                "--innodb-buffer-pool-size=32M", "--max-connections=50", *self.as_root]

    def ready(self) -> bool:
        """The log says so (the init file ran before it) and a connection gets the server's greeting."""
        return "ready for connections" in Path(self.log).read_text(errors="replace") \
            and self.exchange(b"", 5)[4:5] == b"\x0a"  # protocol version 10

    def pin(self, cpus: set[int]) -> None:
        """Keep the server's threads on ``cpus`` (threads it starts later inherit that). Linux only."""
        if self.popen is None:
            raise RuntimeError("mariadbd is not running")
        for tid in os.listdir(f"/proc/{self.popen.pid}/task"):
            try:
                os.sched_setaffinity(int(tid), cpus)
            except ProcessLookupError:  # a thread that has ended
                pass
