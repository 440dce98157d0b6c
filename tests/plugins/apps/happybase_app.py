"""A service for the sw_happybase test, traced by the agent (configured by SW_* variables).

``happybase_app.py <port>``: an ``http.server`` handler whose ``GET /hbase`` runs, with happybase against the HBase
Thrift gateway on 127.0.0.1:<port> (table prefix ``sw``): ``create_table`` of ``users``, two ``put``s, ``row``,
``rows``, ``cells``, a ``scan`` read to its end, a ``scan`` closed after its first row, ``delete``, then ``row`` on
a table that does not exist (fails with the gateway's ``IOError``). Answers JSON; nothing touches HBase outside a
request. Prints ``ready port=<port>`` once listening on 127.0.0.1.
"""

from __future__ import annotations

import sys
from typing import Any

from skywalking import agent
from tests.plugins.apps.front import serve_json

agent.start()

import happybase  # noqa: E402  (after the agent: patched on import)

PORT = int(sys.argv[1])


def run() -> dict[str, Any]:
    connection = happybase.Connection("127.0.0.1", PORT, table_prefix="sw")
    out: dict[str, Any] = {}
    try:
        if b"users" not in connection.tables():
            connection.create_table("users", {"cf": {}})
        table = connection.table("users")
        table.put(b"u1", {b"cf:name": b"ann"})
        table.put("u2", {b"cf:name": b"bob"})
        out["row"] = table.row(b"u1")[b"cf:name"].decode()
        out["rows"] = [key.decode() for key, _ in table.rows([b"u2", b"u1"])]
        out["cells"] = [v.decode() for v in table.cells(b"u1", b"cf:name")]
        out["scan"] = [key.decode() for key, _ in table.scan(row_start=b"u1", batch_size=1)]
        scan = table.scan(row_prefix=b"u")
        out["first"] = next(scan)[0].decode()
        scan.close()
        table.delete(b"u1")
        try:
            connection.table("missing").row(b"u1")
        except Exception as e:  # Hbase_thrift.IOError, as the gateway sent it
            out["error"] = f"{type(e).__module__}.{type(e).__name__}"
    finally:
        connection.close()
    return out


def main() -> None:
    serve_json(lambda path: run())


if __name__ == "__main__":
    main()
