"""Deadlines out: TcpProtocol tells ``deadline_out`` of every deadline set earlier than its
owner had, whatever set it, so that the glue re-arms its one loop timer in one place
(``InetCallout.deadline``) instead of after each call into TCP."""

from __future__ import annotations

import random
import socket

from rumpkern import rump_init
from rumpnet.netinet.tcp_subr import TcpProtocol
from rumpnet.netinet.tcp_var import TcpParams
from rumpnet.testing.vnet import tcp_connection

A, B = 0x0A000001, 0x0A000002


def test_connect_tells_the_syn_retransmission_deadline() -> None:
    told: list[float] = []
    sent: list[bytes] = []
    proto = TcpProtocol(TcpParams(), random.Random(1), lambda s, d, seg, **kw: sent.append(seg),
                        deadline_out=told.append)
    proto.connect(A, 0, B, 80, 100.0)
    assert len(sent) == 1                      # the SYN
    assert told and min(told) == proto.get_timer() == 100.0 + TcpParams().init_rto
    # Its retransmission (RFC 6298 5.5: the RTO doubles) is told when the timer fires.
    told.clear()
    proto.handle_timer(101.0)
    assert len(sent) == 2 and told and min(told) == proto.get_timer() == 101.0 + 2 * TcpParams().init_rto


def test_a_user_request_arms_the_kernel_timer_without_a_kick() -> None:
    """SO_KEEPALIVE set on an idle connection (a user request that only sets a timer):
    the probe goes out after TCP_KEEPIDLE, with nothing but the request run."""
    k = rump_init(clock="virtual", seed=3)
    try:
        k.ifconfig("lo0", "inet", "127.0.0.1")
        lfd, c, s = tcp_connection(k, k, ("127.0.0.1", 9000))
        k.run_for(1)
        stats = k.inet.tcp.stats
        assert stats.tcps_keepprobe == 0
        k.rump_sys_setsockopt(c, socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 5)
        k.rump_sys_setsockopt(c, socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        k.run_for(5.5)
        assert stats.tcps_keepprobe == 1
        for fd in (s, c, lfd):
            k.rump_sys_close(fd)
    finally:
        k.halt()
