"""Every public name of upstream ``apache-skywalking`` 1.2.0's modules imports from ours (the list is upstream's
public API as docs/compat.md describes it): a service switched from upstream fails at no import."""

from __future__ import annotations

import importlib

import pytest

TAGS = ("Tag", "TagHttpMethod", "TagHttpURL", "TagHttpStatusCode", "TagHttpStatusMsg", "TagHttpParams", "TagDbType",
        "TagDbInstance", "TagDbStatement", "TagDbSqlParameters", "TagCacheType", "TagCacheOp", "TagCacheCmd",
        "TagCacheKey", "TagMqBroker", "TagMqTopic", "TagMqQueue", "TagCeleryParameters", "TagGrpcMethod",
        "TagGrpcUrl", "TagGrpcStatusCode")

UPSTREAM: dict[str, tuple[str, ...]] = {
    "skywalking": ("Component", "Layer", "Kind", "LogItem", "Log"),
    "skywalking.agent": ("agent", "start", "stop", "started", "SkyWalkingAgent", "SkyWalkingAgentAsync",
                         "report_with_backoff", "report_with_backoff_async"),
    "skywalking.config": ("init", "finalize", "finalize_feature", "finalize_name", "finalize_regex", "options",
                          "options_with_default_value_and_type", "ignore_http_method_check",
                          "ignore_grpc_method_check", "RE_IGNORE_PATH", "RE_HTTP_IGNORE_METHOD",
                          "RE_GRPC_IGNORED_METHODS", "agent_name", "agent_collector_backend_services", "agent_protocol",
                          "agent_log_reporter_active", "agent_meter_reporter_active", "agent_profile_active"),
    "skywalking.trace": ("ID",),
    "skywalking.trace.context": ("get_context", "SpanContext", "NoopContext", "PrimaryEndpoint"),
    "skywalking.trace.span": ("Span", "EntrySpan", "ExitSpan", "NoopSpan"),
    "skywalking.trace.segment": ("Segment", "SegmentRef", "NoopSegment"),
    "skywalking.trace.snapshot": ("Snapshot",),
    "skywalking.trace.carrier": ("CarrierItem", "Carrier", "SW8CorrelationCarrier"),
    "skywalking.trace.tags": TAGS,
    "skywalking.decorators": ("trace", "runnable"),
    "skywalking.meter": ("init", "init_async"),
    "skywalking.meter.counter": ("Counter", "CounterMode"),
    "skywalking.meter.gauge": ("Gauge",),
    "skywalking.meter.histogram": ("Histogram",),
    "skywalking.meter.meter": ("BaseMeter", "MeterId", "MeterTag", "MeterType"),
    "skywalking.meter.meter_service": ("MeterService", "MeterServiceAsync"),
    "skywalking.meter.pvm": (),
    "skywalking.log": ("sw_logging", "formatter"),
    "skywalking.log.sw_logging": ("install",),
    "skywalking.log.formatter": ("SWFormatter",),
    "skywalking.loggings": ("logger", "getLogger", "init"),
    "skywalking.plugins": ("install", "pkg_version_check", "check"),
    "skywalking.sampling": ("init", "init_async", "sampling_service"),
    "skywalking.utils.filter": ("sw_urlparse", "sw_filter", "sw_traceback"),
    "sw_python": (),
}


@pytest.mark.parametrize("module", sorted(UPSTREAM))
def test_every_upstream_public_name_imports(module: str) -> None:
    mod = importlib.import_module(module)
    missing = [name for name in UPSTREAM[module] if not hasattr(mod, name)]
    assert not missing, f"{module} lacks {missing}"
