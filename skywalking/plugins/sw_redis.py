"""``redis`` (redis-py 4.2+, sync and ``redis.asyncio``): an exit span ``Redis/<COMMAND>`` around
``Redis.execute_command``, and one span ``Redis/MULTI`` (transaction) or ``Redis/PIPELINE`` around
``Pipeline.execute``; commands a pipeline sends at once (``WATCH`` and those before ``multi()``) get their own span.
A span covers the whole call: taking a connection, sending, reading the reply, retries. Peer = ``host:port``
of the client's connection pool (the socket path for a unix socket), layer Cache, component Redis (7); tags
``cache.type``, ``cache.cmd``, ``cache.key`` (first argument), ``cache.op`` (``read``/``write`` when known)
and ``db.instance`` (database number); a pipeline span lists its command names in ``db.statement``.
A command that raises marks its span as an error. Redis Cluster clients and ``PubSub`` objects are not traced."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from skywalking import Component, Layer
from skywalking.loggings import logger
from skywalking.plugins import Plugin
from skywalking.plugins._peer import host_port
from skywalking.trace.context import get_context, inside_exit_span
from skywalking.trace.span import Span
from skywalking.trace.tags import TagCacheCmd, TagCacheKey, TagCacheOp, TagCacheType, TagDbInstance, TagDbStatement

# commands that only read data, and commands that change it (pops included); others get no cache.op
_READ = frozenset("""
    GET MGET GETRANGE SUBSTR STRLEN GETBIT BITCOUNT BITPOS BITFIELD_RO LCS EXISTS TYPE TTL PTTL EXPIRETIME
    PEXPIRETIME TOUCH KEYS SCAN RANDOMKEY DUMP SORT_RO
    HGET HMGET HGETALL HKEYS HVALS HLEN HEXISTS HSTRLEN HSCAN HRANDFIELD HTTL HPTTL HEXPIRETIME HPEXPIRETIME
    LINDEX LLEN LRANGE LPOS
    SCARD SISMEMBER SMISMEMBER SMEMBERS SRANDMEMBER SSCAN SINTER SINTERCARD SUNION SDIFF
    ZCARD ZCOUNT ZLEXCOUNT ZSCORE ZMSCORE ZRANK ZREVRANK ZRANGE ZRANGEBYSCORE ZRANGEBYLEX ZREVRANGE
    ZREVRANGEBYSCORE ZREVRANGEBYLEX ZSCAN ZRANDMEMBER ZINTER ZUNION ZDIFF ZINTERCARD
    PFCOUNT GEOPOS GEODIST GEOHASH GEOSEARCH GEORADIUS_RO GEORADIUSBYMEMBER_RO
    XRANGE XREVRANGE XLEN XREAD XPENDING
""".split())
_WRITE = frozenset("""
    SET SETNX SETEX PSETEX MSET MSETNX APPEND SETRANGE SETBIT BITOP BITFIELD GETSET GETDEL GETEX INCR INCRBY
    INCRBYFLOAT DECR DECRBY DEL UNLINK EXPIRE PEXPIRE EXPIREAT PEXPIREAT PERSIST RENAME RENAMENX MOVE COPY RESTORE
    SORT FLUSHDB FLUSHALL
    HSET HSETNX HMSET HDEL HINCRBY HINCRBYFLOAT HGETDEL HGETEX HSETEX HEXPIRE HPEXPIRE HEXPIREAT HPEXPIREAT HPERSIST
    LPUSH LPUSHX RPUSH RPUSHX LPOP RPOP BLPOP BRPOP LSET LINSERT LREM LTRIM RPOPLPUSH BRPOPLPUSH LMOVE BLMOVE LMPOP
    BLMPOP
    SADD SREM SPOP SMOVE SINTERSTORE SUNIONSTORE SDIFFSTORE
    ZADD ZINCRBY ZREM ZREMRANGEBYRANK ZREMRANGEBYSCORE ZREMRANGEBYLEX ZPOPMIN ZPOPMAX BZPOPMIN BZPOPMAX ZMPOP
    BZMPOP ZRANGESTORE ZINTERSTORE ZUNIONSTORE ZDIFFSTORE
    PFADD PFMERGE GEOADD GEOSEARCHSTORE GEORADIUS GEORADIUSBYMEMBER
    XADD XDEL XTRIM XACK XCLAIM XAUTOCLAIM XREADGROUP XSETID
