"""A Pulsar broker stand-in on 127.0.0.1 speaking Pulsar's binary protocol, for the sw_pulsar tests.

Pulsar does not install here (no Debian, PyPI or npm package ships a broker). ``PulsarStandin`` answers the commands
that pulsar-client (the C++ library under the Python package) sends to produce to and consume from non-partitioned
topics: CONNECT, PING, PARTITIONED_METADATA (0 partitions), LOOKUP (connect to this server), PRODUCER, SEND (the
payload's CRC32C checked), SUBSCRIBE, FLOW, ACK (accepted, nothing is redelivered), CLOSE_PRODUCER,
CLOSE_CONSUMER, UNSUBSCRIBE, GET_LAST_MESSAGE_ID, REDELIVER_UNACKNOWLEDGED_MESSAGES (ignored). Messages are kept in
memory per topic and delivered to each subscription (from its cursor, within the consumer's FLOW permits) with the
producer's metadata unchanged, as a broker does. A topic in ``silent`` is never acknowledged (the client's send
times out). Anything else is recorded in ``unknown`` and left unanswered.

Framing (Pulsar's): ``[total size][command size][BaseCommand]``, sizes as 4-byte big-endian; a command with a payload
(SEND, MESSAGE) goes on with ``[0x0e01][CRC32C][metadata size][MessageMetadata][payload]``, the checksum covering
everything after it. The protobuf messages are encoded and decoded here by hand with the field numbers of Pulsar's
PulsarApi.proto (BaseCommand's field for each command has the number of its type).
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Union

from tests.plugins.standins.serving import ThreadServer, hang_up, serve_connections

# -- protobuf, by hand ----------------------------------------------------------------------------------------------

Value = Union[int, str, bytes, "list[tuple[int, Any]]"]


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # a negative int64 is ten bytes on the wire
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def encode(fields: Iterable[tuple[int, Value]]) -> bytes:
    """A message from ``(field number, value)`` pairs: int → varint; str, bytes, nested pairs → length-delimited."""
    out = bytearray()
    for number, value in fields:
        if isinstance(value, int):
            out += _varint(number << 3) + _varint(value)
            continue
        data = value.encode() if isinstance(value, str) else value if isinstance(value, bytes) else encode(value)
        out += _varint(number << 3 | 2) + _varint(len(data)) + data
    return bytes(out)


class Message(dict[int, list[Any]]):
    """A decoded message: field number → its values (ints, or bytes for length-delimited fields)."""

    @classmethod
    def parse(cls, data: bytes) -> Message:
        msg, i = cls(), 0
        while i < len(data):
            key, i = _read_varint(data, i)
            wire = key & 7
            value: Any
            if wire == 0:
                value, i = _read_varint(data, i)
            elif wire == 2:
                size, i = _read_varint(data, i)
                value, i = bytes(data[i:i + size]), i + size
            elif wire in (1, 5):
                width = 8 if wire == 1 else 4
                value, i = int.from_bytes(data[i:i + width], "little"), i + width
            else:
                raise ValueError(f"wire type {wire} in field {key >> 3}")
            msg.setdefault(key >> 3, []).append(value)
        return msg

    def number(self, number: int, default: int = 0) -> int:
        return self[number][-1] if number in self else default

    def text(self, number: int, default: str = "") -> str:
        return self[number][-1].decode() if number in self else default

    def sub(self, number: int) -> Message:
        return Message.parse(self[number][-1]) if number in self else Message()


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7


# -- CRC32C (Castagnoli), table-driven ------------------------------------------------------------------------------

def _crc_table() -> list[int]:
    table = []
    for n in range(256):
        for _ in range(8):
            n = (n >> 1) ^ 0x82F63B78 if n & 1 else n >> 1
        table.append(n)
    return table


_CRC = _crc_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# -- commands (BaseCommand.Type; also the number of each command's field in BaseCommand) -----------------------------

CONNECT, CONNECTED, SUBSCRIBE, PRODUCER, SEND, SEND_RECEIPT = 2, 3, 4, 5, 6, 7
MESSAGE, ACK, FLOW, UNSUBSCRIBE, SUCCESS, ERROR = 9, 10, 11, 12, 13, 14
CLOSE_PRODUCER, CLOSE_CONSUMER, PRODUCER_SUCCESS, PING, PONG, REDELIVER = 15, 16, 17, 18, 19, 20
PARTITIONED_METADATA, PARTITIONED_METADATA_RESPONSE, LOOKUP, LOOKUP_RESPONSE = 21, 22, 23, 24
GET_LAST_MESSAGE_ID, GET_LAST_MESSAGE_ID_RESPONSE = 29, 30

MAGIC = b"\x0e\x01"
_LOOKUP_CONNECT, _EARLIEST = 1, 1


def frame(kind: int, fields: list[tuple[int, Value]], metadata: bytes | None = None, payload: bytes = b"") -> bytes:
    command = encode([(1, kind), (kind, fields)])
    tail = b""
    if metadata is not None:
        checked = struct.pack(">I", len(metadata)) + metadata + payload
        tail = MAGIC + struct.pack(">I", crc32c(checked)) + checked
    return struct.pack(">II", 4 + len(command) + len(tail), len(command)) + command + tail


def properties(metadata: bytes) -> dict[str, str]:
    """The properties (field 4, KeyValue) of a MessageMetadata."""
    out = {}
    for item in Message.parse(metadata).get(4, []):
        pair = Message.parse(item)
        out[pair.text(1)] = pair.text(2)
    return out


# -- the broker -----------------------------------------------------------------------------------------------------

@dataclass
class Stored:
    topic: str
    metadata: bytes
    payload: bytes

    @property
    def properties(self) -> dict[str, str]:
        return properties(self.metadata)


@dataclass
class _Consumer:
    conn: _Connection
    consumer_id: int
    subscription: _Subscription
    permits: int = 0


@dataclass
class _Subscription:
    topic: str
    cursor: int
    consumers: list[_Consumer] = field(default_factory=list)


class _Connection:
    def __init__(self, broker: PulsarStandin, sock: socket.socket) -> None:
        self.broker, self.sock = broker, sock
        self.producers: dict[int, str] = {}
        self.consumers: dict[int, _Consumer] = {}
        self._send_lock = threading.Lock()

    def send(self, data: bytes) -> None:
        with self._send_lock:
            try:
                self.sock.sendall(data)
            except OSError:
                pass  # the client went away; its reader ends the connection

    def serve(self) -> None:
        reader = self.sock.makefile("rb")
        try:
            while True:
                head = reader.read(4)
                if len(head) < 4:
                    return
                body = reader.read(struct.unpack(">I", head)[0])
                (size,) = struct.unpack(">I", body[:4])
                command = Message.parse(body[4:4 + size])
                self.broker.handle(self, command, body[4 + size:])
        except (OSError, ValueError, struct.error):
            return
        finally:
            self.broker.disconnected(self)
            self.sock.close()


class PulsarStandin(ThreadServer):
    """``PulsarStandin()`` listens on 127.0.0.1:<free port> at once; ``url`` is its service URL; ``stop()``."""

    thread_name = "pulsar-standin"

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.url = f"pulsar://127.0.0.1:{self.port}"
        self.silent: set[str] = set()  # topic names (short or full) whose messages are never acknowledged
        self.stored: list[Stored] = []  # every message accepted, in order
        self.unknown: list[int] = []  # command types this stand-in does not answer
        self._lock = threading.RLock()
        self._topics: dict[str, list[Stored]] = {}
        self._subscriptions: dict[tuple[str, str], _Subscription] = {}
        self._connections: list[_Connection] = []
        self.start()

    def _accept(self) -> _Connection:
        conn = _Connection(self, self._listener.accept()[0])
        with self._lock:
            self._connections.append(conn)
        return conn

    def serve(self) -> None:
        serve_connections(self._accept, _Connection.serve, "pulsar-standin-conn")

    def close(self) -> None:
        hang_up(self._listener)  # wakes the blocked accept()
        self._listener.close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            hang_up(conn.sock)

    def messages(self, topic: str) -> list[Stored]:
        """The messages stored on ``topic`` (short name or full name)."""
        with self._lock:
            return [m for m in self.stored if topic in (m.topic, m.topic.rsplit("/", 1)[-1])]

    # -- commands -------------------------------------------------------------------------------------------------

    def handle(self, conn: _Connection, command: Message, rest: bytes) -> None:
        kind = command.number(1)
        body = command.sub(kind)
        if kind == CONNECT:
            version = body.number(4)
            conn.send(frame(CONNECTED, [(1, "sw-pulsar-standin"), (2, version)]))
        elif kind == PING:
            conn.send(frame(PONG, []))
        elif kind == PONG:
            pass
        elif kind == PARTITIONED_METADATA:
            conn.send(frame(PARTITIONED_METADATA_RESPONSE, [(1, 0), (2, body.number(2)), (3, 0)]))
        elif kind == LOOKUP:
            conn.send(frame(LOOKUP_RESPONSE, [(1, self.url), (3, _LOOKUP_CONNECT), (4, body.number(2)), (5, 1)]))
        elif kind == PRODUCER:
            conn.producers[body.number(2)] = body.text(1)
            name = body.text(4) or f"standin-{self.port}-{body.number(2)}"
            conn.send(frame(PRODUCER_SUCCESS, [(1, body.number(3)), (2, name)]))
        elif kind == SEND:
            self._send(conn, body, rest)
        elif kind == SUBSCRIBE:
            self._subscribe(conn, body)
        elif kind == FLOW:
            with self._lock:
                consumer = conn.consumers.get(body.number(1))
                if consumer is not None:
                    consumer.permits += body.number(2)
                    self._dispatch(consumer.subscription)
        elif kind in (ACK, REDELIVER):
            pass
        elif kind in (CLOSE_PRODUCER, CLOSE_CONSUMER, UNSUBSCRIBE):
            with self._lock:
                if kind == CLOSE_PRODUCER:
                    conn.producers.pop(body.number(1), None)
                else:
                    self._drop(conn.consumers.pop(body.number(1), None), unsubscribe=kind == UNSUBSCRIBE)
            conn.send(frame(SUCCESS, [(1, body.number(2))]))
        elif kind == GET_LAST_MESSAGE_ID:
            with self._lock:
                consumer = conn.consumers.get(body.number(1))
                topic = consumer.subscription.topic if consumer else ""
                last = len(self._topics.get(topic, [])) - 1
            conn.send(frame(GET_LAST_MESSAGE_ID_RESPONSE, [(1, [(1, self._ledger(topic)), (2, last)]),
                                                           (2, body.number(2))]))
        else:
            self.unknown.append(kind)

    def _ledger(self, topic: str) -> int:
        with self._lock:
            return list(self._topics).index(topic) + 1 if topic in self._topics else 0

    def _send(self, conn: _Connection, body: Message, rest: bytes) -> None:
        if rest[:2] != MAGIC or struct.unpack(">I", rest[2:6])[0] != crc32c(rest[6:]):
            raise ValueError("a SEND without magic number or with a bad checksum")
        (size,) = struct.unpack(">I", rest[6:10])
        topic = conn.producers[body.number(1)]
        if topic in self.silent or topic.rsplit("/", 1)[-1] in self.silent:
            return
        message = Stored(topic, rest[10:10 + size], rest[10 + size:])
        with self._lock:
            entries = self._topics.setdefault(topic, [])
            entries.append(message)
            self.stored.append(message)
            message_id = [(1, self._ledger(topic)), (2, len(entries) - 1)]
            conn.send(frame(SEND_RECEIPT, [(1, body.number(1)), (2, body.number(2)), (3, message_id)]))
            for subscription in list(self._subscriptions.values()):
                if subscription.topic == topic:
                    self._dispatch(subscription)

    def _subscribe(self, conn: _Connection, body: Message) -> None:
        topic, name = body.text(1), body.text(2)
        with self._lock:
            entries = self._topics.setdefault(topic, [])
            subscription = self._subscriptions.get((topic, name))
            if subscription is None:
                start = 0 if body.number(13) == _EARLIEST else len(entries)
                subscription = self._subscriptions[(topic, name)] = _Subscription(topic, start)
            consumer = _Consumer(conn, body.number(4), subscription)
            subscription.consumers.append(consumer)
            conn.consumers[consumer.consumer_id] = consumer
        conn.send(frame(SUCCESS, [(1, body.number(5))]))

    def _dispatch(self, subscription: _Subscription) -> None:
        """Deliver what the subscription has not had yet, to consumers with permits (called with the lock)."""
        entries = self._topics.get(subscription.topic, [])
        while subscription.cursor < len(entries):
            consumer = next((c for c in subscription.consumers if c.permits > 0), None)
            if consumer is None:
                return
            message = entries[subscription.cursor]
            message_id = [(1, self._ledger(subscription.topic)), (2, subscription.cursor)]
            consumer.conn.send(frame(MESSAGE, [(1, consumer.consumer_id), (2, message_id)], message.metadata,
                                     message.payload))
            consumer.permits -= 1
            subscription.cursor += 1

    def _drop(self, consumer: _Consumer | None, unsubscribe: bool = False) -> None:
        if consumer is None:
            return
        subscription = consumer.subscription
        if consumer in subscription.consumers:
            subscription.consumers.remove(consumer)
        if unsubscribe:
            self._subscriptions = {k: v for k, v in self._subscriptions.items() if v is not subscription}

    def disconnected(self, conn: _Connection) -> None:
        with self._lock:
            for consumer in list(conn.consumers.values()):
                self._drop(consumer)
            conn.consumers.clear()
            if conn in self._connections:
                self._connections.remove(conn)
