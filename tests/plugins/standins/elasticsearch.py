"""A protocol stand-in for Elasticsearch (no server installs here): an HTTP/1.1 server on 127.0.0.1 answering
the REST subset the sw_elasticsearch tests use, with documents kept in memory.

It speaks what elasticsearch-py 8 and 9 check: every answer carries ``X-Elastic-Product: Elasticsearch`` and the
media type the client asked for (``application/vnd.elasticsearch+json; compatible-with=<N>``, else
``application/json``); ``GET /`` reports version ``<N>.x`` for the client's major ``N``. Calls:

* ``GET /``: cluster info;
* ``PUT /<index>`` (400 ``resource_already_exists_exception`` when it exists), ``HEAD /<index>``,
  ``DELETE /<index>``, ``POST /<index>/_refresh``;
* ``PUT|POST /<index>/_doc/<id>``, ``POST /<index>/_doc`` (an id is made), ``GET|HEAD /<index>/_doc/<id>``
  (404 ``{"found": false}`` when missing), ``DELETE /<index>/_doc/<id>``;
* ``GET|POST /<index>/_search``: ``match_all`` or ``term`` (``{"term": {"f": v}}`` or ``{"f": {"value": v}}``) on
  the sources, ``size`` honoured; any other query is a 400 ``parsing_exception``;
* ``POST /_bulk`` and ``/<index>/_bulk``: NDJSON ``index``, ``create``, ``delete`` actions.

A missing index is a 404 ``index_not_found_exception``; errors have Elasticsearch's shape
``{"error": {"root_cause": [...], "type", "reason", ...}, "status": N}``. Indices are created on first write.

``python -m tests.plugins.standins.elasticsearch`` serves on a free port and prints ``ready port=<port>``;
``StandIn()`` serves from a thread of this process.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from tests.plugins.standins.serving import SocketServerStandIn, serve_until_interrupted

_COMPAT = re.compile(r"application/vnd\.elasticsearch\+json;\s*compatible-with=(\d+)")
_SHARDS = {"total": 1, "successful": 1, "skipped": 0, "failed": 0}


class Store:
    """The documents: index name → id → source; one lock for all."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.indices: dict[str, dict[str, Any]] = {}
        self.seq = 0


