"""Checks shared by the tests of software segmentation (``netinet.ip_gso``,
``netinet6.ip6_gso``): what the TCP headers of a superframe's segments must say."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

TH_FIN, TH_PUSH, TH_ACK, TH_CWR = 0x01, 0x08, 0x10, 0x80


def check_tcp_run(tcps: Sequence[Any], seq0: int, payload: bytes) -> None:
    """``tcps`` (scapy TCP layers, in order) are the segments of one superframe that
    started at ``seq0`` with FIN, PSH, ACK and CWR set: sequence numbers follow the
    payload (mod 2**32), CWR is on the first only, FIN and PSH on the last only
    (Linux's ``tcp_gso_segment``), ACK everywhere, and the payloads make ``payload``."""
    data = b""
    for i, t in enumerate(tcps):
        last = i == len(tcps) - 1
        assert t.seq == (seq0 + len(data)) & 0xFFFFFFFF
        assert bool(t.flags & TH_CWR) == (i == 0)
        assert bool(t.flags & TH_FIN) == last and bool(t.flags & TH_PUSH) == last
        assert t.flags & TH_ACK
        data += bytes(t.payload)
    assert data == payload
