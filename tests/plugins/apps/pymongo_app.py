"""A service for the sw_pymongo test, traced by the agent (configured by SW_* variables).

``pymongo_app.py <port>``: an ``http.server`` handler whose ``GET /mongo`` runs, against the MongoDB stand-in on
127.0.0.1:<port> (database ``sw_app``, collection ``items``): ``insert_many`` of five documents, a ``find`` with
batch size 2 read to the end (a find and two getMores), ``update_one``, ``update_many``, ``delete_one``, an
``aggregate`` with ``$match``, an ordered ``bulk_write`` (insert, update, delete), an unknown command (fails with
``OperationFailure``), an ``insert_one`` of an existing ``_id`` (``DuplicateKeyError``) and a ``find_one``. Answers
JSON. The client is made once, after the agent started (its handshake and heartbeats are never traced) and never
closed while serving. Prints ``ready port=<port>`` once listening on 127.0.0.1.
"""

from __future__ import annotations

import sys
from typing import Any

from skywalking import agent
from tests.plugins.apps.front import serve_json

agent.start()

import pymongo  # noqa: E402  (after the agent: patched on import)
from pymongo import DeleteOne, InsertOne, UpdateOne  # noqa: E402
from pymongo.errors import DuplicateKeyError, OperationFailure  # noqa: E402

CLIENT: Any = pymongo.MongoClient("127.0.0.1", int(sys.argv[1]), serverSelectionTimeoutMS=10_000)


def run() -> dict[str, Any]:
    items = CLIENT.sw_app.items
    out: dict[str, Any] = {"inserted": items.insert_many([{"_id": i, "n": i} for i in range(1, 6)]).inserted_ids}
    out["found"] = [d["n"] for d in items.find({"n": {"$gte": 1}}).sort("n", 1).batch_size(2)]
    out["updated"] = items.update_one({"_id": 1}, {"$set": {"tag": "one"}}).modified_count
    out["updated_many"] = items.update_many({"n": {"$gt": 3}}, {"$inc": {"n": 10}}).modified_count
    out["deleted"] = items.delete_one({"_id": 2}).deleted_count
    out["aggregated"] = [d["_id"] for d in items.aggregate([{"$match": {"n": {"$gt": 10}}}])]
    result = items.bulk_write([InsertOne({"_id": 6, "n": 6}), UpdateOne({"_id": 6}, {"$set": {"n": 60}}),
                               DeleteOne({"_id": 3})])
    out["bulk"] = [result.inserted_count, result.modified_count, result.deleted_count]
    try:
        CLIENT.sw_app.command("noSuchCommand")
    except OperationFailure as e:
        out["unknown"] = [type(e).__name__, e.code]
    try:
        items.insert_one({"_id": 1})
    except DuplicateKeyError as e:
        out["duplicate"] = [type(e).__name__, e.code]
    out["found_one"] = items.find_one({"_id": 1})
    return out


def main() -> None:
    serve_json(lambda path: run())


if __name__ == "__main__":
    main()
