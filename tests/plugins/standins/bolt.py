"""A protocol stand-in for a Neo4j server: the Bolt protocol on 127.0.0.1:<free port> (``bolt://``, direct, no
routing), written from the Bolt and PackStream specifications.

* Handshake: the ``60 60 B0 17`` preamble and four version proposals (``00 <range> <minor> <major>``); the answer is
  the highest of Bolt 5.4 .. 5.0 and 4.4 that the first fitting proposal covers (a manifest proposal, ``..01 FF``,
  is passed over), or ``00 00 00 00`` and the connection is closed.
* Messages: chunked (2-byte sizes, a ``00 00`` end marker), each a PackStream structure. Requests ``HELLO``,
  ``LOGON`` (5.1+), ``LOGOFF``, ``TELEMETRY``, ``BEGIN``, ``RUN``, ``PULL``, ``DISCARD`` (``n`` and ``qid``, with
  ``has_more`` paging), ``COMMIT``, ``ROLLBACK``, ``RESET``, ``GOODBYE``; answers ``SUCCESS``, ``RECORD``,
  ``FAILURE`` and ``IGNORED``. After a ``FAILURE`` every request is ``IGNORED`` until ``RESET``, as on a server.
* PackStream v1: null, booleans, integers (tiny to 64-bit), floats, strings, bytes, lists, maps, structures.
* Authentication: basic ``neo4j`` / ``password``; anything else fails with ``Neo.ClientError.Security.Unauthorized``.

The queries it understands (anything else fails with ``Neo.ClientError.Statement.SyntaxError``):

* ``RETURN <item> AS <name>[, ...]``, an item being ``$param``, an integer or a single-quoted string;
* ``UNWIND range(<a>, <b>) AS <v> RETURN <v>``, ``<a>``/``<b>`` integers or ``$params``;
* ``CREATE ...``: no records, ``stats`` ``{"nodes-created": 1}``;
* ``CALL apoc.util.sleep(<ms>)``: answers the ``RUN`` after that many milliseconds (for span timing tests).

Every ``RUN`` is recorded in ``queries`` as ``(database, query, parameters)``."""

from __future__ import annotations

import re
import socketserver
import struct
import threading
import time
from typing import Any

from tests.plugins.standins.serving import SocketServerStandIn, ThreadingServer, serve_until_interrupted

# -- PackStream v1 ------------------------------------------------------------------------------------------------


class Structure:
    """A PackStream structure: a tag byte and its fields."""

    def __init__(self, tag: int, *fields: Any) -> None:
        self.tag = tag
        self.fields = list(fields)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Structure) and (self.tag, self.fields) == (other.tag, other.fields)

    def __repr__(self) -> str:
        return f"Structure(0x{self.tag:02X}, {self.fields!r})"


def _sized(out: bytearray, size: int, tiny: int, small: int) -> None:
    """A size header: ``tiny + size`` below 16 when ``tiny`` is given, else 8/16/32-bit after ``small`` .. +2."""
    if tiny >= 0 and size < 16:
        out.append(tiny + size)
    elif size < 0x100:
        out += bytes((small, size))
    elif size < 0x10000:
        out.append(small + 1)
        out += struct.pack(">H", size)
    else:
        out.append(small + 2)
        out += struct.pack(">I", size)


