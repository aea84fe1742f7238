"""virtif's vnet-header helpers (no privileges needed)."""

from __future__ import annotations

import struct

from rumpnet.netinet.in_addr import aton
from rumpnet.netinet.in_cksum import in_pseudo_sum
from rumpnet.virtif.if_virt import VNET_HDR, VNET_HDR_LEN, complete_partial_csum


def test_vnet_hdr_layout() -> None:
    assert VNET_HDR_LEN == 10 == VNET_HDR.size


def test_complete_partial_udp_checksum() -> None:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    pkt = Ether(dst="02:00:00:00:00:01", src="02:00:00:00:00:02") / IP(src="10.99.7.1", dst="10.99.7.2") / UDP(
        sport=1234, dport=4321) / (b"partial checksum " * 7)
    full = bytes(pkt)
    want = Ether(full)[UDP].chksum
    # what a CHECKSUM_PARTIAL skb carries: the pseudo-header sum (not inverted) in the field
    udp_off = 14 + 20
    ulen = len(full) - udp_off
    partial = bytearray(full)
    struct.pack_into("!H", partial, udp_off + 6, in_pseudo_sum(aton("10.99.7.1"), aton("10.99.7.2"), 17, ulen))
    done = complete_partial_csum(bytes(partial), udp_off, 6)
    assert done is not None
    assert struct.unpack_from("!H", done, udp_off + 6)[0] == want
    assert done == full


def test_complete_partial_rejects_bad_offsets() -> None:
    frame = bytes(60)
    assert complete_partial_csum(frame, 60, 0) is None
    assert complete_partial_csum(frame, 40, 19) is None
    assert complete_partial_csum(frame, 40, -1) is None
