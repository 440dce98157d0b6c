"""sw6 / sw8 header codecs against the reference headers (docs/protocol/sw6.md §7.6, §7.9, §9.1)."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skywalking.trace.carrier import (
    SW6,
    SW8,
    HeaderError,
    b64decode,
    decode_correlation,
    decode_sw6,
    decode_sw8,
    encode_correlation,
    encode_sw6,
    encode_sw8,
)
from skywalking.trace.ids import ID, parse_parts

E1 = "1-My40LjU=-MS4yLjM=-4-1-1-IzEyNy4wLjAuMTo4MDgw-Iy9wb3J0YWw=-MTIz"
E2 = "1-My40LjU=-MS4yLjM=-4-1-1-IzEyNy4wLjAuMTo4MDgw--"
E3 = ("1-MS4xLjE1NDM5NzU1OTEwMTQwMDAx-MS4xLjE1NDM5NzU1OTA5OTcwMDAw-0-1-1-IzEyNy4wLjAuMTo1Mjcy-"
      "I1JhYmJpdE1RL1RvcGljL1F1ZXVlL3JhYmJpdG1xLXRlc3QvUHJvZHVjZXI=-"
      "I1JhYmJpdE1RL1RvcGljL1F1ZXVlL3JhYmJpdG1xLXRlc3QvUHJvZHVjZXI=")
E4 = "1-I0FRQSojQVFBKkV0MFdlMHRRTlFBKg==-MS4yMzQuMTEx-3-1-1-IzE5Mi4xNjguMS44OjE4MDAy-Iy9wb3J0YWwv-Iy90ZXN0RW50cnlTcGFu"
E5 = ("1-MTU1NTY0NDg4Mjk2Nzg2ODAwMC4wLjU5NDYzNzUyMDYzMzg3NDkwODc=-"
      "NS4xNTU1NjQ0ODgyOTY3ODg5MDAwLjM3NzUyMjE1NzQ0Nzk0NjM3NTg=-1-2-3-I2NvbS5oZWxsby5IZWxsb1dvcmxk-"
      "Iy9yZXN0L2Fh-Iy9nYXRld2F5L2Nj")
E6 = "1-Mi40NS4xNTc3MDAwMDAwMDAwMDAwMQ==-Mi40NS4xNTc3MDAwMDAwMDAwMDAwMA==-1-2-2-IzEwLjAuMC41OjgwODA=-LTE=-LTE="


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def fields(h: SW6) -> tuple[object, ...]:
    return (h.sample, h.trace_id.value, h.segment_id.value, h.span_id, h.parent_instance_id, h.entry_instance_id,
            h.peer, h.entry_endpoint, h.parent_endpoint)


def test_e1_decodes_and_reencodes_byte_for_byte() -> None:
    h = decode_sw6(E1)
    assert fields(h) == (1, "3.4.5", "1.2.3", 4, 1, 1, "#127.0.0.1:8080", "#/portal", "123")
    assert h.trace_id.parts == (3, 4, 5)
    assert encode_sw6(h) == E1


def test_e3_rabbitmq_java_ids() -> None:
    h = decode_sw6(E3)
    assert fields(h) == (1, "1.1.15439755910140001", "1.1.15439755909970000", 0, 1, 1, "#127.0.0.1:5272",
                         "#RabbitMQ/Topic/Queue/rabbitmq-test/Producer", "#RabbitMQ/Topic/Queue/rabbitmq-test/Producer")


def test_e5_go2sky_ids() -> None:
    h = decode_sw6(E5)
    assert fields(h) == (1, "1555644882967868000.0.5946375206338749087", "5.1555644882967889000.3775221574479463758",
                         1, 2, 3, "#com.hello.HelloWorld", "#/rest/aa", "#/gateway/cc")


def test_e6_no_entry_endpoint_reencodes_byte_for_byte() -> None:
    h = decode_sw6(E6)
    assert fields(h) == (1, "2.45.15770000000000001", "2.45.15770000000000000", 1, 2, 2, "#10.0.0.5:8080",
                         "-1", "-1")
    assert encode_sw6(h) == E6
    built = SW6(ID("2.45.15770000000000001", (2, 45, 15770000000000001)),
                ID("2.45.15770000000000000", (2, 45, 15770000000000000)), 1, 2, 2, "#10.0.0.5:8080")
    assert encode_sw6(built) == E6


def test_e2_empty_endpoints_are_accepted_as_no_endpoint() -> None:
    # Java accepts this form, then NPEs on the next inject (docs/protocol/sw6.md §7.4); we read "no real endpoint" (-1)
    h = decode_sw6(E2)
    assert (h.entry_endpoint, h.parent_endpoint) == ("-1", "-1")
    assert "--" not in encode_sw6(h)


def test_e4_non_numeric_trace_id_is_refused() -> None:
    # Java 6.6.0 turns it into trace 0.0.0, merging unrelated requests; we start a new trace
    with pytest.raises(HeaderError, match="trace id"):
        decode_sw6(E4)


def test_seven_field_short_form_is_read_with_no_endpoints() -> None:
    h = decode_sw6("1-My40LjU=-MS4yLjM=-4-1-1-IzEyNy4wLjAuMTo4MDgw")
    assert fields(h)[:7] == (1, "3.4.5", "1.2.3", 4, 1, 1, "#127.0.0.1:8080")
    assert (h.entry_endpoint, h.parent_endpoint) == ("-1", "-1")


def test_sample_flag_zero_is_read_but_still_traced() -> None:
    h = decode_sw6("0" + E1[1:])
    assert h.sample == 0


def test_lenient_base64_like_java() -> None:
    assert b64decode("My40LjU") == "3.4.5"  # missing padding
    assert b64decode(" My40\nLjU= ") == "3.4.5"  # whitespace
    assert b64decode(b64("a>?b").replace("+", "-").replace("/", "_")) == "a>?b"  # URL-safe letters
    for bad in ("My4.LjU=", "My=0LjU", "#abc", "A"):
        with pytest.raises(HeaderError):
            b64decode(bad)


# docs/protocol/sw6.md §7.6: every row of the bad-input table; each must give a HeaderError (→ new trace), never raise
BAD = {
    "count != 9 (8 fields)": "1-My40LjU=-MS4yLjM=-4-1-1-IzEyNy4wLjAuMTo4MDgw-Iy9wb3J0YWw=",
    "count != 9 (5 fields)": "1-My40LjU=-MS4yLjM=-4-1",
    "extra '-' in the last field": E1 + "-extra",
    "non-numeric span id": E1.replace("-4-1-1-", "-x-1-1-"),
    "non-numeric instance id": E1.replace("-4-1-1-", "-4-a-1-"),
    "negative span id shifts fields": E1.replace("-4-1-1-", "--1-1-1-"),
    "parent instance id 0": E1.replace("-4-1-1-", "-4-0-1-"),
    "entry instance id 0": E1.replace("-4-1-1-", "-4-1-0-"),
    "empty peer": E1.replace("IzEyNy4wLjAuMTo4MDgw", ""),
    "segment id a.b.c": E1.replace("MS4yLjM=", b64("a.b.c")),
    "segment id with 4 parts": E1.replace("MS4yLjM=", b64("1.2.3.4")),
    "segment id with 2 parts": E1.replace("MS4yLjM=", b64("1.2")),
    "trace id with 1 part": E1.replace("My40LjU=", b64("3")),
    "trace id non-numeric": E4,
    "raw (not base64) trace id": E1.replace("My40LjU=", "3.4.5"),
    "raw (not base64) peer": E1.replace("IzEyNy4wLjAuMTo4MDgw", "127.0.0.1"),
    "raw entry endpoint": E1.replace("Iy9wb3J0YWw=", "/portal"),
    "peer not # and not an id": E1.replace("IzEyNy4wLjAuMTo4MDgw", b64("/portal")),
    "endpoint not # and not an id": E1.replace("MTIz", b64("/portal")),
    "int64 overflow in an id": E1.replace("MS4yLjM=", b64("1.2.99999999999999999999")),
    "empty value": "",
    "oversized value": E1 + "A" * 5000,
}


@pytest.mark.parametrize("value", BAD.values(), ids=BAD.keys())
def test_bad_sw6_headers_are_refused_with_a_reason(value: str) -> None:
    with pytest.raises(HeaderError) as e:
        decode_sw6(value)
    assert str(e.value)


def test_encoder_refuses_what_java_cannot_read() -> None:
    good = decode_sw6(E1)
    for field, value in (("span_id", -1), ("parent_instance_id", 0), ("entry_instance_id", -2), ("peer", ""),
                         ("entry_endpoint", "")):
        h = decode_sw6(E1)
        setattr(h, field, value)
        with pytest.raises(HeaderError):
            encode_sw6(h)
    assert encode_sw6(good) == E1


SW8_EXAMPLE = "1-My40LjU=-MS4yLjM=-4-c2VydmljZQ==-aW5zdGFuY2U=-L2FwcA==-MTI3LjAuMC4xOjgwODA="


def test_sw8_example_decodes_and_reencodes() -> None:
    h = decode_sw8(SW8_EXAMPLE)
    assert (h.sample, h.trace_id.value, h.segment_id.value, h.span_id, h.service, h.service_instance, h.endpoint,
            h.client_address) == (1, "3.4.5", "1.2.3", 4, "service", "instance", "/app", "127.0.0.1:8080")
    assert encode_sw8(h) == SW8_EXAMPLE


@pytest.mark.parametrize("value", [
    "1-My40LjU=-MS4yLjM=-4-c2VydmljZQ==-aW5zdGFuY2U=-L2FwcA==",  # 7 fields
    SW8_EXAMPLE.replace("-4-", "-x-"),
    SW8_EXAMPLE.replace("c2VydmljZQ==", ""),  # empty service
    "1-------",  # what upstream 1.2.0 sends for untraced requests
])
def test_bad_sw8_headers(value: str) -> None:
    with pytest.raises(HeaderError):
        decode_sw8(value)


def test_correlation_codec_and_limits() -> None:
    assert decode_correlation("dGVzdA==:dHJ1ZQ==") == {"test": "true"}
    value = encode_correlation({"a": "1", "b": "2", "c": "3", "d": "4"})
    assert decode_correlation(value) == {"a": "1", "b": "2", "c": "3"}  # correlation_element_max_number = 3
    assert decode_correlation("garbage,:,x:y," + b64("k") + ":" + b64("v" * 129)) == {}


# -- properties -------------------------------------------------------------------------------

@settings(max_examples=400, deadline=None)
@given(st.text(max_size=300))
def test_no_string_makes_decoding_raise(value: str) -> None:
    for decode in (decode_sw6, decode_sw8):
        try:
            decode(value)
        except HeaderError:
            pass
    decode_correlation(value)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["1", "0", "", "-", "=", "#", "MTIz", "LTE=", "My40LjU=", "IzEyNy4wLjAuMTo4MDgw",
                                 "a", "9" * 12, "Iy9wb3J0YWw=", "_", "+/"]), max_size=12))
def test_header_shaped_noise_never_raises(pieces: list[str]) -> None:
    try:
        decode_sw6("-".join(pieces))
    except HeaderError:
        pass


int64 = st.integers(min_value=0, max_value=2**63 - 1)
ids = st.tuples(int64, int64, int64).map(lambda p: ID(f"{p[0]}.{p[1]}.{p[2]}", p))
names = st.text(min_size=1, max_size=60).filter(lambda s: "\x00" not in s)
endpoint = st.one_of(st.just("-1"), names.map(lambda s: "#" + s), st.integers(1, 2**31 - 1).map(str))


@settings(max_examples=300, deadline=None)
@given(ids, ids, st.integers(0, 2**31 - 1), st.integers(1, 2**31 - 1), st.integers(1, 2**31 - 1),
       st.one_of(names.map(lambda s: "#" + s), st.integers(1, 2**31 - 1).map(str)), endpoint, endpoint)
def test_sw6_round_trip(trace: ID, seg: ID, span: int, parent: int, entry: int, peer: str, ep1: str, ep2: str) -> None:
    h = SW6(trace, seg, span, parent, entry, peer, ep1, ep2)
    value = encode_sw6(h)
    assert value.count("-") == 8  # '-1' endpoints live inside base64, never raw
    assert decode_sw6(value) == h


@settings(max_examples=200, deadline=None)
@given(names, names, st.integers(0, 2**31 - 1), names, names, names, names)
def test_sw8_round_trip(trace: str, seg: str, span: int, svc: str, inst: str, ep: str, addr: str) -> None:
    h = SW8(ID(trace, parse_parts(trace)), ID(seg, parse_parts(seg)), span, svc, inst, ep, addr)
    assert decode_sw8(encode_sw8(h)) == h


@pytest.mark.parametrize("namespace", ["", "prod"])
def test_inbound_header_names_are_the_inbound_carrier_keys(namespace: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from skywalking import config
    from skywalking.trace import propagation
    from skywalking.trace.carrier import Carrier, inbound_header_names

    monkeypatch.setattr(config, "agent_namespace", namespace)
    try:
        propagation.install()  # what tracing start does: the header formats are chosen then
        assert sorted(inbound_header_names()) == sorted(item.key for item in Carrier())
        assert (f"{namespace}-sw6" if namespace else "sw6") in inbound_header_names()
    finally:
        monkeypatch.undo()
        propagation.install()
