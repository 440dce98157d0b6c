"""A service for the PostgreSQL plugin tests, traced by the agent (configured by SW_* variables).

``postgres_app.py <port> <socket dir> <database>``: an ``http.server`` handler whose ``GET /psycopg2``,
``GET /psycopg`` and ``GET /asyncpg`` run, with that driver against the server on 127.0.0.1:<port> (user
``postgres``), the statements listed in each function below, a bad one (unknown table) included, and one statement
over the unix socket in <socket dir>. Answers JSON with what the driver returned; nothing touches the database
outside a request. Prints ``ready port=<port>`` once listening on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Callable
from typing import Any

from skywalking import agent
from tests.plugins.apps.front import serve_json

agent.start()

PORT, SOCKET_DIR, DATABASE = int(sys.argv[1]), sys.argv[2], sys.argv[3]
LONG = "SELECT 1 -- " + "x" * 3000  # longer than db.statement keeps
CREATE = "CREATE TEMP TABLE sw_items (id int PRIMARY KEY, name text)"


def run_psycopg2() -> dict[str, Any]:
    import psycopg2
    import psycopg2.errors
    import psycopg2.extensions
    import psycopg2.extras
    import psycopg2.pool

    out: dict[str, Any] = {}
    conn = psycopg2.connect(host="127.0.0.1", port=PORT, dbname=DATABASE, user="postgres")
    psycopg2.extras.register_uuid(None, conn)  # rejects proxies: the connection must stay a real one
    cur = conn.cursor()
    psycopg2.extensions.register_type(psycopg2.extensions.UNICODE, cur)
    cur.execute(CREATE)
    cur.executemany("INSERT INTO sw_items VALUES (%s, %s)", [(1, "a"), (2, "b")])
    cur.execute("SELECT name FROM sw_items WHERE id = %s", (2,))
    out["select"] = cur.fetchone()[0]
    dict_cur = conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor)
    dict_cur.execute("SELECT id, name FROM sw_items ORDER BY id")
    out["dict"] = dict_cur.fetchall()
    cur.callproc("upper", ["abc"])
    out["callproc"] = cur.fetchone()[0]
    cur.execute("SELECT %s::uuid", (uuid.UUID(int=7),))
    out["uuid_type"] = type(cur.fetchone()[0]).__name__
    cur.execute(LONG)
    try:
        cur.execute("SELECT * FROM sw_missing")
    except psycopg2.errors.UndefinedTable as e:
        out["error"] = type(e).__name__
    conn.rollback()
    conn.close()
    unix = psycopg2.connect(host=SOCKET_DIR, port=PORT, dbname=DATABASE, user="postgres")
    with unix.cursor() as ucur:
        ucur.execute("SELECT 1")
    unix.close()
    pool = psycopg2.pool.SimpleConnectionPool(1, 2, host="127.0.0.1", port=PORT, dbname=DATABASE, user="postgres")
    pooled = pool.getconn()
    with pooled.cursor() as pcur:
        pcur.execute("SELECT 2")
        out["pool"] = pcur.fetchone()[0]
    pool.putconn(pooled)
    pool.closeall()
    return out


def run_psycopg() -> dict[str, Any]:
    import psycopg
    import psycopg.errors
    import psycopg_pool
    from psycopg import sql

    out: dict[str, Any] = {}
    info = f"host=127.0.0.1 port={PORT} dbname={DATABASE} user=postgres"
    with psycopg.connect(info) as conn, psycopg.connect(info) as other:
        conn.execute(CREATE)
        cur = conn.cursor()
        cur.executemany("INSERT INTO sw_items VALUES (%s, %s)", [(1, "a"), (2, "b")])
        cur.execute("SELECT name FROM sw_items WHERE id = %s", (2,))
        out["select"] = cur.fetchone()[0]
        conn.commit()
        rows = []
        for row in cur.stream("SELECT id FROM sw_items ORDER BY id"):
            rows.append(row[0])
            if len(rows) == 1:  # the stream's span is not the active one: this call gets its own span
                other.execute("SELECT 3")
        out["stream"] = rows
        cur.execute(sql.SQL("SELECT {} FROM sw_items WHERE id = 1").format(sql.Identifier("name")))
        out["composed"] = cur.fetchone()[0]
        with conn.cursor(name="sw_named") as named:
            named.execute("SELECT id FROM sw_items ORDER BY id")
            out["named"] = [r[0] for r in named.fetchall()]
        try:
            cur.execute("SELECT * FROM sw_missing")
        except psycopg.errors.UndefinedTable as e:
            out["error"] = type(e).__name__
        conn.rollback()
    with psycopg.connect(f"host={SOCKET_DIR} port={PORT} dbname={DATABASE} user=postgres") as unix:
        unix.execute("SELECT 1")
    with psycopg_pool.ConnectionPool(info, min_size=1, max_size=1, open=True) as pool, pool.connection() as pooled:
        out["pool"] = pooled.execute("SELECT 4").fetchone()[0]

    async def run_async() -> None:
        async with await psycopg.AsyncConnection.connect(info) as aconn:
            acur = aconn.cursor()
            await acur.execute("SELECT %s::int", (5,))
            out["async"] = (await acur.fetchone())[0]
            out["async_stream"] = [r[0] async for r in acur.stream("SELECT generate_series(1, 3)")]
            try:
                await acur.execute("SELECT * FROM sw_missing")
            except psycopg.errors.UndefinedTable as e:
                out["async_error"] = type(e).__name__

    asyncio.run(run_async())
    return out


def run_asyncpg() -> dict[str, Any]:
    import asyncpg

    async def run() -> dict[str, Any]:
        out: dict[str, Any] = {}
        con = await asyncpg.connect(host="127.0.0.1", port=PORT, user="postgres", database=DATABASE)
        await con.execute(CREATE)
        await con.executemany("INSERT INTO sw_items VALUES ($1, $2)", [(1, "a"), (2, "b")])
        out["fetch"] = [dict(r) for r in await con.fetch("SELECT id, name FROM sw_items WHERE id >= $1", 1)]
        out["fetchrow"] = (await con.fetchrow("SELECT name FROM sw_items WHERE id = $1", 2))["name"]
        out["fetchval"] = await con.fetchval("SELECT count(*) FROM sw_items")
        stmt = await con.prepare("SELECT name FROM sw_items WHERE id = $1")
        out["prepared"] = await stmt.fetchval(1)
        async with con.transaction():
            out["cursor_iter"] = [r["id"] async for r in con.cursor("SELECT id FROM sw_items ORDER BY id")]
            cursor = await con.cursor("SELECT id FROM sw_items ORDER BY id")
            out["cursor_fetch"] = [r["id"] for r in await cursor.fetch(1)]
        try:
            await con.fetch("SELECT * FROM sw_missing")
        except asyncpg.UndefinedTableError as e:
            out["error"] = type(e).__name__
        await con.close()
        unix = await asyncpg.connect(host=SOCKET_DIR, port=PORT, user="postgres", database=DATABASE)
        await unix.execute("SELECT 1")
        await unix.close()
        pool = await asyncpg.create_pool(host="127.0.0.1", port=PORT, user="postgres", database=DATABASE,
                                         min_size=1, max_size=1)
        async with pool.acquire() as pooled:
            out["pool"] = await pooled.fetchval("SELECT 6")
        await pool.close()
        return out

    return asyncio.run(run())


RUNS: dict[str, Callable[[], dict[str, Any]]] = {
    "/psycopg2": run_psycopg2, "/psycopg": run_psycopg, "/asyncpg": run_asyncpg}


def main() -> None:
    serve_json(lambda path: RUNS[path]())


if __name__ == "__main__":
    main()
