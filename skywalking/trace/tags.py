"""Span tags. A tag is a key and a string value; subclass ``Tag`` with your own ``key``."""

from __future__ import annotations


class Tag:
    key: str = ""
    overridable: bool = True  # a later tag with the same key replaces it

    __slots__ = ("val",)

    def __init__(self, val: object) -> None:
        self.val = val if type(val) is str else str(val)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.key}={self.val!r})"


def _tag(name: str, key: str, overridable: bool = True) -> type[Tag]:
    return type(name, (Tag,), {"key": key, "overridable": overridable, "__slots__": ()})


TagHttpMethod = _tag("TagHttpMethod", "http.method")
TagHttpURL = _tag("TagHttpURL", "http.url")
TagHttpStatusCode = _tag("TagHttpStatusCode", "http.status_code")
TagHttpStatusMsg = _tag("TagHttpStatusMsg", "http.status_msg")
TagHttpParams = _tag("TagHttpParams", "http.params")
TagDbType = _tag("TagDbType", "db.type")
TagDbInstance = _tag("TagDbInstance", "db.instance")
TagDbStatement = _tag("TagDbStatement", "db.statement")
TagDbSqlParameters = _tag("TagDbSqlParameters", "db.sql.parameters", overridable=False)
TagCacheType = _tag("TagCacheType", "cache.type")
TagCacheOp = _tag("TagCacheOp", "cache.op")
TagCacheCmd = _tag("TagCacheCmd", "cache.cmd")
TagCacheKey = _tag("TagCacheKey", "cache.key")
TagMqBroker = _tag("TagMqBroker", "mq.broker")
TagMqTopic = _tag("TagMqTopic", "mq.topic")
TagMqQueue = _tag("TagMqQueue", "mq.queue")
TagCeleryParameters = _tag("TagCeleryParameters", "celery.parameters")
TagGrpcMethod = _tag("TagGrpcMethod", "grpc.method")
TagGrpcUrl = _tag("TagGrpcUrl", "grpc.url")
TagGrpcStatusCode = _tag("TagGrpcStatusCode", "grpc.status_code")
