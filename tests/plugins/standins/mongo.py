"""A MongoDB stand-in for the sw_pymongo tests: the MongoDB wire protocol over TCP on 127.0.0.1, documents kept in
memory per database and collection (no MongoDB server installs here from PyPI, Debian or npm).

Wire protocol: OP_MSG (2013: flag bits, a kind 0 body section and kind 1 document sequences, which pymongo uses for
the documents of inserts, updates and deletes; ``moreToCome`` writes get no reply) and OP_QUERY (2004, answered
with OP_REPLY: pymongo sends the connection handshake that way). BSON goes through ``bson``, the codec pymongo ships.

Commands: ``hello`` / ``isMaster`` (a standalone server, wire versions 0..21, sessions supported, no
``topologyVersion`` so that pymongo polls instead of streaming heartbeats), ``ping``, ``buildInfo``,
``endSessions``, ``insert`` (duplicate ``_id`` -> a ``writeErrors`` entry, code 11000), ``find`` (filter, sort,
projection, skip, limit, batchSize, singleBatch), ``getMore`` (``nextBatch``, cursor id 0 once exhausted),
``killCursors``, ``update`` (``$set``, ``$unset``, ``$inc`` or a replacement; multi, upsert), ``delete``,
``aggregate`` (``$match``, ``$sort``, ``$skip``, ``$limit``, ``$project``, ``$count``), ``count``, ``drop`` and
``sleep`` (``millis``, as MongoDB's test command). Filters: equality (an array field matches a member), ``$eq``,
``$ne``, ``$gt``, ``$gte``, ``$lt``, ``$lte``, ``$in``, ``$nin``, ``$exists``, ``$and``, ``$or``, dotted paths.
Anything else answers ``ok: 0`` with ``errmsg``, ``code`` and ``codeName`` like the server
(``no such command: 'x'``, code 59 ``CommandNotFound``).

In a test: ``MongoStandIn().start()`` (a thread; ``stop()`` ends it and its connections). As a process:
``python -m tests.plugins.standins.mongo --port N`` (0: a free port) prints ``ready port=<port>`` once listening.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import itertools
import random
import socket
import socketserver
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import bson
from bson.int64 import Int64
from bson.objectid import ObjectId

from tests.plugins.standins.serving import SocketServerStandIn, ThreadingServer, hang_up, serve_until_interrupted

OP_REPLY, OP_QUERY, OP_MSG = 1, 2004, 2013
CHECKSUM_PRESENT, MORE_TO_COME = 1, 2
MAX_WIRE_VERSION = 21  # MongoDB 7.0: within what pymongo 4.0 (6..14) and the newest pymongo (9..) accept
DEFAULT_BATCH = 101  # documents in a first batch without batchSize, as the server


class CommandError(Exception):
    """An ``ok: 0`` answer."""

    def __init__(self, code: int, code_name: str, errmsg: str) -> None:
        super().__init__(errmsg)
        self.code, self.code_name, self.errmsg = code, code_name, errmsg


# -- queries ------------------------------------------------------------------------------------------------------

_MISSING = object()


def _get(doc: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(doc, dict) and part in doc:
            doc = doc[part]
        else:
            return _MISSING
    return doc


def _compare(op: str, value: Any, arg: Any) -> bool:
    if op == "$exists":
        return (value is not _MISSING) == bool(arg)
    if op == "$in":
        return any(_equal(value, a) for a in arg)
    if op == "$nin":
        return not any(_equal(value, a) for a in arg)
    if op == "$eq":
        return _equal(value, arg)
    if op == "$ne":
        return not _equal(value, arg)
    if op in ("$gt", "$gte", "$lt", "$lte"):
        if value is _MISSING:
            return False
        candidates = value if isinstance(value, list) else [value]
        try:
            return any({"$gt": c > arg, "$gte": c >= arg, "$lt": c < arg, "$lte": c <= arg}[op] for c in candidates)
        except TypeError:  # different BSON types never compare in a filter
            return False
    raise CommandError(2, "BadValue", f"unknown operator: {op}")


def _equal(value: Any, arg: Any) -> bool:
    if value is _MISSING:
        return arg is None
    return value == arg or (isinstance(value, list) and arg in value)


def matches(doc: dict[str, Any], query: Any) -> bool:
    """Whether ``doc`` matches the filter ``query``."""
    for key, cond in (query or {}).items():
        if key == "$and":
            if not all(matches(doc, q) for q in cond):
                return False
        elif key == "$or":
            if not any(matches(doc, q) for q in cond):
                return False
        elif key.startswith("$"):
            raise CommandError(2, "BadValue", f"unknown top level operator: {key}")
        elif isinstance(cond, dict) and cond and all(k.startswith("$") for k in cond):
            if not all(_compare(op, _get(doc, key), arg) for op, arg in cond.items()):
                return False
        elif not _equal(_get(doc, key), cond):
            return False
    return True


def _sorted(docs: list[dict[str, Any]], spec: Any) -> list[dict[str, Any]]:
    for key, direction in reversed(list((spec or {}).items())):
        present = [d for d in docs if _get(d, key) not in (_MISSING, None)]
        absent = [d for d in docs if _get(d, key) in (_MISSING, None)]
        present.sort(key=lambda d, k=key: _get(d, k), reverse=direction < 0)
        docs = absent + present if direction > 0 else present + absent
    return docs


def _project(doc: dict[str, Any], spec: Any) -> dict[str, Any]:
    if not spec:
        return doc
    fields = {k: v for k, v in spec.items() if k != "_id"}
    if fields and all(fields.values()):
        out = {k: doc[k] for k in fields if k in doc}
        if spec.get("_id", 1) and "_id" in doc:
            out = {"_id": doc["_id"], **out}
        return out
    return {k: v for k, v in doc.items() if spec.get(k, 1)}


def _updated(doc: dict[str, Any], update: Any) -> dict[str, Any]:
    if not isinstance(update, dict):
        raise CommandError(14, "TypeMismatch", "pipeline updates are not supported by this stand-in")
    if not any(k.startswith("$") for k in update):
        return {"_id": doc["_id"], **{k: v for k, v in update.items() if k != "_id"}}
    new = dict(doc)
    for op, fields in update.items():
        for key, value in fields.items():
            if op == "$set":
                new[key] = value
            elif op == "$unset":
                new.pop(key, None)
            elif op == "$inc":
                new[key] = new.get(key, 0) + value
            else:
                raise CommandError(9, "FailedToParse", f"Unknown modifier: {op}")
    return new


# -- the server state and its commands ------------------------------------------------------------------------------

class _Cursor:
    def __init__(self, ns: str, docs: list[dict[str, Any]], batch: int | None) -> None:
        self.ns, self.docs, self.batch = ns, docs, batch


class Store:
    """Collections, open cursors and the command log of one stand-in."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.dbs: dict[str, dict[str, list[dict[str, Any]]]] = {}
        self.cursors: dict[int, _Cursor] = {}
        self.received: list[tuple[str, str]] = []  # (database, command name) of every command, in order
        self._connection_ids = itertools.count(1)

    def collection(self, db: str, name: str) -> list[dict[str, Any]]:
        return self.dbs.setdefault(db, {}).setdefault(str(name), [])

    def run(self, db: str, cmd: dict[str, Any]) -> dict[str, Any]:
        """The reply document to ``cmd`` on ``db``."""
        name = next(iter(cmd), "")
        with self.lock:
            self.received.append((db, name))
        handler: Callable[[str, dict[str, Any]], dict[str, Any]] | None = getattr(
            self, f"_cmd_{name.lower()}", None)
        try:
            if handler is None:
                raise CommandError(59, "CommandNotFound", f"no such command: '{name}'")
            if name.lower() == "sleep":
                return handler(db, cmd)  # without the lock: other connections go on meanwhile
            with self.lock:
                return handler(db, cmd)
        except CommandError as e:
            return {"ok": 0.0, "errmsg": e.errmsg, "code": e.code, "codeName": e.code_name}
        except Exception as e:  # a bug of the stand-in or an odd command: the server's InternalError
            return {"ok": 0.0, "errmsg": f"{type(e).__name__}: {e}", "code": 1, "codeName": "InternalError"}

    # handshake and admin

    def _hello(self, cmd: dict[str, Any], primary_field: str) -> dict[str, Any]:
        reply: dict[str, Any] = {primary_field: True}
        if cmd.get("helloOk"):
            reply["helloOk"] = True
        reply.update({
            "maxBsonObjectSize": 16 * 1024 * 1024, "maxMessageSizeBytes": 48_000_000, "maxWriteBatchSize": 100_000,
            "localTime": datetime.datetime.now(datetime.timezone.utc), "logicalSessionTimeoutMinutes": 30,
            "connectionId": next(self._connection_ids), "minWireVersion": 0, "maxWireVersion": MAX_WIRE_VERSION,
            "readOnly": False, "ok": 1.0})
        return reply

    def _cmd_hello(self, db: str, cmd: dict[str, Any]) -> dict[str, Any]:
        return self._hello(cmd, "isWritablePrimary")

    def _cmd_ismaster(self, db: str, cmd: dict[str, Any]) -> dict[str, Any]:
        return self._hello(cmd, "ismaster")

    def _cmd_ping(self, db: str, cmd: dict[str, Any]) -> dict[str, Any]:
        return {"ok": 1.0}

    def _cmd_buildinfo(self, db: str, cmd: dict[str, Any]) -> dict[str, Any]:
        return {"version": "7.0.0", "versionArray": [7, 0, 0, 0], "gitVersion": "stand-in", "bits": 64,
                "maxBsonObjectSize": 16 * 1024 * 1024, "ok": 1.0}

    def _cmd_endsessions(self, db: str, cmd: dict[str, Any]) -> dict[str, Any]:
        return {"ok": 1.0}

    def _cmd_sleep(self, db: str, cmd: dict[str, Any]) -> dict[str, Any]:
        time.sleep(min(float(cmd.get("millis", 0)), 10_000) / 1000)
        return {"ok": 1.0}

    def _cmd_drop(self, db: str, cmd: dict[str, Any]) -> dict[str, Any]:
        self.dbs.get(db, {}).pop(str(cmd["drop"]), None)
        return {"ns": f"{db}.{cmd['drop']}", "nIndexesWas": 1, "ok": 1.0}

    # writes

    def _cmd_insert(self, db: str, cmd: dict[str, Any]) -> dict[str, Any]:
        coll = self.collection(db, cmd["insert"])
        ordered = cmd.get("ordered", True)
        n, errors = 0, []
        for i, doc in enumerate(cmd.get("documents", [])):
            doc = dict(doc)
            doc.setdefault("_id", ObjectId())
            if any(d["_id"] == doc["_id"] for d in coll):
                errors.append({"index": i, "code": 11000, "errmsg": f"E11000 duplicate key error collection: "
                               f"{db}.{cmd['insert']} index: _id_ dup key: {{ _id: {doc['_id']!r} }}"})
                if ordered:
                    break
                continue
            coll.append(doc)
            n += 1
        reply: dict[str, Any] = {"n": n}
        if errors:
            reply["writeErrors"] = errors
        reply["ok"] = 1.0
        return reply

    def _cmd_update(self, db: str, cmd: dict[str, Any]) -> dict[str, Any]:
        coll = self.collection(db, cmd["update"])
        n = modified = 0
        upserted = []
        for i, spec in enumerate(cmd.get("updates", [])):
            hits = [j for j, d in enumerate(coll) if matches(d, spec.get("q"))]
            if not spec.get("multi"):
                hits = hits[:1]
            for j in hits:
                new = _updated(coll[j], spec.get("u"))
                modified += new != coll[j]
                coll[j] = new
            n += len(hits)
            if not hits and spec.get("upsert"):
                base = {k: v for k, v in (spec.get("q") or {}).items()
                        if not k.startswith("$") and not isinstance(v, dict)}
                base.setdefault("_id", ObjectId())
                coll.append(_updated(base, spec.get("u")))
                upserted.append({"index": i, "_id": base["_id"]})
                n += 1
        reply: dict[str, Any] = {"n": n, "nModified": modified}
        if upserted:
            reply["upserted"] = upserted
        reply["ok"] = 1.0
        return reply

    def _cmd_delete(self, db: str, cmd: dict[str, Any]) -> dict[str, Any]:
        coll = self.collection(db, cmd["delete"])
        n = 0
        for spec in cmd.get("deletes", []):
            hits = [d for d in coll if matches(d, spec.get("q"))]
            if spec.get("limit"):
                hits = hits[:1]
            for d in hits:
                coll.remove(d)
            n += len(hits)
        return {"n": n, "ok": 1.0}

    # reads and cursors

    def _first_batch(self, db: str, coll: str, docs: list[dict[str, Any]], batch: int | None,
                     single: bool = False) -> dict[str, Any]:
        size = DEFAULT_BATCH if batch is None or batch <= 0 else batch
        first, rest = docs[:size], docs[size:]
        cursor_id = 0
        if rest and not single:
            cursor_id = random.randint(1, 2**62)
            self.cursors[cursor_id] = _Cursor(f"{db}.{coll}", rest, batch)
        return {"cursor": {"firstBatch": first, "id": Int64(cursor_id), "ns": f"{db}.{coll}"}, "ok": 1.0}

    def _cmd_find(self, db: str, cmd: dict[str, Any]) -> dict[str, Any]:
        coll = str(cmd["find"])
        docs = [d for d in self.collection(db, coll) if matches(d, cmd.get("filter"))]
        docs = _sorted(docs, cmd.get("sort"))[int(cmd.get("skip", 0)):]
        limit = abs(int(cmd.get("limit", 0)))
        if limit:
            docs = docs[:limit]
        docs = [_project(d, cmd.get("projection")) for d in docs]
        return self._first_batch(db, coll, docs, cmd.get("batchSize"), bool(cmd.get("singleBatch")))

    def _cmd_getmore(self, db: str, cmd: dict[str, Any]) -> dict[str, Any]:
        cursor_id = int(cmd["getMore"])
        cursor = self.cursors.get(cursor_id)
        if cursor is None:
            raise CommandError(43, "CursorNotFound", f"cursor id {cursor_id} not found")
        size = cmd.get("batchSize") or cursor.batch or len(cursor.docs)
        batch, cursor.docs = cursor.docs[:size], cursor.docs[size:]
        if not cursor.docs:
            del self.cursors[cursor_id]
            cursor_id = 0
        return {"cursor": {"nextBatch": batch, "id": Int64(cursor_id), "ns": cursor.ns}, "ok": 1.0}

    def _cmd_killcursors(self, db: str, cmd: dict[str, Any]) -> dict[str, Any]:
        killed, missing = [], []
        for cursor_id in cmd.get("cursors", []):
            (killed if self.cursors.pop(int(cursor_id), None) is not None else missing).append(Int64(cursor_id))
        return {"cursorsKilled": killed, "cursorsNotFound": missing, "cursorsAlive": [], "cursorsUnknown": [],
                "ok": 1.0}

    def _cmd_aggregate(self, db: str, cmd: dict[str, Any]) -> dict[str, Any]:
        coll = str(cmd["aggregate"])
        docs = list(self.collection(db, coll))
        for stage in cmd.get("pipeline", []):
            (name, arg), = stage.items()
            if name == "$match":
                docs = [d for d in docs if matches(d, arg)]
            elif name == "$sort":
                docs = _sorted(docs, arg)
            elif name == "$skip":
                docs = docs[int(arg):]
            elif name == "$limit":
                docs = docs[:int(arg)]
            elif name == "$project":
                docs = [_project(d, arg) for d in docs]
            elif name == "$count":
                docs = [{arg: len(docs)}] if docs else []
            else:
                raise CommandError(40324, "Location40324", f"Unrecognized pipeline stage name: '{name}'")
        return self._first_batch(db, coll, docs, (cmd.get("cursor") or {}).get("batchSize"))

    def _cmd_count(self, db: str, cmd: dict[str, Any]) -> dict[str, Any]:
        docs = [d for d in self.collection(db, cmd["count"]) if matches(d, cmd.get("query"))]
        return {"n": len(docs), "ok": 1.0}


