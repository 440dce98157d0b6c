"""A real redis-server for the Redis plugin tests (tools/redis-server.sh prints its binary, installing Debian's
package when there is none): 127.0.0.1:<free port> and a unix socket in a temp dir, nothing saved."""

from __future__ import annotations

import os

from tests.plugins.servers import server_path
from tests.protocol.procs import ROOT
from tools.server_process import ServerProcess

SCRIPT = ROOT / "tools" / "redis-server.sh"


def redis_server_binary() -> str:
    """The path tools/redis-server.sh prints; skips (fails under CI / SW_REQUIRE_REDIS) when there is none."""
    return server_path(SCRIPT, "redis-server", "SW_REQUIRE_REDIS")


class RedisServer(ServerProcess):
    """``redis-server`` on 127.0.0.1:<free port> and the unix socket ``socket``; stop() ends it."""

    name = "redis"
    not_ready = "redis-server did not answer PING"
    ready_timeout = 10.0
    probe_interval = 0.05
    stop_timeout = 10.0

    def __init__(self, binary: str) -> None:
        self.binary = binary
        super().__init__()

    @property
    def socket(self) -> str:
        return os.path.join(self.dir, "redis.sock")

    def command(self) -> list[str]:
        return [self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--unixsocket", self.socket,
                "--unixsocketperm", "700", "--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", self.dir]

    def ready(self) -> bool:
        return self.exchange(b"*1\r\n$4\r\nPING\r\n", 16, timeout=1).startswith(b"+PONG")
