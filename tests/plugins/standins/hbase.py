"""A protocol stand-in for the HBase Thrift gateway (Thrift 1, ``Hbase.thrift``): a real Thrift server built with
thriftpy2 from the IDL that happybase ships, buffered transport and binary protocol (happybase's defaults), on
127.0.0.1:<free port>, over in-memory tables.

Implemented calls: ``getTableNames``, ``createTable``, ``deleteTable``, ``enableTable``, ``disableTable``,
``isTableEnabled``, ``getColumnDescriptors``, ``mutateRow``, ``mutateRows``, ``getRowWithColumns``,
``getRowsWithColumns``, ``getVer``, ``deleteAllRow``, ``scannerOpenWithScan``, ``scannerGetList``,
``scannerClose``. As the real gateway: a call on a table that does not exist raises ``IOError`` ("table not
found"), creating one that exists raises ``AlreadyExists``, a column without a known family ``IOError``, an
unknown scanner ``IllegalArgument``. ``Handler.delay`` (seconds) holds back the
answer of every call but ``scannerClose``, for span timing tests."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import thriftpy2.server
from thriftpy2.thrift import TProcessor
from thriftpy2.transport import TServerSocket

from tests.plugins.standins.serving import ThreadServer, hang_up, serve_connections, serve_until_interrupted


def _idl() -> Any:
    """The ``Hbase_thrift`` module happybase loads from its ``Hbase.thrift`` (the same classes as the client's)."""
    import happybase  # noqa: F401  (loads Hbase.thrift as the module Hbase_thrift)
    import Hbase_thrift  # type: ignore[import-not-found]

    return Hbase_thrift


class _Table:
    def __init__(self, families: list[Any]) -> None:
        self.families = {bytes(f.name).rstrip(b":"): f for f in families}
        self.rows: dict[bytes, dict[bytes, list[tuple[int, bytes]]]] = {}  # row -> column -> [(ts, value)] newest first
        self.enabled = True


class Handler:
    """The ``Hbase`` service over in-memory tables."""

    def __init__(self, idl: Any) -> None:
        self.idl = idl
        self.tables: dict[bytes, _Table] = {}
        self.scanners: dict[int, list[Any]] = {}
        self.ids = itertools.count(1)
        self.lock = threading.Lock()
        self.delay = 0.0

    # -- helpers ------------------------------------------------------------------------------------------------

    def _wait(self) -> None:
        if self.delay:
            time.sleep(self.delay)

    def _table(self, name: bytes) -> _Table:
        self._wait()
        table = self.tables.get(bytes(name))
        if table is None:
            raise self.idl.IOError(message=f"org.apache.hadoop.hbase.TableNotFoundException: {name.decode()}")
        return table

    def _result(self, row: bytes, cells: dict[bytes, list[tuple[int, bytes]]], columns: list[bytes] | None) -> Any:
        picked = {c: v for c, v in cells.items() if _wanted(c, columns) and v}
        return self.idl.TRowResult(
            row=row,
            columns={c: self.idl.TCell(value=v[0][1], timestamp=v[0][0]) for c, v in picked.items()},
            sortedColumns=[self.idl.TColumn(columnName=c, cell=self.idl.TCell(value=v[0][1], timestamp=v[0][0]))
                           for c, v in sorted(picked.items())])

    def _mutate(self, table: _Table, row: bytes, mutations: list[Any], ts: int | None = None) -> None:
        ts = ts if ts is not None else time.time_ns() // 1_000_000
        for m in mutations:
            column = bytes(m.column)
            if column.split(b":", 1)[0] not in table.families:
                raise self.idl.IOError(message=f"NoSuchColumnFamilyException: {column.decode()}")
        cells = table.rows.setdefault(bytes(row), {})
        for m in mutations:
            column = bytes(m.column)
            if m.isDelete:
                if b":" in column and not column.endswith(b":"):
                    cells.pop(column, None)
                else:
                    for c in [c for c in cells if c.split(b":", 1)[0] == column.rstrip(b":")]:
                        del cells[c]
            else:
                versions = cells.setdefault(column, [])
                versions.insert(0, (ts, bytes(m.value)))
        if not cells:
            table.rows.pop(bytes(row), None)

    # -- tables ---------------------------------------------------------------------------------------------------

    def getTableNames(self) -> list[bytes]:
        self._wait()
        return sorted(self.tables)

    def createTable(self, tableName: bytes, columnFamilies: list[Any]) -> None:
        self._wait()
        with self.lock:
            if bytes(tableName) in self.tables:
                raise self.idl.AlreadyExists(message=f"table {tableName.decode()} exists")
            if not columnFamilies:
                raise self.idl.IllegalArgument(message="a table needs at least one column family")
            self.tables[bytes(tableName)] = _Table(columnFamilies)

    def deleteTable(self, tableName: bytes) -> None:
        with self.lock:
            table = self._table(tableName)
            if table.enabled:
                raise self.idl.IOError(message=f"TableNotDisabledException: {tableName.decode()}")
            del self.tables[bytes(tableName)]

    def enableTable(self, tableName: bytes) -> None:
        self._table(tableName).enabled = True

    def disableTable(self, tableName: bytes) -> None:
        self._table(tableName).enabled = False

    def isTableEnabled(self, tableName: bytes) -> bool:
        return self._table(tableName).enabled

    def getColumnDescriptors(self, tableName: bytes) -> dict[bytes, Any]:
        return {name + b":": f for name, f in self._table(tableName).families.items()}

    # -- rows -------------------------------------------------------------------------------------------------------

    def mutateRow(self, tableName: bytes, row: bytes, mutations: list[Any], attributes: Any) -> None:
        with self.lock:
            self._mutate(self._table(tableName), row, mutations)

    def mutateRows(self, tableName: bytes, rowBatches: list[Any], attributes: Any) -> None:
        with self.lock:
            table = self._table(tableName)
            for batch in rowBatches:
                self._mutate(table, batch.row, batch.mutations)

    def deleteAllRow(self, tableName: bytes, row: bytes, attributes: Any) -> None:
        with self.lock:
            self._table(tableName).rows.pop(bytes(row), None)

    def getRowWithColumns(self, tableName: bytes, row: bytes, columns: list[bytes] | None,
                          attributes: Any) -> list[Any]:
        return self.getRowsWithColumns(tableName, [row], columns, attributes)

    def getRowsWithColumns(self, tableName: bytes, rows: list[bytes], columns: list[bytes] | None,
                           attributes: Any) -> list[Any]:
        with self.lock:
            table = self._table(tableName)
            found = [(bytes(r), table.rows.get(bytes(r))) for r in rows]
            return [self._result(r, cells, columns) for r, cells in found if cells]

    def getVer(self, tableName: bytes, row: bytes, column: bytes, numVersions: int, attributes: Any) -> list[Any]:
        with self.lock:
            versions = self._table(tableName).rows.get(bytes(row), {}).get(bytes(column), [])
            return [self.idl.TCell(value=v, timestamp=ts) for ts, v in versions[:numVersions]]

    # -- scanners ---------------------------------------------------------------------------------------------------

    def scannerOpenWithScan(self, tableName: bytes, scan: Any, attributes: Any) -> int:
        with self.lock:
            table = self._table(tableName)
            start, stop = bytes(scan.startRow or b""), scan.stopRow
            keys = sorted(table.rows, reverse=bool(scan.reversed))
            if scan.reversed:
                picked = [k for k in keys if (not start or k <= start) and (stop is None or k > bytes(stop))]
            else:
                picked = [k for k in keys if k >= start and (stop is None or k < bytes(stop))]
            results = [self._result(k, table.rows[k], scan.columns) for k in picked]
            scanner = next(self.ids)
            self.scanners[scanner] = [r for r in results if r.columns]
            return scanner

    def scannerGetList(self, id: int, nbRows: int) -> list[Any]:
        self._wait()
        with self.lock:
            if id not in self.scanners:
                raise self.idl.IllegalArgument(message=f"unknown scanner id {id}")
            rows = self.scanners[id]
            batch, self.scanners[id] = rows[:nbRows], rows[nbRows:]
            return batch

    def scannerClose(self, id: int) -> None:
        with self.lock:
            if self.scanners.pop(id, None) is None:
                raise self.idl.IllegalArgument(message=f"unknown scanner id {id}")


def _wanted(column: bytes, columns: list[bytes] | None) -> bool:
    if not columns:
        return True
    family = column.split(b":", 1)[0]
    return any(bytes(c) == column or bytes(c).rstrip(b":") == family and b":" not in bytes(c).rstrip(b":")
               for c in columns)


class HBaseStandIn(ThreadServer):
    """The Thrift gateway on 127.0.0.1:<port> (a free one by default), serving in daemon threads; stop() ends it."""

    thread_name = "hbase-standin"

    def __init__(self, port: int = 0) -> None:
        idl = _idl()
        self.handler = Handler(idl)
        self._trans = TServerSocket(host="127.0.0.1", port=port, client_timeout=None)
        self._trans.listen()
        self.port: int = self._trans.sock.getsockname()[1]
        self._server = thriftpy2.server.TThreadedServer(TProcessor(idl.Hbase, self.handler), self._trans,
                                                        daemon=True)
        self.start()

    def serve(self) -> None:
        serve_connections(self._trans.accept, self._server.handle, "hbase-standin-conn")

    def close(self) -> None:
        self._server.closed = True
        hang_up(self._trans.sock)
        self._trans.close()


if __name__ == "__main__":  # serve until interrupted, printing ``ready port=<port>``
    serve_until_interrupted(HBaseStandIn())
