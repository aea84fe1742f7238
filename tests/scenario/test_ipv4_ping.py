"""Two kernels on one in-process wire ping each other through raw ICMP sockets."""

from __future__ import annotations

import os
import socket
import struct

from rumpkern import rump_init
from rumpnet.netinet.in_cksum import in_cksum
from rumpnet.testing.vnet import icmp_echo


def _ping(k, dst: str, ident: int, seq: int) -> tuple[bytes, object]:
    fd = k.rump_sys_socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    try:
        k.rump_sys_setsockopt(fd, socket.SOL_SOCKET, socket.SO_RCVTIMEO, 2.0)
        payload = bytes(range(56))
        assert k.rump_sys_sendto(fd, icmp_echo(ident, seq, payload), 0, (dst, 0)) == 8 + 56
        while True:
            pkt, src = k.rump_sys_recvfrom(fd, 2048, 0)
            hl = (pkt[0] & 0xF) * 4
            if pkt[hl] == 0 and struct.unpack_from("!HH", pkt, hl + 4) == (ident, seq):
                assert pkt[hl + 8:] == payload
                assert in_cksum(pkt[hl:]) == 0
                assert in_cksum(pkt[:hl]) == 0
                return pkt, src
    finally:
        k.rump_sys_close(fd)


def test_two_kernels_ping_each_other() -> None:
    seg = f"ping-{os.getpid()}-{id(object())}"
    a = rump_init(clock="virtual", seed=7)
    b = rump_init(clock="virtual", seed=8)
    try:
        assert a.sched is b.sched and a.sched.virtual
        for k, addr in ((a, "10.0.0.1/24"), (b, "10.0.0.2/24")):
            k.config.if_create("wire0")
            k.config.if_set_linkstr("wire0", seg)
            k.config.addr_add("wire0", addr)
            k.config.if_up("wire0")
        for seq in range(1, 4):
            pkt, src = _ping(a, "10.0.0.2", 0x4242, seq)
            assert src == ("10.0.0.2", 0)
            assert socket.inet_ntoa(pkt[12:16]) == "10.0.0.2" and socket.inet_ntoa(pkt[16:20]) == "10.0.0.1"
            pkt, src = _ping(b, "10.0.0.1", 0x4343, seq)
            assert src == ("10.0.0.1", 0)
        assert a.inet.icmpstat.icps_inhist[8] == 3 and a.inet.icmpstat.icps_outhist[0] == 3
        assert b.inet.icmpstat.icps_inhist[8] == 3 and b.inet.icmpstat.icps_outhist[0] == 3
        # a kernel pings itself through lo0
        pkt, src = _ping(a, "10.0.0.1", 0x4444, 1)
        assert src == ("10.0.0.1", 0)
    finally:
        b.halt()
        a.halt()


def test_ping_unanswered_times_out_on_virtual_clock(vnet) -> None:
    a, b = vnet.pair()
    t0 = a.clock_now()
    assert vnet.ping(a, "10.0.0.3", timeout=5.0) is None
    assert a.clock_now() - t0 >= 5.0
    # nobody has 10.0.0.3: a asked (b heard the requests) and dropped the held echo
    assert a.inet.arpstat.as_dfrtotal == 1 and a.inet.arpstat.as_dfrdropped == 1
    assert b.inet.arpstat.as_rcvrequest == a.inet.arpstat.as_sndrequest - 1  # (not its own announcement)
    assert b.inet.arpstat.as_sndreply == 0
    assert vnet.ping(a, "10.0.0.2") is not None
