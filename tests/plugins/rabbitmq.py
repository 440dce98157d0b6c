"""A real RabbitMQ broker for the plugin tests: Debian's rabbitmq-server (tools/rabbitmq-server.sh prints its start
script, installing the package when missing) as the current user, on free 127.0.0.1 ports (AMQP, Erlang
distribution, epmd), with its node name, database, logs, cookie and (empty) plugin list in a temp dir; nothing
from /etc/rabbitmq is read. ``stop()`` ends the broker and its epmd."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.plugins.servers import server_path
from tests.protocol.procs import ROOT, free_port

SCRIPT = ROOT / "tools" / "rabbitmq-server.sh"
_AMQP_HEADER = b"AMQP\x00\x00\x09\x01"


def rabbitmq_server_script() -> str:
    """The path tools/rabbitmq-server.sh prints; skips (fails under CI / SW_REQUIRE_RABBITMQ) when there is none."""
    return server_path(SCRIPT, "rabbitmq-server", "SW_REQUIRE_RABBITMQ")


class RabbitMQServer:
    """A broker on 127.0.0.1:<port> (user guest/guest); stop() ends it and its epmd."""

    def __init__(self, script: str, timeout: float = 120.0) -> None:
        self.dir = tempfile.mkdtemp(prefix="sw-rabbitmq-")
        self.log = os.path.join(self.dir, "server.log")
        self.popen: subprocess.Popen[bytes] | None = None
        self.epmd_port = 0
        for _ in range(3):  # a free port may be taken before the broker binds it
            self.port, dist_port, self.epmd_port = free_port(), free_port(), free_port()
            self.popen = self._start(script, dist_port)
            if self._answers(timeout):
                return
            self._end()
        text = Path(self.log).read_text(errors="replace")[-8000:]
        self.stop()
        raise AssertionError(f"rabbitmq-server did not accept AMQP connections:\n{text}")

    def _start(self, script: str, dist_port: int) -> subprocess.Popen[bytes]:
        base = os.path.join(self.dir, str(self.port))
        os.makedirs(base, exist_ok=True)
        plugins = os.path.join(base, "enabled_plugins")
        Path(plugins).write_text("[].\n")
        conf_env = os.path.join(base, "rabbitmq-env.conf")
        Path(conf_env).write_text("")
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "HOME": base,  # the Erlang cookie goes here
            "LANG": "C.UTF-8",
            "RABBITMQ_CONF_ENV_FILE": conf_env,
            "RABBITMQ_CONFIG_FILE": os.path.join(base, "rabbitmq"),  # absent: defaults
            "RABBITMQ_ADVANCED_CONFIG_FILE": os.path.join(base, "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": plugins,
            "RABBITMQ_NODENAME": f"rabbit-{self.port}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_MNESIA_BASE": os.path.join(base, "mnesia"),
            "RABBITMQ_LOG_BASE": os.path.join(base, "log"),
            "RABBITMQ_PID_FILE": os.path.join(base, "rabbit.pid"),
            "RABBITMQ_PLUGINS_EXPAND_DIR": os.path.join(base, "plugins-expand"),
            "RABBITMQ_FEATURE_FLAGS_FILE": os.path.join(base, "feature_flags"),
            # the distribution on loopback only; schedulers do not spin on a shared CPU
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1} +sbwt none "
                                                   "+sbwtdcpu none +sbwtdio none",
        }
        with open(self.log, "ab") as log:
            return subprocess.Popen([script], env=env, cwd=base, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)

    def _answers(self, timeout: float) -> bool:
        """True once the broker answers the AMQP 0-9-1 protocol header with Connection.Start."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.popen is not None and self.popen.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                    s.sendall(_AMQP_HEADER)
                    if s.recv(7)[:1] == b"\x01":  # a method frame on channel 0
                        return True
            except OSError:
                pass
            time.sleep(0.2)
        return False

    def _end(self) -> None:
        popen, self.popen = self.popen, None
        if popen is not None and popen.poll() is None:
            try:
                os.killpg(popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                popen.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(popen.pid, signal.SIGKILL)
                popen.wait(10)
        self._stop_epmd()

    def _stop_epmd(self) -> None:
        """Ask the epmd the broker started on our port to exit (it outlives the node)."""
        epmd = shutil.which("epmd") or next(iter(sorted(Path("/usr/lib/erlang").glob("erts-*/bin/epmd"))), None)
        if not epmd or not self.epmd_port:
            return
        env = {**os.environ, "ERL_EPMD_PORT": str(self.epmd_port), "ERL_EPMD_ADDRESS": "127.0.0.1"}
        for _ in range(20):  # refused while the stopping node is still registered
            try:
                done = subprocess.run([str(epmd), "-port", str(self.epmd_port), "-kill"], env=env,
                                      capture_output=True, text=True, timeout=10, check=False)
            except (OSError, subprocess.TimeoutExpired):
                return
            if "Killed" in done.stdout or "Cannot connect" in done.stdout + done.stderr \
                    or "not running" in done.stdout + done.stderr:
                return
            time.sleep(0.25)

    def stop(self) -> None:
        try:
            self._end()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
