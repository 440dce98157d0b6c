"""Component names OAP 6.6.0 knows (its component-libraries.yml), for the component-string rule
(docs/protocol/sw6.md §8.6)."""

from __future__ import annotations

# id 0 is the built-in "N/A"; it maps to 0, which the OAP treats as "not exchanged" (docs/protocol/sw6.md §8.6).
_JAVA = (
    "Tomcat HttpClient Dubbo H2 Mysql ORACLE Redis Motan MongoDB Resin Feign OKHttp SpringRestTemplate SpringMVC "
    "Struts2 NutzMVC NutzHttp JettyClient JettyServer Memcached ShardingJDBC PostgreSQL GRPC ElasticJob RocketMQ "
    "httpasyncclient Kafka ServiceComb Hystrix Jedis SQLite h2-jdbc-driver mysql-connector-java ojdbc Spymemcached "
    "Xmemcached postgresql-jdbc-driver rocketMQ-producer rocketMQ-consumer kafka-producer kafka-consumer "
    "mongodb-driver SOFARPC ActiveMQ activemq-producer activemq-consumer Elasticsearch transport-client http rpc "
    "RabbitMQ rabbitmq-producer rabbitmq-consumer Canal Gson Redisson Lettuce Zookeeper Vertx ShardingSphere "
    "spring-cloud-gateway RESTEasy SolrJ Solr SpringAsync JdkHttp spring-webflux Play cassandra-java-driver "
    "Cassandra Light4J Pulsar pulsar-producer pulsar-consumer Ehcache SocketIO rest-high-level-client spring-tx "
    "Armeria JdkThreading"
).split()
_CSHARP = (
    "AspNetCore EntityFrameworkCore SqlClient CAP StackExchange.Redis SqlServer Npgsql MySqlConnector "
    "EntityFrameworkCore.InMemory EntityFrameworkCore.SqlServer EntityFrameworkCore.Sqlite "
    "Pomelo.EntityFrameworkCore.MySql Npgsql.EntityFrameworkCore.PostgreSQL InMemoryDatabase AspNet SmartSql"
).split()
_NODE = "HttpServer express Egg Koa".split()
_GO = "ServiceCombMesher ServiceCombServiceCenter".split()


def _build() -> dict[str, int]:
    table = {"N/A": 0}
    for base, names in ((1, _JAVA), (3001, _CSHARP), (4001, _NODE), (5001, _GO)):
        for offset, name in enumerate(names):
            table[name] = base + offset
    return table


#: name -> id, exactly as OAP 6.6.0 resolves a ``SpanObjectV2.component`` string (case-sensitive).
COMPONENT_IDS: dict[str, int] = _build()
#: id -> name; ids missing here are shown as "N/A" by the OAP.
COMPONENT_NAMES: dict[int, str] = {v: k for k, v in COMPONENT_IDS.items()}


def component_name(component_id: int) -> str:
    """The name OAP 6.6.0 shows for an integer component id (unknown ids read as N/A)."""
    return COMPONENT_NAMES.get(component_id, "N/A")
