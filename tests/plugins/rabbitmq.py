"""A real RabbitMQ broker for the plugin tests: Debian's rabbitmq-server (tools/rabbitmq-server.sh prints its start
script, installing the package when missing) as the current user, on free 127.0.0.1 ports (AMQP, Erlang
distribution, epmd), with its node name, database, logs, cookie and (empty) plugin list in a temp dir; nothing
from /etc/rabbitmq is read. ``stop()`` ends the broker and its epmd."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.plugins.servers import server_path
from tests.protocol.procs import ROOT
from tools.server_process import ServerProcess, free_port

SCRIPT = ROOT / "tools" / "rabbitmq-server.sh"
_AMQP_HEADER = b"AMQP\x00\x00\x09\x01"


def rabbitmq_server_script() -> str:
    """The path tools/rabbitmq-server.sh prints; skips (fails under CI / SW_REQUIRE_RABBITMQ) when there is none."""
    return server_path(SCRIPT, "rabbitmq-server", "SW_REQUIRE_RABBITMQ")


class RabbitMQServer(ServerProcess):
    """A broker on 127.0.0.1:<port> (user guest/guest); stop() ends it and its epmd."""

    name = "rabbitmq"
    not_ready = "rabbitmq-server did not accept AMQP connections"
    probe_interval = 0.2

    def __init__(self, script: str, timeout: float = 120.0) -> None:
        self.script, self.ready_timeout = script, timeout
        self.epmd_port = 0
        self._env: dict[str, str] = {}
        super().__init__()

    def command(self) -> list[str]:
        """A node of its own for this attempt's port: its files under ``<dir>/<port>``, fresh distribution and epmd
        ports."""
        base = os.path.join(self.dir, str(self.port))
        dist_port, self.epmd_port = free_port(), free_port()
        os.makedirs(base, exist_ok=True)
        plugins = os.path.join(base, "enabled_plugins")
        Path(plugins).write_text("[].\n")
        conf_env = os.path.join(base, "rabbitmq-env.conf")
        Path(conf_env).write_text("")
        self._env = {
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
        return [self.script]

    def popen_options(self) -> dict[str, Any]:
        return {"env": self._env, "cwd": self._env["HOME"]}

    def ready(self) -> bool:
        """The broker answers the AMQP 0-9-1 protocol header with Connection.Start."""
        return self.exchange(_AMQP_HEADER, 7)[:1] == b"\x01"  # a method frame on channel 0

    def end_process(self) -> None:
        super().end_process()
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
