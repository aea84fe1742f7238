"""The wire encoding of the remote system call protocol: round trips, and untrusted input
only ever raising ProtocolError."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rumpnet.server.protocol import (
    MAX_FRAME,
    ProtocolError,
    decode,
    encode,
    frame,
    frame_length,
    parse_url,
)

values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(1 << 200), max_value=1 << 200)
    | st.floats(allow_nan=False) | st.text() | st.binary() | st.binary().map(bytearray),
    lambda inner: st.lists(inner, max_size=5) | st.lists(inner, max_size=5).map(tuple)
    | st.dictionaries(st.text(max_size=5), inner, max_size=5),
    max_leaves=20,
)


@given(values)
@settings(max_examples=150, deadline=None)
def test_round_trip_keeps_types(v):
    out = decode(encode(v))
    assert out == v and type(out) is type(v)


@given(st.binary(max_size=200))
@settings(max_examples=500, deadline=None)
def test_garbage_only_raises_protocol_error(data):
    try:
        decode(data)
    except ProtocolError:
        pass


@given(values, st.data())
@settings(max_examples=100, deadline=None)
def test_truncated_or_corrupted_values(v, data):
    raw = bytearray(encode(v))
    cut = data.draw(st.integers(0, len(raw)))
    for candidate in (raw[:cut], _flip(raw, data)):
        try:
            decode(bytes(candidate))
        except ProtocolError:
            pass


def _flip(raw: bytearray, data: st.DataObject) -> bytearray:
    if raw:
        i = data.draw(st.integers(0, len(raw) - 1))
        raw = bytearray(raw)
        raw[i] ^= data.draw(st.integers(1, 255))
    return raw


def test_address_tuples_and_limits():
    msg = ("ok", 7, (b"data", ("10.0.0.1", 7)), [[3, 1, 0]])
    assert decode(frame(msg)[4:]) == msg
    with pytest.raises(ProtocolError):
        encode(object())
    with pytest.raises(ProtocolError):
        encode({1: 2})
    with pytest.raises(ProtocolError):
        encode(1 << 1000)
    nested: list = []
    for _ in range(100):
        nested = [nested]
    with pytest.raises(ProtocolError):
        encode(nested)
    with pytest.raises(ProtocolError):
        frame_length(struct.pack(">I", MAX_FRAME + 1))
    assert frame_length(struct.pack(">I", MAX_FRAME)) == MAX_FRAME
    with pytest.raises(ProtocolError):
        decode(b"l" + struct.pack(">I", 1 << 30))  # a count that cannot fit


def test_urls():
    assert parse_url("unix:///tmp/sock") == ("unix", "/tmp/sock")
    assert parse_url("unix://rel/sock") == ("unix", "rel/sock")
    assert parse_url("tcp://127.0.0.1:1234/") == ("tcp", ("127.0.0.1", 1234))
    assert parse_url("tcp://[::1]:99") == ("tcp", ("::1", 99))
    for bad in ("http://x", "unix://", "tcp://127.0.0.1/", "tcp://:80/", "tcp://h:99999/"):
        with pytest.raises(ValueError):
            parse_url(bad)
