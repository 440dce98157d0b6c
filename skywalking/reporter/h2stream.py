"""gRPC client calls over one HTTP/2 connection of our own (``h2``), for the sender thread.

grpcio hands every message of a client stream from Python to its C core on its own, and each write completes
through a thread or an event-loop wake-up: measured, that was most of the agent's CPU per reported segment. gRPC's
framing is a 5-byte prefix per message, and nothing stops one HTTP/2 DATA frame from carrying many of them: here a
batch of segments is joined into a few frames and written with one ``sendall`` per flow-control window.

One connection, used by one thread, one call at a time. ``call()`` raises ``CallError`` (a ``grpc.RpcError`` with
``code()`` and ``details()``, as grpcio's are): UNAVAILABLE for connection failures (DNS, refused, reset, TLS),
DEADLINE_EXCEEDED when the deadline passes, and the server's own ``grpc-status`` otherwise. A call that fails
closes the connection; the next ``open()`` makes a new one (the caller checks a new connection
before it sends segments over it, see grpc.py): ``open()`` says whether it made a new one, and ``call()`` never
makes one.
"""

from __future__ import annotations

import os
import select
import socket
import ssl
import struct
import time
from collections.abc import Iterable
from urllib.parse import unquote

import grpc
import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

_PREFIX = struct.Struct(">BI")  # gRPC message: compressed flag, length
_STATUS = {code.value[0]: code for code in grpc.StatusCode}
RECV = 65536
WINDOW = 1 << 24  # our receive window (responses are tiny; generous so the server never waits)


class CallError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def frame(messages: Iterable[bytes]) -> bytes:
    """gRPC's length-prefixed framing of ``messages``, joined."""
    pack = _PREFIX.pack
    return b"".join(part for m in messages for part in (pack(0, len(m)), m))


def _split_target(target: str) -> tuple[str, int]:
    host, _, port = target.rpartition(":")
    return host.strip("[]"), int(port)


