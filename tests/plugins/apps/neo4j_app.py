"""A service for the sw_neo4j test, traced by the agent (configured by SW_* variables).

``neo4j_app.py <port>``: an ``http.server`` handler whose ``GET /neo4j`` runs, with the neo4j driver against the Bolt
server on 127.0.0.1:<port> (``bolt://``, user ``neo4j``, password ``password``): in a session on database
``neo4j`` an auto-commit ``RETURN $x``, an ``UNWIND`` read to its end, an explicit transaction with a ``CREATE``,
a managed read (``execute_read``), ``Driver.execute_query`` (before 5.5: the
managed read it stands for), and a query with a syntax error (fails with
``CypherSyntaxError``); then with the async driver, in a session on the default database: an auto-commit query, an
explicit transaction and a failing query. Answers JSON; nothing touches the server outside a request. Prints
``ready port=<port>`` once listening on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from skywalking import agent
from tests.plugins.apps.front import serve_json

agent.start()

import neo4j  # noqa: E402  (after the agent: patched on import)
import neo4j.exceptions  # noqa: E402

URI, AUTH = f"bolt://127.0.0.1:{int(sys.argv[1])}", ("neo4j", "password")


def run_sync() -> dict[str, Any]:
    out: dict[str, Any] = {}
    with neo4j.GraphDatabase.driver(URI, auth=AUTH) as driver:
        with driver.session(database="neo4j") as session:
            out["x"] = session.run("RETURN $x AS x", x=1).single()["x"]
            out["unwind"] = session.run("UNWIND range(1, $n) AS i RETURN i", {"n": 3}).value()
            with session.begin_transaction() as tx:
                out["created"] = tx.run("CREATE (:Person {name: $name})", name="ann").consume().counters.nodes_created
                tx.commit()
            out["read"] = session.execute_read(lambda tx: tx.run("RETURN 1 AS one").single()[0])
            try:
                session.run("RETUR 1").consume()
            except neo4j.exceptions.CypherSyntaxError as e:
                out["error"] = e.code
        if hasattr(driver, "execute_query"):  # neo4j 5.5+
            records = driver.execute_query("RETURN $x AS x", x=2, database_="neo4j").records
        else:  # the managed transaction execute_query runs its query in
            with driver.session(database="neo4j") as session:
                records = session.execute_read(lambda tx: list(tx.run("RETURN $x AS x", x=2)))
        out["execute_query"] = records[0]["x"]
    return out


async def run_async() -> dict[str, Any]:
    out: dict[str, Any] = {}
    async with neo4j.AsyncGraphDatabase.driver(URI, auth=AUTH) as driver:
        async with driver.session() as session:
            out["x"] = (await (await session.run("RETURN 'a' AS s")).single())["s"]
            async with await session.begin_transaction() as tx:
                out["tx"] = await (await tx.run("UNWIND range(1, 2) AS i RETURN i")).value()
                await tx.commit()
            try:
                await session.run("MATCH (n RETURN n")
            except neo4j.exceptions.CypherSyntaxError as e:
                out["error"] = e.code
    return out


def main() -> None:
    serve_json(lambda path: {"sync": run_sync(), "async": asyncio.run(run_async())})


if __name__ == "__main__":
    main()
