"""A throw-away MariaDB server on 127.0.0.1, shared by tests/plugins/test_mysql.py and bench/run.py (the DB
benchmark).

``MariaDB.start(init_sql)`` finds the server binary through tools/mariadb-server.sh (which installs Debian's
``mariadb-server`` package when there is none), initialises a data directory in a temp dir, starts ``mariadbd`` on a
free port with ``init_sql`` run at start-up (``account_sql`` makes a user and its databases), and waits until it
answers. ``pin(cpus)`` keeps it on some CPUs (the benchmark's choice); ``stop()`` ends the server and removes the
temp dir. ``Unavailable``: no server binary could be had;
``RuntimeError``: one was found but did not start. Standard library only."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

SCRIPT = Path(__file__).resolve().parent / "mariadb-server.sh"


class Unavailable(Exception):
    """No MariaDB server binary (tools/mariadb-server.sh failed); the message says why."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


class MariaDB:
    """``mariadbd`` on 127.0.0.1:<free port> with a fresh data directory; stop() ends it and removes the data."""

    def __init__(self, server: str, install_db: str, init_sql: str = "") -> None:
        self.dir = tempfile.mkdtemp(prefix="sw-mariadb-")
        data, self.socket = os.path.join(self.dir, "data"), os.path.join(self.dir, "mysqld.sock")
        self.log, init = os.path.join(self.dir, "mariadb.log"), os.path.join(self.dir, "init.sql")
        self.popen: subprocess.Popen[bytes] | None = None
        self.port = 0
        as_root = ["--user=root"] if os.geteuid() == 0 else []
        try:
            done = subprocess.run([install_db, "--no-defaults", f"--datadir={data}", "--skip-test-db",
                                   "--auth-root-authentication-method=normal", "--skip-name-resolve", *as_root],
                                  capture_output=True, text=True, timeout=300, check=False)
        except subprocess.TimeoutExpired as e:
            self.stop()
            raise RuntimeError(f"{install_db} timed out") from e
        if done.returncode != 0:
            self.stop()
            raise RuntimeError(f"{install_db} failed:\n{done.stdout}\n{done.stderr}")
        Path(init).write_text(init_sql)
        for _ in range(3):  # the free port may be taken before the server binds it
            self.port = free_port()
            with open(self.log, "ab") as log:
                self.popen = subprocess.Popen(
                    [server, "--no-defaults", f"--datadir={data}", f"--socket={self.socket}", f"--port={self.port}",
                     "--bind-address=127.0.0.1", f"--pid-file={self.dir}/mariadb.pid", f"--init-file={init}",
                     "--skip-name-resolve", "--skip-log-bin", "--innodb-buffer-pool-size=32M",
                     "--max-connections=50", *as_root],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            if self._answers():
                return
            self._end()  # the init file may have run: it can run again
        text = Path(self.log).read_text(errors="replace")
        self.stop()
        raise RuntimeError(f"mariadbd did not start:\n{text}")

    @classmethod
    def start(cls, init_sql: str = "") -> MariaDB:
        """A running server (``Unavailable`` when there is no binary, ``RuntimeError`` when it does not start)."""
        return cls(*binaries(), init_sql)

    def pin(self, cpus: set[int]) -> None:
        """Keep the server's threads on ``cpus`` (threads it starts later inherit that). Linux only."""
        if self.popen is None:
            raise RuntimeError("mariadbd is not running")
        for tid in os.listdir(f"/proc/{self.popen.pid}/task"):
            try:
                os.sched_setaffinity(int(tid), cpus)
            except ProcessLookupError:  # a thread that has ended
                pass

    def _answers(self, timeout: float = 60.0) -> bool:
        """Ready: the log says so (the init file ran before it) and a connection gets the server's greeting."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.popen is not None and self.popen.poll() is None:
            try:
                if "ready for connections" in Path(self.log).read_text(errors="replace"):
                    with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                        if s.recv(5)[4:5] == b"\x0a":  # protocol version 10
                            return True
            except OSError:
                pass
            time.sleep(0.1)
        return False

    def _end(self) -> None:
        popen, self.popen = self.popen, None
        if popen is None or popen.poll() is not None:
            return
        popen.send_signal(signal.SIGTERM)
        try:
            popen.wait(30)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(10)

    def stop(self) -> None:
        try:
            self._end()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> MariaDB:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
