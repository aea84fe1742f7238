"""The errors a TCP socket reports, on virtual time: ETIMEDOUT after the retransmission
limit when the peer vanishes (partition, interface down), ECONNREFUSED from a closed port,
ECONNRESET from SO_LINGER 0, EPIPE after a reset, connect timing out."""

from __future__ import annotations

import asyncio
import errno
import socket
import struct

import pytest

from rumpnet.faults.netem import Netem, NetemParams
from rumpnet.faults.runner import QdiscRunner
from rumpnet.sys_socket import pollfd
from rumpnet.testing.families import INET, Family, family_matrix  # noqa: F401  (the fixture)
from rumpnet.uipc_socket import POLLERR, POLLHUP, POLLIN

PORT = 6000

# Every test runs over IPv4 and IPv6: family_matrix sets F, A and B for each.
pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("family_matrix")]
F: Family = INET
A, B = INET.a, INET.b


def _pair(a, b, port: int = PORT) -> tuple[int, int, int]:
    lfd = b.rump_sys_socket(F.af, socket.SOCK_STREAM, 0)
    b.rump_sys_bind(lfd, (F.any, port))
    b.rump_sys_listen(lfd, 8)
    c = a.rump_sys_socket(F.af, socket.SOCK_STREAM, 0)
    a.rump_sys_connect(c, (B, port))
    s, _ = b.rump_sys_accept(lfd)
    return lfd, c, s


def _qdisc(k, **params) -> QdiscRunner:
    ifp = k.ifnet.lookup("wire0")
    q = QdiscRunner(Netem(NetemParams(**params), k.rng), k.sched, ifp.link_transmit)
    ifp.set_qdisc("egress", q)
    return q


def _errno(fn, *args) -> int:
    with pytest.raises(OSError) as ei:
        fn(*args)
    return ei.value.errno


def _max_backoff_time(params) -> float:
    """Upper bound on the time TCP retransmits before it gives up (RTO doubling, capped)."""
    t, rto = 0.0, params.init_rto
    for _ in range(params.rexmit_max + 1):
        t += min(max(rto, params.rtomin), params.rtomax)
        rto *= 2
    return t + params.rtomax


@pytest.mark.parametrize("how", ["partition", "ifdown"])
def test_vanished_peer_gives_etimedout(vnet, how: str) -> None:
    a, b = F.pair(vnet)
    _, c, s = _pair(a, b)
    a.rump_sys_send(c, b"before", 0)
    assert b.rump_sys_recv(s, 10, 0) == b"before"
    if how == "partition":
        _qdisc(a, partition=True)
        _qdisc(b, partition=True)
    else:
        b.config.if_down("wire0")
    t0 = a.clock_now()
    a.rump_sys_send(c, b"into the partition", 0)
    # recv blocks until TCP gives up on the unacknowledged data
    assert _errno(a.rump_sys_recv, c, 10, 0) == errno.ETIMEDOUT
    elapsed = a.clock_now() - t0
    st = F.tcp(a).stats
    assert st.tcps_timeoutdrop == 1
    assert st.tcps_rexmttimeo >= F.tcp(a).params.rexmit_max
    assert 30 < elapsed <= _max_backoff_time(F.tcp(a).params)
    # afterwards: the socket is dead, poll says so, writes give EPIPE
    p = pollfd(c, POLLIN)
    a.rump_sys_poll([p], 1, 0)
    assert p.revents & POLLIN and p.revents & (POLLHUP | POLLERR)
    assert a.rump_sys_recv(c, 10, 0) == b""
    assert _errno(a.rump_sys_send, c, b"x", 0) == errno.EPIPE
    assert not [x for x in F.tcp(a).pcbs() if getattr(x, "fport", 0) == PORT]


