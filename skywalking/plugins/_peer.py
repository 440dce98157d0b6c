"""The one way plugins write a network peer: ``host:port``, an IPv6 address in brackets."""

from __future__ import annotations

from typing import Any


def host_port(host: str, port: int | str | None = None) -> str:
    """``host:port`` (``[::1]:8080`` for an IPv6 address); the host alone when there is no port."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}" if port not in (None, "") else host


def address_peer(address: Any) -> str | None:
    """The peer of a socket address as servers give it (``(host, port, ...)``, a tuple or a list); None for
    anything else (a Unix socket path, no address)."""
    if isinstance(address, (tuple, list)) and len(address) >= 2:
        return host_port(str(address[0]), address[1])
    return None