""".split())
_KEY_MAX = 256  # longer keys are cut in cache.key
_STATEMENT_MAX = 1024  # and pipeline command lists in db.statement


def _text(value: Any) -> str:
    if isinstance(value, memoryview):
        value = value.tobytes()
    return value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else str(value)


def _span(client: Any, op: str) -> Span:
    """An exit span (not started) to the server of ``client``'s connection pool."""
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", None) or {}
    host, path = kwargs.get("host"), kwargs.get("path")
    peer: str | None = None
    if host:
        peer = host_port(_text(host), kwargs.get("port", 6379))
    elif path:
        peer = _text(path)
    span = get_context().new_exit_span(op=op, peer=peer, component=Component.Redis)
    span.layer = Layer.Cache
    span.tag(TagCacheType("Redis")).tag(TagDbInstance(kwargs.get("db", 0)))
    return span


def _op_tag(names: Iterable[str]) -> str | None:
    """``write`` if any command writes, ``read`` if all of them read, else None."""
    kinds = {"write" if name in _WRITE else "read" if name in _READ else "" for name in names}
    return "write" if "write" in kinds else "read" if kinds == {"read"} else None


def _command_span(client: Any, args: tuple[Any, ...]) -> Span | None:
    """The span of ``execute_command(*args)``; None when this call is not to be traced."""
    if not args or inside_exit_span():
        return None
    try:
        cmd = _text(args[0]).upper()
        span = _span(client, f"Redis/{cmd}")
        span.tag(TagCacheCmd(cmd))
        if len(args) > 1:
            span.tag(TagCacheKey(_text(args[1])[:_KEY_MAX]))
        op = _op_tag((cmd,))
        if op:
            span.tag(TagCacheOp(op))
        return span
    except Exception:  # never into the application: run the command untraced
        logger.debug("sw_redis: no span for a command", exc_info=True)
        return None


def _pipeline_span(pipeline: Any, transaction: bool) -> Span | None:
    """The span of ``Pipeline.execute()``; None when it sends nothing or is not to be traced."""
    stack = getattr(pipeline, "command_stack", None) or []
    if (not stack and not getattr(pipeline, "watching", False)) or inside_exit_span():
        return None
    try:
        kind = "MULTI" if transaction or getattr(pipeline, "explicit_transaction", False) else "PIPELINE"
        names = [_text(entry[0][0]).upper() for entry in stack]
        span = _span(pipeline, f"Redis/{kind}")
        span.tag(TagCacheCmd(kind)).tag(TagDbStatement(" ".join(names)[:_STATEMENT_MAX]))
        op = _op_tag(names) if names else None
        if op:
            span.tag(TagCacheOp(op))
        return span
    except Exception:
        logger.debug("sw_redis: no span for a pipeline", exc_info=True)
        return None


def _execute_command(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    span = _command_span(instance, args)
    if span is None:
        return wrapped(*args, **kwargs)
    with span:
        return wrapped(*args, **kwargs)


async def _execute_command_async(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    span = _command_span(instance, args)
    if span is None:
        return await wrapped(*args, **kwargs)
    with span:
        return await wrapped(*args, **kwargs)


def _execute(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    span = _pipeline_span(instance, getattr(instance, "transaction", False))
    if span is None:
        return wrapped(*args, **kwargs)
    with span:
        return wrapped(*args, **kwargs)


async def _execute_async(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    span = _pipeline_span(instance, getattr(instance, "is_transaction", False))
    if span is None:
        return await wrapped(*args, **kwargs)
    with span:
        return await wrapped(*args, **kwargs)


class RedisPlugin(Plugin):
    name = "sw_redis"
    instruments = ("redis>=4.2",)
    modules = ("redis",)
    note = "redis-py, sync and `redis.asyncio` (`Redis.execute_command`, `Pipeline.execute`); not Redis Cluster"

    def _install(self) -> None:
        # modules by name: an import hook may run before ``redis.asyncio.client`` is set on its package
        self.wrap("redis.client", "Redis.execute_command", _execute_command)
        self.wrap("redis.client", "Pipeline.execute", _execute)
        self.wrap("redis.client", "Pipeline.immediate_execute_command", _execute_command)
        self.when_imported("redis.asyncio.client", self._install_async)

    def _install_async(self) -> None:
        self.wrap("redis.asyncio.client", "Redis.execute_command", _execute_command_async)
        self.wrap("redis.asyncio.client", "Pipeline.execute", _execute_async)
        self.wrap("redis.asyncio.client", "Pipeline.immediate_execute_command", _execute_command_async)


plugin = RedisPlugin()
