"""company-skywalking: SkyWalking Python agent speaking sw6 (OAP 6.6.0) and sw8.

Public enums kept from upstream ``apache-skywalking``: ``Layer``, ``Kind``, ``Component``,
and the span-log records ``Log`` / ``LogItem``.
"""

from __future__ import annotations

import time
from enum import Enum
from typing import NamedTuple

__distribution__ = "company-skywalking"
__version__ = "0.1.0"


class Component(Enum):
    """Component ids. The OAP resolves names from these ids (component-libraries.yml)."""

    Unknown = 0
    General = 7000  # "Python" in OAP 8+; OAP 6.6.0 knows no Python ids and shows them as N/A
    Flask = 7001
    Requests = 7002
    PyMysql = 7003
    Django = 7004
    Tornado = 7005
    Redis = 7
    MongoDB = 9
    Urllib3 = 7006
    Sanic = 7007
    AioHttp = 7008
    Pyramid = 7009
    Psycopg = 7010
    Celery = 7011
    Falcon = 7012
    MysqlClient = 7013
    FastAPI = 7014
    Bottle = 7015
    AsyncPG = 7016
    AIORedis = 7017
    Websockets = 7018
    HTTPX = 7019
    Ray = 7020
    PostgreSQL = 22
    Grpc = 23
    KafkaProducer = 40
    KafkaConsumer = 41
    Elasticsearch = 47
    RabbitmqProducer = 52
    RabbitmqConsumer = 53
    PulsarProducer = 73
    PulsarConsumer = 74
    HBase = 94
    Neo4j = 112


class Layer(Enum):
    Unknown = 0
    Database = 1
    RPCFramework = 2
    Http = 3
    MQ = 4
    Cache = 5


class Kind(Enum):
    Local = 0
    Entry = 1
    Exit = 2

    @property
    def is_local(self) -> bool:
        return self is Kind.Local

    @property
    def is_entry(self) -> bool:
        return self is Kind.Entry

    @property
    def is_exit(self) -> bool:
        return self is Kind.Exit


class LogItem(NamedTuple):
    key: str
    val: str


class Log:
    """A timestamped list of ``LogItem`` attached to a span (epoch milliseconds)."""

    __slots__ = ("items", "timestamp")

    def __init__(self, timestamp: int | None = None, items: list[LogItem] | None = None) -> None:
        # upstream evaluated the default timestamp once at import; we take it at call time
        self.timestamp = time.time_ns() // 1_000_000 if timestamp is None else int(timestamp)
        self.items = items if items is not None else []

    def __repr__(self) -> str:
        return f"Log(timestamp={self.timestamp}, items={self.items!r})"