# -- the wire -------------------------------------------------------------------------------------------------------

def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = sock.recv(min(left, 1 << 16))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _cstring(data: bytes, at: int) -> tuple[str, int]:
    end = data.index(b"\x00", at)
    return data[at:end].decode(), end + 1


def parse_op_msg(body: bytes) -> tuple[int, dict[str, Any]]:
    """(flag bits, command) of an OP_MSG body (after the header): kind 1 sequences are merged into the command."""
    flags = struct.unpack_from("<I", body)[0]
    end = len(body) - (4 if flags & CHECKSUM_PRESENT else 0)
    at, command, sequences = 4, None, {}
    while at < end:
        kind = body[at]
        at += 1
        if kind == 0:
            size = struct.unpack_from("<i", body, at)[0]
            command = bson.decode(body[at:at + size])
            at += size
        elif kind == 1:
            size = struct.unpack_from("<i", body, at)[0]
            identifier, docs_at = _cstring(body, at + 4)
            sequences[identifier] = bson.decode_all(body[docs_at:at + size])
            at += size
        else:
            raise ValueError(f"unknown OP_MSG section kind {kind}")
    if command is None:
        raise ValueError("OP_MSG without a body section")
    command.update(sequences)
    return flags, command


def _message(request_id: int, response_to: int, opcode: int, payload: bytes) -> bytes:
    return struct.pack("<iiii", 16 + len(payload), request_id, response_to, opcode) + payload