def pack(value: Any, out: bytearray | None = None) -> bytearray:
    out = bytearray() if out is None else out
    if value is None:
        out.append(0xC0)
    elif value is True:
        out.append(0xC3)
    elif value is False:
        out.append(0xC2)
    elif isinstance(value, int):
        if -16 <= value < 128:
            out += struct.pack(">b", value)
        elif -0x80 <= value < 0x80:
            out += b"\xc8" + struct.pack(">b", value)
        elif -0x8000 <= value < 0x8000:
            out += b"\xc9" + struct.pack(">h", value)
        elif -0x80000000 <= value < 0x80000000:
            out += b"\xca" + struct.pack(">i", value)
        else:
            out += b"\xcb" + struct.pack(">q", value)
    elif isinstance(value, float):
        out += b"\xc1" + struct.pack(">d", value)
    elif isinstance(value, str):
        data = value.encode("utf-8")
        _sized(out, len(data), 0x80, 0xD0)
        out += data
    elif isinstance(value, (bytes, bytearray)):
        _sized(out, len(value), -1, 0xCC)
        out += value
    elif isinstance(value, (list, tuple)):
        _sized(out, len(value), 0x90, 0xD4)
        for item in value:
            pack(item, out)
    elif isinstance(value, dict):
        _sized(out, len(value), 0xA0, 0xD8)
        for key, item in value.items():
            pack(str(key), out)
            pack(item, out)
    elif isinstance(value, Structure):
        out += bytes((0xB0 + len(value.fields), value.tag))
        for item in value.fields:
            pack(item, out)
    else:
        raise TypeError(f"cannot pack {type(value).__name__}")
    return out


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def take(self, n: int) -> bytes:
        chunk = self.data[self.at:self.at + n]
        if len(chunk) != n:
            raise ValueError("truncated PackStream value")
        self.at += n
        return chunk

    def number(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def size(self, marker: int, small: int) -> int:
        return self.number((">B", ">H", ">I")[marker - small])

    def value(self) -> Any:
        marker = self.take(1)[0]
        high = marker & 0xF0
        if marker < 0x80:
            return marker
        if marker >= 0xF0:
            return marker - 0x100
        if high == 0x80:
            return self.take(marker & 0x0F).decode("utf-8")
        if high == 0x90:
            return [self.value() for _ in range(marker & 0x0F)]
        if high == 0xA0:
            return self.mapping(marker & 0x0F)
        if high == 0xB0:
            tag = self.take(1)[0]
            return Structure(tag, *(self.value() for _ in range(marker & 0x0F)))
        if marker == 0xC0:
            return None
        if marker in (0xC2, 0xC3):
            return marker == 0xC3
        if marker == 0xC1:
            return self.number(">d")
        if 0xC8 <= marker <= 0xCB:
            return self.number((">b", ">h", ">i", ">q")[marker - 0xC8])
        if 0xCC <= marker <= 0xCE:
            return self.take(self.size(marker, 0xCC))
        if 0xD0 <= marker <= 0xD2:
            return self.take(self.size(marker, 0xD0)).decode("utf-8")
        if 0xD4 <= marker <= 0xD6:
            return [self.value() for _ in range(self.size(marker, 0xD4))]
        if 0xD8 <= marker <= 0xDA:
            return self.mapping(self.size(marker, 0xD8))
        raise ValueError(f"unknown PackStream marker 0x{marker:02X}")

    def mapping(self, n: int) -> dict[str, Any]:
        return {self.value(): self.value() for _ in range(n)}


def unpack(data: bytes) -> Any:
    reader = _Reader(data)
    value = reader.value()
    if reader.at != len(data):
        raise ValueError("trailing bytes after a PackStream value")
    return value


# -- messages -----------------------------------------------------------------------------------------------------

HELLO, GOODBYE, RESET, RUN, BEGIN, COMMIT, ROLLBACK = 0x01, 0x02, 0x0F, 0x10, 0x11, 0x12, 0x13
DISCARD, PULL, TELEMETRY, LOGON, LOGOFF = 0x2F, 0x3F, 0x54, 0x6A, 0x6B
SUCCESS, RECORD, IGNORED, FAILURE = 0x70, 0x71, 0x7E, 0x7F

VERSIONS = ((5, 4), (5, 3), (5, 2), (5, 1), (5, 0), (4, 4))  # highest first
USER, PASSWORD = "neo4j", "password"
DEFAULT_DATABASE = "neo4j"


class QueryError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def choose_version(proposals: bytes) -> tuple[int, int] | None:
    """The version to answer to the 16 proposal bytes, None when no proposal fits."""
    for i in range(0, 16, 4):
        _, span, minor, major = proposals[i:i + 4]
        for version in VERSIONS:
            if version[0] == major and minor - span <= version[1] <= minor:
                return version
    return None


_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_ITEM = re.compile(rf"\s*(\$({_NAME})|(-?\d+)|'([^']*)')\s+AS\s+({_NAME})\s*$", re.I)
_RETURN = re.compile(r"\s*RETURN\s+(.+?)\s*$", re.I | re.S)
_UNWIND = re.compile(rf"\s*UNWIND\s+range\(\s*(\$?\w+)\s*,\s*(\$?\w+)\s*\)\s+AS\s+({_NAME})\s+RETURN\s+({_NAME})\s*$",
                     re.I)
_SLEEP = re.compile(r"\s*CALL\s+apoc\.util\.sleep\(\s*(\$?\w+)\s*\)\s*$", re.I)
_CREATE = re.compile(r"\s*CREATE\s+\(", re.I)


def _operand(text: str, params: dict[str, Any]) -> int:
    if text.startswith("$"):
        if text[1:] not in params:
            raise QueryError("Neo.ClientError.Statement.ParameterMissing", f"Expected parameter(s): {text[1:]}")
        value = params[text[1:]]
    else:
        value = int(text)
    if not isinstance(value, int):
        raise QueryError("Neo.ClientError.Statement.TypeError", f"expected an integer, got {value!r}")
    return value


def evaluate(query: str, params: dict[str, Any]) -> tuple[list[str], list[list[Any]], dict[str, Any], float]:
    """(fields, records, stats, delay in seconds) of ``query``; QueryError for what it does not understand."""
    m = _UNWIND.match(query)
    if m and m.group(3) == m.group(4):
        low, high = _operand(m.group(1), params), _operand(m.group(2), params)
        return [m.group(4)], [[i] for i in range(low, high + 1)], {}, 0.0
    m = _SLEEP.match(query)
    if m:
        return [], [], {}, _operand(m.group(1), params) / 1000
    if _CREATE.match(query):
        return [], [], {"nodes-created": 1}, 0.0
    m = _RETURN.match(query)
    if m:
        fields, values = [], []
        for part in m.group(1).split(","):
            item = _ITEM.match(part)
            if item is None:
                break
            param, number, string, name = item.group(2), item.group(3), item.group(4), item.group(5)
            if param is not None:
                if param not in params:
                    raise QueryError("Neo.ClientError.Statement.ParameterMissing", f"Expected parameter(s): {param}")
                values.append(params[param])
            else:
                values.append(int(number) if number is not None else string)
            fields.append(name)
        else:
            return fields, [values], {}, 0.0
    raise QueryError("Neo.ClientError.Statement.SyntaxError", f"Invalid input: {query[:60]!r} (line 1, column 1)")


class _Session(socketserver.BaseRequestHandler):
    server: BoltStandIn

    def setup(self) -> None:
        self.version: tuple[int, int] = (0, 0)
        self.failed = False
        self.authenticated = False
        self.in_tx = False
        self.database = DEFAULT_DATABASE
        self.results: dict[int, list[list[Any]]] = {}
        self.summaries: dict[int, dict[str, Any]] = {}
        self.next_qid = 0
        self.last_qid = -1

    # -- wire ---------------------------------------------------------------------------------------------------

    def _read(self, n: int) -> bytes:
        data = bytearray()
        while len(data) < n:
            chunk = self.request.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return bytes(data)

    def _message(self) -> Structure:
        data = bytearray()
        while True:
            size = struct.unpack(">H", self._read(2))[0]
            if size == 0:
                if data:  # a 00 00 before any data is a keep-alive NOOP
                    break
                continue
            data += self._read(size)
        message = unpack(bytes(data))
        if not isinstance(message, Structure):
            raise ValueError("a message must be a structure")
        return message

    def _send(self, tag: int, *fields: Any) -> None:
        data = pack(Structure(tag, *fields))
        out = bytearray()
        for i in range(0, len(data), 0xFFFF):
            piece = data[i:i + 0xFFFF]
            out += struct.pack(">H", len(piece)) + piece
        out += b"\x00\x00"
        self.request.sendall(out)

    def _fail(self, code: str, message: str) -> None:
        self.failed = True
        self.in_tx = False
        self.results.clear()
        self._send(FAILURE, {"code": code, "message": message})

    # -- session ------------------------------------------------------------------------------------------------

    def handle(self) -> None:
        try:
            if self._read(4) != b"\x60\x60\xb0\x17":
                return
            version = choose_version(self._read(16))
            if version is None:
                self.request.sendall(b"\x00\x00\x00\x00")
                return
            self.version = version
            self.request.sendall(bytes((0, 0, version[1], version[0])))
            while self._serve(self._message()):
                pass
        except (EOFError, ConnectionError, OSError):
            pass

    def _serve(self, message: Structure) -> bool:
        """Answer one request; False to close the connection."""
        tag, fields = message.tag, message.fields
        if tag == GOODBYE:
            return False
        if tag == RESET:
            self.failed, self.in_tx = False, False
            self.results.clear()
            self._send(SUCCESS, {})
            return True
        if self.failed:
            self._send(IGNORED)
            return True
        if tag == HELLO:
            extra = fields[0] if fields else {}
            self._send_hello(extra)
        elif tag == LOGON:
            self._logon(fields[0] if fields else {})
        elif tag == LOGOFF:
            self.authenticated = False
            self._send(SUCCESS, {})
        elif not self.authenticated:
            self._fail("Neo.ClientError.Security.Unauthorized", "not authenticated")
        elif tag == TELEMETRY:
            self._send(SUCCESS, {})
        elif tag == BEGIN:
            self.in_tx = True
            self.database = (fields[0] if fields else {}).get("db") or DEFAULT_DATABASE
            self._send(SUCCESS, {"db": self.database} if self.version >= (5, 0) else {})
        elif tag == RUN:
            self._run(fields[0], fields[1] or {}, fields[2] if len(fields) > 2 else {})
        elif tag in (PULL, DISCARD):
            self._stream(tag, fields[0] if fields else {})
        elif tag in (COMMIT, ROLLBACK):
            if not self.in_tx:
                self._fail("Neo.ClientError.Request.Invalid", "no transaction open")
            else:
                self.in_tx = False
                self.results.clear()
                self._send(SUCCESS, {"bookmark": f"FB:sw-{time.time_ns()}"} if tag == COMMIT else {})
        else:
            self._fail("Neo.ClientError.Request.Invalid", f"unknown message 0x{tag:02X}")
        return True

    def _send_hello(self, extra: dict[str, Any]) -> None:
        if self.version < (5, 1):  # credentials come with HELLO
            if not self._credentials_ok(extra):
                self._fail("Neo.ClientError.Security.Unauthorized", "The client is unauthorized due to "
                           "authentication failure.")
                return
            self.authenticated = True
        self._send(SUCCESS, {"server": "Neo4j/5.26.0", "connection_id": f"bolt-{threading.get_ident()}",
                             "hints": {}})

    def _logon(self, auth: dict[str, Any]) -> None:
        if not self._credentials_ok(auth):
            self._fail("Neo.ClientError.Security.Unauthorized", "The client is unauthorized due to authentication "
                       "failure.")
            return
        self.authenticated = True
        self._send(SUCCESS, {})

    def _credentials_ok(self, auth: dict[str, Any]) -> bool:
        return auth.get("scheme") == "basic" and (auth.get("principal"), auth.get("credentials")) == (
            self.server.user, self.server.password)

    def _run(self, query: str, params: dict[str, Any], extra: dict[str, Any]) -> None:
        database = self.database if self.in_tx else (extra.get("db") or DEFAULT_DATABASE)
        self.server.queries.append((database, query, params))
        try:
            fields, records, stats, delay = evaluate(query, params)
        except QueryError as e:
            self._fail(e.code, str(e))
            return
        if delay:
            time.sleep(delay)
        qid = self.next_qid
        self.next_qid += 1
        self.last_qid = qid
        self.results[qid] = records
        summary: dict[str, Any] = {"type": "w" if stats else "r", "t_last": 0, "db": database}
        if stats:
            summary["stats"] = stats
        if not self.in_tx:
            summary["bookmark"] = f"FB:sw-{time.time_ns()}"
        self.summaries[qid] = summary
        answer: dict[str, Any] = {"fields": fields, "t_first": 0}
        if self.in_tx:
            answer["qid"] = qid
        self._send(SUCCESS, answer)

    def _stream(self, tag: int, extra: dict[str, Any]) -> None:
        qid = extra.get("qid", -1)
        qid = self.last_qid if qid == -1 else qid
        if qid not in self.results:
            self._fail("Neo.ClientError.Request.Invalid", "no result to stream")
            return
        n = extra.get("n", -1)
        records = self.results[qid]
        taken = records if n == -1 else records[:n]
        rest = [] if n == -1 else records[n:]
        if tag == PULL:
            for record in taken:
                self._send(RECORD, record)
        if rest and tag == PULL:
            self.results[qid] = rest
            self._send(SUCCESS, {"has_more": True})
            return
        del self.results[qid]
        self._send(SUCCESS, self.summaries.pop(qid))


class _Server(ThreadingServer):
    def __init__(self, port: int, user: str, password: str) -> None:
        super().__init__(("127.0.0.1", port), _Session)
        self.user, self.password = user, password
        self.queries: list[tuple[str, str, dict[str, Any]]] = []


class BoltStandIn(SocketServerStandIn):
    """The Bolt server on 127.0.0.1:<port> (a free one by default), a thread per connection; stop() ends it."""

    thread_name = "bolt-standin"

    def __init__(self, port: int = 0, user: str = USER, password: str = PASSWORD) -> None:
        self._server = server = _Server(port, user, password)
        self.port: int = server.server_address[1]
        self.queries = server.queries
        self.start()


if __name__ == "__main__":  # serve until interrupted, printing ``ready port=<port>``
    serve_until_interrupted(BoltStandIn())