def test_sndtimeo_less_than_rexmit_limit(vnet) -> None:
    """A blocked send with SO_SNDTIMEO returns EWOULDBLOCK; the connection lives on."""
    a, b = F.pair(vnet)
    _, c, s = _pair(a, b)
    _qdisc(a, partition=True)
    a.rump_sys_setsockopt(c, socket.SOL_SOCKET, socket.SO_SNDTIMEO, 3.0)
    blob = b"z" * (a.rump_sys_getsockopt(c, socket.SOL_SOCKET, socket.SO_SNDBUF) * 2)
    n = a.rump_sys_send(c, blob, 0)  # partial: the send buffer filled, then the timeout
    assert 0 < n < len(blob)
    assert _errno(a.rump_sys_send, c, blob, 0) == errno.EWOULDBLOCK


def test_connect_to_vanished_host_times_out(vnet) -> None:
    a, b = F.pair(vnet)
    b.config.if_down("wire0")
    c = a.rump_sys_socket(F.af, socket.SOCK_STREAM, 0)
    t0 = a.clock_now()
    # Over IPv6 neighbour discovery gives up on the SYN's next hop and answers with an
    # address unreachable (RFC 4861 7.2.2), a soft error that ends the connect after
    # the fourth retransmission (NetBSD's tcp_notify), as Linux answers EHOSTUNREACH.
    assert _errno(a.rump_sys_connect, c, (B, PORT)) == (errno.EHOSTUNREACH if F.v6 else errno.ETIMEDOUT)
    # the connection-establishment limit (keepinit, 75 s) or the SYN retries, whichever first
    assert a.clock_now() - t0 <= F.tcp(a).params.keepinit + 1


def test_closed_port_refused(vnet) -> None:
    a, b = F.pair(vnet)
    c = a.rump_sys_socket(F.af, socket.SOCK_STREAM, 0)
    t0 = a.clock_now()
    assert _errno(a.rump_sys_connect, c, (B, PORT)) == errno.ECONNREFUSED
    assert a.clock_now() - t0 < 1.0  # the RST, not a timeout
    assert F.tcp(b).stats.tcps_noport == 1 and F.tcp(b).stats.tcps_sndrst == 1
    # the socket can't be reused for another connect (BSD: EINVAL after a failed connect)
    with pytest.raises(OSError):
        a.rump_sys_connect(c, (B, PORT))


def test_listener_closed_refuses(vnet) -> None:
    a, b = F.pair(vnet)
    lfd, c, s = _pair(a, b)
    b.rump_sys_close(lfd)
    c2 = a.rump_sys_socket(F.af, socket.SOCK_STREAM, 0)
    assert _errno(a.rump_sys_connect, c2, (B, PORT)) == errno.ECONNREFUSED
    # the established connection is unaffected
    a.rump_sys_send(c, b"still", 0)
    assert b.rump_sys_recv(s, 10, 0) == b"still"


