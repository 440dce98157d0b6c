"""A service for the MySQL plugin tests (sw_pymysql, sw_mysqlclient), traced by the agent (SW_* variables).

``mysql_app.py <pymysql|mysqlclient> <port> <user> <password> <database> <other database>``: an ``http.server``
handler against the MariaDB server on 127.0.0.1:<port>, through PyMySQL or mysqlclient (``MySQLdb``).

* ``GET /mysql``, on a new connection: INSERT with parameters, ``executemany`` INSERT (sent as one multi-row
  statement), ``executemany`` UPDATE (one statement per row), SELECT with a mapping, a statement longer than the
  ``db.statement`` tag with a long parameter, SELECT from a table that does not exist (fails), ``select_db`` of
  the other database and ``SELECT DATABASE()``.
* ``GET /reuse``: a count on the one pooled connection made at start (outside any request) and kept.

The table ``sw_<library>`` is made (empty) by the test's server; nothing runs a statement outside a request.
Answers JSON. Prints ``ready port=<port>`` once listening on 127.0.0.1.
"""

from __future__ import annotations

import queue
import sys
from typing import Any

from skywalking import agent
from tests.plugins.apps.front import serve_json

agent.start()

LIBRARY, PORT, USER, PASSWORD, DATABASE, OTHER = sys.argv[1], int(sys.argv[2]), *sys.argv[3:7]
if LIBRARY == "pymysql":
    import pymysql as driver  # after the agent: patched on import
else:
    import MySQLdb as driver  # type: ignore[no-redef]

TABLE = f"sw_{LIBRARY}"
LONG_SQL = "SELECT %s AS v /* " + "x" * 3000 + " */"


def connect() -> Any:
    return driver.connect(host="127.0.0.1", port=PORT, user=USER, password=PASSWORD, database=DATABASE)


def make_pool() -> queue.Queue[Any]:
    pool: queue.Queue[Any] = queue.Queue()
    pool.put(connect())  # connecting runs no cursor statement: nothing is traced here
    return pool


POOL = make_pool()


def statements() -> dict[str, Any]:
    conn = connect()
    out: dict[str, Any] = {}
    try:
        cur = conn.cursor()
        cur.execute(f"INSERT INTO {TABLE} (name, qty) VALUES (%s, %s)", ("apple", 3))
        cur.executemany(f"INSERT INTO {TABLE} (name, qty) VALUES (%s, %s)", [("pear", 1), ("plum", 2)])
        cur.executemany(f"UPDATE {TABLE} SET qty = qty + %s WHERE name = %s", [(10, "pear"), (20, "plum")])
        conn.commit()
        cur.execute(f"SELECT name, qty FROM {TABLE} WHERE qty > %(least)s ORDER BY name", {"least": 2})
        out["rows"] = [list(row) for row in cur.fetchall()]
        cur.execute(LONG_SQL, ("v" * 50,))
        out["long"] = len(cur.fetchone()[0])
        try:
            cur.execute("SELECT * FROM no_such_table")
        except driver.ProgrammingError as e:
            out["error"] = [type(e).__name__, e.args[0]]
        conn.select_db(OTHER)
        cur.execute("SELECT DATABASE()")
        out["database"] = cur.fetchone()[0]
    finally:
        conn.close()
    return out


def reuse() -> dict[str, Any]:
    conn = POOL.get()
    try:
        cur = conn.cursor()
        cur.execute(f"SELECT COUNT(*) FROM {TABLE}")
        count = cur.fetchone()[0]
        conn.commit()  # a fresh snapshot for the next request
        return {"count": count}
    finally:
        POOL.put(conn)


def main() -> None:
    serve_json(lambda path: statements() if path == "/mysql" else reuse())


if __name__ == "__main__":
    main()