class H2Channel:
    """A gRPC client connection to ``target`` (``host:port``), plaintext or TLS (ALPN ``h2``, system roots)."""

    def __init__(self, target: str, tls: bool) -> None:
        self.target = target
        self.tls = tls
        self._sock: socket.socket | ssl.SSLSocket | None = None
        self._conn: h2.connection.H2Connection | None = None

    # -- connection ---------------------------------------------------------------------------

    def _connect(self, deadline: float) -> None:
        host, port = _split_target(self.target)
        try:
            sock = socket.create_connection((host, port), timeout=max(0.01, deadline - time.monotonic()))
        except socket.gaierror as e:
            raise CallError(grpc.StatusCode.UNAVAILABLE, f"cannot resolve {self.target}: {e}") from None
        except TimeoutError:
            raise CallError(grpc.StatusCode.DEADLINE_EXCEEDED, f"connecting to {self.target} timed out") from None
        except OSError as e:
            raise CallError(grpc.StatusCode.UNAVAILABLE, f"cannot connect to {self.target}: {e}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls:
            # the roots gRPC itself is told to trust, if any; else the system's
            context = ssl.create_default_context(cafile=os.environ.get("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH") or None)
            context.set_alpn_protocols(["h2"])
            try:
                sock = context.wrap_socket(sock, server_hostname=host)
            except (ssl.SSLError, OSError) as e:
                sock.close()
                raise CallError(grpc.StatusCode.UNAVAILABLE, f"TLS handshake with {self.target} failed: {e}") \
                    from None
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        conn.initiate_connection()
        conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: WINDOW})
        conn.increment_flow_control_window(WINDOW - 65535)
        self._sock, self._conn = sock, conn
        self._flush(deadline)

    def close(self) -> None:
        sock, self._sock, self._conn = self._sock, None, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def _alive(self) -> bool:
        """Whether the open connection can take a call: the server may have closed it while it was idle."""
        sock, conn = self._sock, self._conn
        if sock is None or conn is None:
            return False
        try:
            while select.select([sock], [], [], 0)[0]:
                data = sock.recv(RECV)
                if not data:
                    return False
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.ConnectionTerminated):
                        return False
                pending = conn.data_to_send()
                if pending:
                    sock.sendall(pending)
        except (OSError, h2.exceptions.ProtocolError):
            return False
        return conn.state_machine.state is not h2.connection.ConnectionState.CLOSED

    def _flush(self, deadline: float) -> None:
        data = self._conn.data_to_send()  # type: ignore[union-attr]
        if data:
            self._sock.settimeout(max(0.01, deadline - time.monotonic()))  # type: ignore[union-attr]
            self._sock.sendall(data)  # type: ignore[union-attr]

    def _receive(self, deadline: float) -> list[h2.events.Event]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        self._sock.settimeout(remaining)  # type: ignore[union-attr]
        data = self._sock.recv(RECV)  # type: ignore[union-attr]
        if not data:
            raise ConnectionResetError("the server closed the connection")
        events = self._conn.receive_data(data)  # type: ignore[union-attr]
        self._flush(deadline)
        return events

    # -- calls ----------------------------------------------------------------------------------

    def open(self, timeout: float) -> bool:
        """Make sure a connection is open; True if a new one was (nothing has been said over it yet)."""
        if self._alive():
            return False
        self.close()
        try:
            self._connect(time.monotonic() + timeout)
        except (OSError, h2.exceptions.H2Error) as e:
            self.close()
            raise CallError(grpc.StatusCode.UNAVAILABLE, f"connection to {self.target} failed: {e}") from None
        return True

    def call(self, path: str, messages: list[bytes], timeout: float,
             metadata: tuple[tuple[str, str], ...] = ()) -> bytes:
        """One client-streaming (or unary) call over the open connection: ``messages`` out, the response message's
        bytes back. A connection that closed since ``open()`` is not replaced here (the caller checks new ones)."""
        deadline = time.monotonic() + timeout
        try:
            if not self._alive():
                raise CallError(grpc.StatusCode.UNAVAILABLE, f"the connection to {self.target} closed")
            answer = self._call(path, frame(messages), deadline, metadata)
        except CallError:
            self.close()
            raise
        except TimeoutError:
            self.close()
            raise CallError(grpc.StatusCode.DEADLINE_EXCEEDED, f"no answer from {self.target} within {timeout:.1f} s")\
                from None
        except (OSError, h2.exceptions.H2Error) as e:
            self.close()
            raise CallError(grpc.StatusCode.UNAVAILABLE, f"connection to {self.target} failed: {e}") from None
        return answer

    def _call(self, path: str, body: bytes, deadline: float, metadata: tuple[tuple[str, str], ...]) -> bytes:
        conn = self._conn
        assert conn is not None
        stream = conn.get_next_available_stream_id()
        millis = max(1, int((deadline - time.monotonic()) * 1000))
        headers = [(b":method", b"POST"), (b":scheme", b"https" if self.tls else b"http"), (b":path", path.encode()),
                   (b":authority", self.target.encode()), (b"content-type", b"application/grpc"), (b"te", b"trailers"),
                   (b"grpc-timeout", f"{millis}m".encode()),
                   *((k.encode(), v.encode()) for k, v in metadata)]
        conn.send_headers(stream, headers)
        answer = _Answer()
        sent = 0
        while sent < len(body):
            window = min(conn.local_flow_control_window(stream), len(body) - sent)
            if window <= 0:
                self._flush(deadline)
                self._consume(stream, self._receive(deadline), answer)  # WINDOW_UPDATE; the answer may come early
                if answer.ended:
                    break
                continue
            size = conn.max_outbound_frame_size
            end = sent + window
            while sent < end:
                chunk = min(size, end - sent)
                conn.send_data(stream, body[sent:sent + chunk])
                sent += chunk
            self._flush(deadline)
        if not answer.ended:
            conn.end_stream(stream)
            self._flush(deadline)
        while not answer.ended:
            self._consume(stream, self._receive(deadline), answer)
        return answer.result(self.target)

    def _consume(self, stream: int, events: list[h2.events.Event], answer: _Answer) -> None:
        for event in events:
            if isinstance(event, h2.events.ConnectionTerminated):
                raise CallError(grpc.StatusCode.UNAVAILABLE, f"the server closed the connection (GOAWAY, error "
                                f"{event.error_code})")
            if getattr(event, "stream_id", stream) != stream:
                continue
            if isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
                answer.headers.update(event.headers)
            elif isinstance(event, h2.events.DataReceived):
                answer.data += event.data
                self._conn.acknowledge_received_data(event.flow_controlled_length, stream)  # type: ignore[union-attr]
            elif isinstance(event, h2.events.StreamReset):
                if answer.ended:  # a server that answered early may then reset the upload; keep its status
                    continue
                raise CallError(grpc.StatusCode.UNAVAILABLE, f"the server reset the stream (error {event.error_code})")
            elif isinstance(event, h2.events.StreamEnded):
                answer.ended = True


class _Answer:
    """What came back on a call's stream so far."""

    __slots__ = ("data", "ended", "headers")

    def __init__(self) -> None:
        self.headers: dict[bytes, bytes] = {}
        self.data = b""
        self.ended = False

    def result(self, target: str) -> bytes:
        """The response message; raises ``CallError`` for an HTTP or gRPC error status."""
        status = self.headers.get(b":status", b"200")
        if status != b"200":
            raise CallError(grpc.StatusCode.UNAVAILABLE, f"HTTP status {status.decode()} from {target}")
        code = int(self.headers.get(b"grpc-status", b"2"))
        if code:
            message = unquote(self.headers.get(b"grpc-message", b"").decode("utf-8", "replace"))
            raise CallError(_STATUS.get(code, grpc.StatusCode.UNKNOWN), message or "no details")
        return self.data[5:] if len(self.data) >= 5 else b""