@pytest.mark.parametrize("peer_reads", ["recv", "send", "poll"])
def test_linger_zero_gives_peer_econnreset(vnet, peer_reads: str) -> None:
    a, b = F.pair(vnet)
    _, c, s = _pair(a, b)
    a.rump_sys_send(c, b"unread", 0)
    vnet.sched.run_for(0.5)
    b.rump_sys_setsockopt(s, socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    assert b.rump_sys_getsockopt(s, socket.SOL_SOCKET, socket.SO_LINGER) == struct.pack("ii", 1, 0)
    rst0 = F.tcp(b).stats.tcps_sndrst
    b.rump_sys_close(s)
    assert F.tcp(b).stats.tcps_sndrst == rst0 + 1
    # no TIME_WAIT left behind on the aborting side
    assert not [x for x in F.tcp(b).pcbs() if getattr(x, "fport", 0) and x.state.name != "LISTEN"]
    vnet.sched.run_for(0.5)
    if peer_reads == "recv":
        assert _errno(a.rump_sys_recv, c, 10, 0) == errno.ECONNRESET
        assert a.rump_sys_recv(c, 10, 0) == b""  # reported once, then EOF
    elif peer_reads == "send":
        assert _errno(a.rump_sys_send, c, b"x", 0) == errno.ECONNRESET
        assert _errno(a.rump_sys_send, c, b"x", 0) == errno.EPIPE
    else:
        p = pollfd(c, POLLIN)
        a.rump_sys_poll([p], 1, 0)
        assert p.revents & POLLERR
        assert a.rump_sys_getsockopt(c, socket.SOL_SOCKET, socket.SO_ERROR) == errno.ECONNRESET
        assert a.rump_sys_getsockopt(c, socket.SOL_SOCKET, socket.SO_ERROR) == 0
    assert F.tcp(a).stats.tcps_rcvrst >= 1


def test_linger_zero_blocked_reader_wakes_with_econnreset(vnet) -> None:
    a, b = F.pair(vnet)
    _, c, s = _pair(a, b)
    b.rump_sys_setsockopt(s, socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    vnet.sched.call_later(2.0, lambda: asyncio.ensure_future(b.rump_sys_close(s)))  # on the loop: an awaitable
    t0 = a.clock_now()
    assert _errno(a.rump_sys_recv, c, 10, 0) == errno.ECONNRESET
    assert 2.0 <= a.clock_now() - t0 < 2.5


def test_keepalive_detects_dead_peer(vnet) -> None:
    a, b = F.pair(vnet)
    a.config.sysctl_set("net.inet.tcp.keepidle", 10)
    a.config.sysctl_set("net.inet.tcp.keepintvl", 2)
    a.config.sysctl_set("net.inet.tcp.keepcnt", 3)
    _, c, s = _pair(a, b)
    a.rump_sys_setsockopt(c, socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    assert a.rump_sys_getsockopt(c, socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    vnet.sched.run_for(30)  # idle, but the peer answers the probes
    a.rump_sys_send(c, b"alive", 0)
    assert b.rump_sys_recv(s, 10, 0) == b"alive"
    _qdisc(b, partition=True)
    t0 = a.clock_now()
    assert _errno(a.rump_sys_recv, c, 10, 0) == errno.ETIMEDOUT
    assert a.clock_now() - t0 < 10 + 2 * 3 + 5
    assert F.tcp(a).stats.tcps_keepdrops == 1


def test_linger_positive_close_waits_for_the_peer(vnet) -> None:
    """SO_LINGER (1, N): close(2) sleeps until the data and FIN are acknowledged (or N
    seconds pass), as NetBSD's soclose does; the data all arrives."""
    a, b = F.pair(vnet)
    _qdisc(a, delay=0.05)
    _qdisc(b, delay=0.05)
    _, c, s = _pair(a, b)
    a.rump_sys_setsockopt(c, socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 10))
    blob = bytes(range(256)) * 800
    a.rump_sys_send(c, blob, 0)
    t0 = a.clock_now()
    a.rump_sys_close(c)
    waited = a.clock_now() - t0
    assert 0.1 <= waited < 10  # at least a round trip, well under the linger time
    (cb,) = [x for x in F.tcp(a).pcbs() if getattr(x, "fport", 0) == PORT]
    assert cb.state.name in ("FIN_WAIT_2", "TIME_WAIT")
    assert b.rump_sys_recv(s, len(blob) + 1, socket.MSG_WAITALL) == blob


def test_linger_positive_close_times_out_on_vanished_peer(vnet) -> None:
    a, b = F.pair(vnet)
    _, c, s = _pair(a, b)
    _qdisc(a, partition=True)
    a.rump_sys_setsockopt(c, socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 3))
    a.rump_sys_send(c, b"never acknowledged", 0)
    t0 = a.clock_now()
    a.rump_sys_close(c)
    assert a.clock_now() - t0 == pytest.approx(3.0, abs=0.01)
    # a non-blocking socket does not linger in close
    fd = a.rump_sys_socket(F.af, socket.SOCK_STREAM | socket.SOCK_NONBLOCK, 0)
    a.rump_sys_setsockopt(fd, socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 3))
    with pytest.raises(BlockingIOError):
        a.rump_sys_connect(fd, (B, PORT))
    t0 = a.clock_now()
    a.rump_sys_close(fd)
    assert a.clock_now() == t0