class Answer(Exception):
    """Leave the handler with this status and JSON body (``None``: no body, e.g. for ``HEAD``)."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status)
        self.status, self.body = status, body


def es_error(status: int, kind: str, reason: str, index: str | None = None) -> Answer:
    cause: dict[str, Any] = {"type": kind, "reason": reason}
    if index is not None:
        cause.update({"index": index, "resource.type": "index_or_alias", "resource.id": index})
    return Answer(status, {"error": {"root_cause": [cause], **cause}, "status": status})


def _missing(index: str) -> Answer:
    return es_error(404, "index_not_found_exception", f"no such index [{index}]", index)


def _matches(query: dict[str, Any], source: dict[str, Any]) -> bool:
    if set(query) == {"match_all"}:
        return True
    if set(query) == {"term"} and isinstance(query["term"], dict) and len(query["term"]) == 1:
        (field, value), = query["term"].items()
        if isinstance(value, dict):
            value = value.get("value")
        return source.get(field) == value
    raise es_error(400, "parsing_exception", f"unknown query [{next(iter(query), '')}]")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    store: Store  # set on the subclass made per server

    # -- plumbing -----------------------------------------------------------------------------------------------

    def _major(self) -> str:
        found = _COMPAT.search(self.headers.get("Accept", "") or "")
        return found.group(1) if found else "8"

    def _reply(self, status: int, body: Any) -> None:
        found = _COMPAT.search(self.headers.get("Accept", "") or "")
        kind = f"application/vnd.elasticsearch+json;compatible-with={found.group(1)}" if found else "application/json"
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("X-Elastic-Product", "Elasticsearch")
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _json(self) -> Any:
        raw = self._body()
        try:
            return json.loads(raw) if raw else {}
        except ValueError:
            raise es_error(400, "parse_exception", "request body is not valid JSON") from None

    def _handle(self) -> None:
        parts = [unquote(p) for p in urlsplit(self.path).path.split("/") if p]
        try:
            with_body = self._route(self.command, parts)
            self._reply(200, with_body)
        except Answer as answer:
            self._reply(answer.status, answer.body)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

    def log_message(self, *args: object) -> None:
        pass

    # -- the API ------------------------------------------------------------------------------------------------

    def _route(self, method: str, parts: list[str]) -> Any:
        if not parts and method == "GET":
            return self._info()
        if parts and parts[-1] == "_bulk" and method in ("POST", "PUT") and len(parts) <= 2:
            return self._bulk(parts[0] if len(parts) == 2 else None)
        if len(parts) == 1 and not parts[0].startswith("_"):
            return self._index(method, parts[0])
        if len(parts) == 2 and parts[1] == "_refresh" and method in ("POST", "GET"):
            self._docs(parts[0])
            return {"_shards": _SHARDS}
        if len(parts) == 2 and parts[1] == "_search" and method in ("POST", "GET"):
            return self._search(parts[0], self._json())
        if len(parts) in (2, 3) and parts[1] == "_doc":
            return self._doc(method, parts[0], parts[2] if len(parts) == 3 else None)
        self._body()
        raise Answer(400, {"error": f"no handler found for uri [{self.path}] and method [{method}]", "status": 400})

    def _info(self) -> Any:
        major = self._major()
        return {"name": "standin", "cluster_name": "sw-test", "cluster_uuid": "standin-cluster",
                "version": {"number": f"{major}.0.0", "build_flavor": "default", "lucene_version": "9.0.0",
                            "minimum_wire_compatibility_version": "7.17.0",
                            "minimum_index_compatibility_version": "7.0.0"},
                "tagline": "You Know, for Search"}

    def _docs(self, index: str) -> dict[str, Any]:
        docs = self.store.indices.get(index)
        if docs is None:
            raise _missing(index)
        return docs

    def _index(self, method: str, index: str) -> Any:
        store = self.store
        self._body()  # settings and mappings are accepted and ignored
        with store.lock:
            exists = index in store.indices
            if method == "HEAD":
                raise Answer(200 if exists else 404, None)
            if method == "PUT":
                if exists:
                    raise es_error(400, "resource_already_exists_exception",
                                   f"index [{index}/standin] already exists", index)
                store.indices[index] = {}
                return {"acknowledged": True, "shards_acknowledged": True, "index": index}
            if method == "DELETE":
                if not exists:
                    raise _missing(index)
                del store.indices[index]
                return {"acknowledged": True}
        raise Answer(405, {"error": f"Incorrect HTTP method for uri [{self.path}] and method [{method}]",
                           "status": 405})

    def _write(self, index: str, doc_id: str | None, source: Any, create_only: bool = False) -> tuple[int, Any]:
        """Store one document (the caller holds the lock): the status and the answer of an index call."""
        store = self.store
        docs = store.indices.setdefault(index, {})
        doc_id = doc_id or uuid.uuid4().hex[:20]
        if create_only and doc_id in docs:
            return 409, {"type": "version_conflict_engine_exception", "index": index,
                         "reason": f"[{doc_id}]: version conflict, document already exists"}
        created = doc_id not in docs
        docs[doc_id] = source
        store.seq += 1
        return (201 if created else 200), {"_index": index, "_id": doc_id, "_version": 1,
                                           "result": "created" if created else "updated", "_shards": _SHARDS,
                                           "_seq_no": store.seq, "_primary_term": 1}

    def _doc(self, method: str, index: str, doc_id: str | None) -> Any:
        store = self.store
        if method in ("PUT", "POST"):
            source = self._json()
            if doc_id is None and method == "PUT":
                raise Answer(405, {"error": "PUT needs a document id", "status": 405})
            with store.lock:
                status, answer = self._write(index, doc_id, source)
            raise Answer(status, answer)
        self._body()
        if doc_id is None:
            raise Answer(405, {"error": f"no handler for [{method} {self.path}]", "status": 405})
        with store.lock:
            docs = self._docs(index)
            if method == "DELETE":
                if docs.pop(doc_id, None) is None:
                    raise Answer(404, {"_index": index, "_id": doc_id, "result": "not_found", "_shards": _SHARDS})
                return {"_index": index, "_id": doc_id, "result": "deleted", "_shards": _SHARDS}
            if doc_id not in docs:
                raise Answer(404, None if method == "HEAD" else {"_index": index, "_id": doc_id, "found": False})
            if method == "HEAD":
                return None
            return {"_index": index, "_id": doc_id, "_version": 1, "_seq_no": 0, "_primary_term": 1, "found": True,
                    "_source": docs[doc_id]}

    def _search(self, index: str, request: Any) -> Any:
        query = request.get("query") or {"match_all": {}}
        size = int(request.get("size", 10))
        with self.store.lock:
            docs = dict(self._docs(index))
        hits = [{"_index": index, "_id": doc_id, "_score": 1.0, "_source": source}
                for doc_id, source in docs.items() if _matches(query, source)]
        return {"took": 1, "timed_out": False, "_shards": _SHARDS,
                "hits": {"total": {"value": len(hits), "relation": "eq"}, "max_score": 1.0 if hits else None,
                         "hits": hits[:size]}}

    def _bulk(self, default_index: str | None) -> Any:
        lines = [line for line in self._body().split(b"\n") if line.strip()]
        items, errors = [], False
        with self.store.lock:
            i = 0
            while i < len(lines):
                (action, target), = json.loads(lines[i]).items()
                index, doc_id = target.get("_index", default_index), target.get("_id")
                if action == "delete":
                    found = self.store.indices.get(index, {}).pop(doc_id, None) is not None
                    status = 200 if found else 404
                    answer: Any = {"_index": index, "_id": doc_id, "result": "deleted" if found else "not_found"}
                    i += 1
                else:
                    status, answer = self._write(index, doc_id, json.loads(lines[i + 1]), action == "create")
                    if status == 409:
                        answer = {"_index": index, "_id": doc_id, "error": answer}
                    i += 2
                errors = errors or "error" in answer  # a delete of a missing document is no error
                items.append({action: {**answer, "status": status}})
        return {"took": 1, "errors": errors, "items": items}


class StandIn(SocketServerStandIn):
    """The stand-in serving from a daemon thread of this process; ``stop()`` ends it."""

    thread_name = "elasticsearch-standin"

    def __init__(self) -> None:
        handler = type("StoreHandler", (Handler,), {"store": Store()})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self.start()


if __name__ == "__main__":  # serve until interrupted, printing ``ready port=<port>``
    serve_until_interrupted(StandIn())