class _Connection(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        sock: socket.socket = self.request
        ids = itertools.count(1)
        with self.server.tracking(sock):
            while True:
                header = _recv_exact(sock, 16)
                if header is None:
                    return
                length, request_id, _, opcode = struct.unpack("<iiii", header)
                body = _recv_exact(sock, length - 16)
                if body is None:
                    return
                if opcode == OP_MSG:
                    flags, cmd = parse_op_msg(body)
                    reply = self.server.store.run(str(cmd.pop("$db", "admin")), cmd)
                    if flags & MORE_TO_COME:  # an unacknowledged write: no answer
                        continue
                    payload = struct.pack("<I", 0) + b"\x00" + bson.encode(reply)
                    sock.sendall(_message(next(ids), request_id, OP_MSG, payload))
                elif opcode == OP_QUERY:
                    namespace, at = _cstring(body, 4)
                    at += 8  # numberToSkip, numberToReturn
                    size = struct.unpack_from("<i", body, at)[0]
                    cmd = bson.decode(body[at:at + size])
                    if "$query" in cmd:
                        cmd = cmd["$query"]
                    reply = self.server.store.run(namespace.split(".", 1)[0], cmd)
                    payload = struct.pack("<iqii", 8, 0, 0, 1) + bson.encode(reply)  # AwaitCapable, no cursor
                    sock.sendall(_message(next(ids), request_id, OP_REPLY, payload))
                else:  # OP_COMPRESSED is never negotiated; anything else: the server drops the connection
                    return


class _Server(ThreadingServer):
    def __init__(self, address: tuple[str, int], store: Store) -> None:
        self.store = store
        self.open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Connection)

    @contextlib.contextmanager
    def tracking(self, sock: socket.socket) -> Iterator[None]:
        """Keep ``sock`` in ``open`` while its connection is served (``drop_connections`` ends them)."""
        with self._open_lock:
            self.open.add(sock)
        try:
            yield
        finally:
            with self._open_lock:
                self.open.discard(sock)

    def drop_connections(self) -> None:
        with self._open_lock:
            socks = list(self.open)
        for sock in socks:
            hang_up(sock)

    def server_close(self) -> None:
        self.drop_connections()
        super().server_close()


class MongoStandIn(SocketServerStandIn):
    """The stand-in on ``host``:``port`` (0: a free port); ``start()`` serves from a thread, ``stop()`` ends it and
    closes every client connection."""

    thread_name = "mongo-stand-in"
    _server: _Server

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.store = Store()
        self._server = _Server((host, port), self.store)
        self.host, self.port = host, self._server.server_address[1]

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def commands(self) -> list[str]:
        """The names of the commands received so far, in order."""
        with self.store.lock:
            return [name for _, name in self.store.received]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    serve_until_interrupted(MongoStandIn(args.host, args.port))


if __name__ == "__main__":
    main()
