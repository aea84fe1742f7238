"""Property tests for rumpnet/bpf.py: filters never raise, pcap round-trips."""

from __future__ import annotations

import io

from hypothesis import given, settings
from hypothesis import strategies as st

from rumpnet.bpf import PcapReader, PcapWriter, compile_filter

EXPRS = [
    "arp or ip",
    "icmp or udp port 53",
    "tcp-syn and not tcp-rst",
    "src host 10.0.0.1 or dst net 192.168.0.0/16",
    "portrange 1-1024 and tcp",
    "ether host 02:00:00:00:00:01 or ether broadcast",
    "tcp[tcpflags] & (tcp-syn|tcp-fin) != 0",
    "icmp[icmptype] = icmp-echo or ip[9] = 17",
    "ether[12:2] = 0x0800 and ip[0] & 0xf = 5",
    "arp host 10.0.0.2",
    "greater 100 or less 20",
]
FILTERS = [compile_filter(e) for e in EXPRS]

ipv4_ish = st.builds(
    lambda eth, ihl, rest: eth + bytes([0x40 | ihl]) + rest,
    st.binary(min_size=12, max_size=12).map(lambda b: b + b"\x08\x00"),
    st.integers(0, 15),
    st.binary(max_size=80),
)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.binary(max_size=200), ipv4_ish))
def test_filters_never_raise(frame: bytes) -> None:
    for f in FILTERS:
        assert f(frame) in (True, False)
        assert f(memoryview(frame)) == f(frame)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.binary(max_size=300), st.integers(0, 2**32 - 1), st.integers(0, 999_999)),
        max_size=20,
    )
)
def test_pcap_roundtrip(records: list[tuple[bytes, int, int]]) -> None:
    buf = io.BytesIO()
    with PcapWriter(buf) as w:
        for frame, sec, usec in records:
            w.write_record(frame, sec, usec)
    buf.seek(0)
    got = list(PcapReader(buf))
    assert [f for _, f in got] == [r[0] for r in records]
    for (ts, _), (_, sec, usec) in zip(got, records, strict=True):
        assert abs(ts - (sec + usec / 1e6)) < 1e-5
