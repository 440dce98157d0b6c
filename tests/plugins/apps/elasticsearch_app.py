"""A service for the sw_elasticsearch test, traced by the agent (configured by SW_* variables).

``elasticsearch_app.py <port>``: an ``http.server`` handler whose ``GET /elasticsearch`` runs, against the
Elasticsearch stand-in on 127.0.0.1:<port>, with the sync client (urllib3 underneath): create the index ``books``,
index document 1, get it, a ``term`` search, a bulk of two documents, a get of a missing document (404: fails), an
``exists`` of a missing document (``HEAD``, a 404 that is an answer, not a failure); then with
``AsyncElasticsearch`` (aiohttp underneath): index document 4 and a ``match_all`` search. Answers JSON; nothing
touches the cluster outside a request. Prints ``ready port=<port>`` once listening on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from skywalking import agent
from tests.plugins.apps.front import serve_json

agent.start()

import elasticsearch  # noqa: E402  (after the agent: patched on import)

URL = f"http://127.0.0.1:{int(sys.argv[1])}"


def run_sync() -> dict[str, Any]:
    es = elasticsearch.Elasticsearch(URL)
    try:
        es.indices.create(index="books")
        es.index(index="books", id="1", document={"title": "Dune", "year": 1965})
        out: dict[str, Any] = {"get": es.get(index="books", id="1")["_source"]["title"]}
        found = es.search(index="books", query={"term": {"year": 1965}})
        out["search"] = [hit["_id"] for hit in found["hits"]["hits"]]
        bulk = es.bulk(operations=[{"index": {"_index": "books", "_id": "2"}}, {"title": "Emma", "year": 1815},
                                   {"index": {"_index": "books", "_id": "3"}}, {"title": "Ubik", "year": 1969}])
        out["bulk_errors"] = bulk["errors"]
        try:
            es.get(index="books", id="missing")
        except elasticsearch.NotFoundError as e:
            out["get_error"] = f"{type(e).__name__} {e.meta.status}"
        out["exists"] = bool(es.exists(index="books", id="missing"))
        return out
    finally:
        es.close()


async def run_async() -> dict[str, Any]:
    es = elasticsearch.AsyncElasticsearch(URL)
    try:
        await es.index(index="books", id="4", document={"title": "Solaris", "year": 1961})
        found = await es.search(index="books", query={"match_all": {}})
        return {"total": found["hits"]["total"]["value"]}
    finally:
        await es.close()


def main() -> None:
    serve_json(lambda path: {"sync": run_sync(), "async": asyncio.run(run_async())})


if __name__ == "__main__":
    main()
