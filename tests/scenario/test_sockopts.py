"""Socket options real clients set (issue 13, part 4), per socket, with NetBSD's
semantics and errnos: TCP_KEEPIDLE/KEEPINTVL/KEEPCNT/KEEPINIT (the sysctl's value until
set), TCP_INFO (NetBSD's struct tcp_info), TCP_CONGESTION, IP_TOS and IP_TTL in the
segments sent (SYN, SYN-ACK, data), SO_RCVLOWAT, SO_LINGER's range, read-only SOL_SOCKET
options, SO_REUSEPORT; ENOPROTOOPT only for options that are not there. Two kernels on a
wire, virtual time; what leaves is read with bpf."""

from __future__ import annotations

import errno
import socket
import struct

import pytest
from scapy.layers.inet import IP, TCP

from rumpnet.faults.netem import Netem, NetemParams
from rumpnet.faults.runner import QdiscRunner
from rumpnet.netinet.tcp_ctloutput import TCP_INFO_STRUCT, TCP_KEEPINIT
from rumpnet.netinet.tcp_fsm import TcpState
from rumpnet.sys_socket import pollfd
from rumpnet.testing.vnet import capture
from rumpnet.uipc_socket import POLLIN

B = "10.0.0.2"
PORT = 4100
T = socket.IPPROTO_TCP


def _listen(b, opts=None):
    lfd = b.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    b.rump_sys_setsockopt(lfd, socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    for (level, opt), v in (opts or {}).items():
        b.rump_sys_setsockopt(lfd, level, opt, v)
    b.rump_sys_bind(lfd, ("0.0.0.0", PORT))
    b.rump_sys_listen(lfd, 8)
    return lfd


def _connect(a, b, lfd: int, opts=None) -> tuple[int, int]:
    c = a.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    for (level, opt), v in (opts or {}).items():
        a.rump_sys_setsockopt(c, level, opt, v)
    a.rump_sys_connect(c, (B, PORT))
    s, _ = b.rump_sys_accept(lfd)
    return c, s


def _silence(k) -> None:
    """Everything ``k`` sends from now on is lost."""
    ifp = k.ifnet.lookup("wire0")
    ifp.set_qdisc("egress", QdiscRunner(Netem(NetemParams(loss=1.0), k.rng), k.sched, ifp.link_transmit))


def _ips(log, mac_from) -> list[IP]:
    return [IP(f[14:]) for f in log.frames if f[6:12] == mac_from and f[12:14] == b"\x08\x00"]


def test_keepalive_times_per_socket(vnet) -> None:
    """redis-py's defaults (SO_KEEPALIVE, TCP_KEEPIDLE 30, TCP_KEEPINTVL 5, TCP_KEEPCNT
    3): probes after 30 s of silence, every 5 s, the connection dropped with ETIMEDOUT
    after 3 unanswered ones (RFC 1122 4.2.3.6); another socket keeps the sysctl's 7200 s."""
    a, b = vnet.pair()
    lfd = _listen(b)
    ka = {(socket.SOL_SOCKET, socket.SO_KEEPALIVE): 1, (T, socket.TCP_KEEPIDLE): 30,
          (T, socket.TCP_KEEPINTVL): 5, (T, socket.TCP_KEEPCNT): 3}
    c, s = _connect(a, b, lfd, ka)
    plain, s2 = _connect(a, b, lfd, {(socket.SOL_SOCKET, socket.SO_KEEPALIVE): 1})
    assert a.rump_sys_getsockopt(c, T, socket.TCP_KEEPIDLE) == 30
    assert a.rump_sys_getsockopt(plain, T, socket.TCP_KEEPIDLE) == 7200
    start = a.clock_now()
    _silence(b)
    a.run_for(29)
    assert a.inet.tcp.stats.tcps_keepprobe == 0
    a.run_for(2)
    assert a.inet.tcp.stats.tcps_keepprobe == 1
    a.run_for(10)
    assert a.inet.tcp.stats.tcps_keepprobe == 3
    a.run_for(5)
    with pytest.raises(OSError) as ei:
        a.rump_sys_recv(c, 10, socket.MSG_DONTWAIT)
    assert ei.value.errno == errno.ETIMEDOUT
    assert 45 - 1e-6 <= a.clock_now() - start <= 46
    assert a.inet.tcp.stats.tcps_keepdrops == 1
    # the other connection, on the sysctl's times, is untouched
    with pytest.raises(BlockingIOError):
        a.rump_sys_recv(plain, 10, socket.MSG_DONTWAIT)


@pytest.mark.parametrize("opt,name,sysctl", [
    (socket.TCP_KEEPIDLE, "keepidle", 7200), (socket.TCP_KEEPINTVL, "keepintvl", 75),
    (socket.TCP_KEEPCNT, "keepcnt", 8), (TCP_KEEPINIT, "keepinit", 75)])
def test_keep_options_follow_sysctl_until_set(vnet, opt: int, name: str, sysctl: int) -> None:
    k = vnet.kernel(5)
    fd = k.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    assert k.rump_sys_getsockopt(fd, T, opt) == sysctl
    k.sysctl("-w", f"net.inet.tcp.{name}=15")
    assert k.rump_sys_getsockopt(fd, T, opt) == 15
    k.rump_sys_setsockopt(fd, T, opt, 9)
    k.sysctl("-w", f"net.inet.tcp.{name}=20")
    assert k.rump_sys_getsockopt(fd, T, opt) == 9
    assert k.rump_sys_getsockopt(fd, T, opt, 4) == struct.pack("i", 9)
    for bad in (0, -1):
        with pytest.raises(OSError) as ei:
            k.rump_sys_setsockopt(fd, T, opt, bad)
        assert ei.value.errno == errno.EINVAL
    with pytest.raises(OSError) as ei:
        k.rump_sys_setsockopt(fd, T, opt, b"\x01\x00")  # not an int
    assert ei.value.errno == errno.EINVAL


def test_keepinit_bounds_connection_attempt(vnet) -> None:
    a, _b = vnet.pair()
    c = a.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK, 0)
    a.rump_sys_setsockopt(c, T, TCP_KEEPINIT, 4)
    with pytest.raises(BlockingIOError):
        a.rump_sys_connect(c, ("10.0.0.77", PORT))  # nobody: ARP never resolves
    a.run_for(3.9)
    assert a.rump_sys_getsockopt(c, socket.SOL_SOCKET, socket.SO_ERROR) == 0
    a.run_for(0.2)
    assert a.rump_sys_getsockopt(c, socket.SOL_SOCKET, socket.SO_ERROR) == errno.ETIMEDOUT


def test_tos_and_ttl_in_segments(vnet) -> None:
    """IP_TOS/IP_TTL go into the SYN and data of a connecting socket, into the SYN-ACK
    of a listener and the segments of its accepted connections; a change applies to
    the next segment."""
    a, b = vnet.pair()
    log = capture(a, "wire0")
    amac, bmac = a.ifnet.lookup("wire0").lladdr, b.ifnet.lookup("wire0").lladdr
    lfd = _listen(b, {(socket.IPPROTO_IP, socket.IP_TTL): 4, (socket.IPPROTO_IP, socket.IP_TOS): 0x28})
    c, s = _connect(a, b, lfd, {(socket.IPPROTO_IP, socket.IP_TOS): 0x20, (socket.IPPROTO_IP, socket.IP_TTL): 9})
    a.rump_sys_send(c, b"one", 0)
    assert b.rump_sys_recv(s, 10, 0) == b"one"
    b.rump_sys_send(s, b"two", 0)
    assert a.rump_sys_recv(c, 10, 0) == b"two"
    a.rump_sys_setsockopt(c, socket.IPPROTO_IP, socket.IP_TOS, 0xE0)
    a.rump_sys_send(c, b"three", 0)
    assert b.rump_sys_recv(s, 10, 0) == b"three"
    out = [p for p in _ips(log, amac) if p.haslayer(TCP)]
    back = [p for p in _ips(log, bmac) if p.haslayer(TCP)]
    assert out[0][TCP].flags == "S" and (out[0].tos, out[0].ttl) == (0x20, 9)
    assert {(p.tos, p.ttl) for p in out} == {(0x20, 9), (0xE0, 9)}
    assert out[-1].tos == 0xE0 and bytes(out[-1][TCP].payload) == b"three"
    assert back[0][TCP].flags == "SA" and {(p.tos, p.ttl) for p in back} == {(0x28, 4)}
    assert b.rump_sys_getsockopt(s, socket.IPPROTO_IP, socket.IP_TTL) == 4
    assert b.rump_sys_getsockopt(s, socket.IPPROTO_IP, socket.IP_TOS) == 0x28


def test_rst_of_a_socket_that_is_only_bound_carries_its_tos_and_ttl(vnet) -> None:
    """A SYN to a socket that is bound but neither listens nor connects (CLOSED) gets a
    RST (RFC 9293 3.10.7.1) with that socket's IP_TOS/IP_TTL, as FreeBSD's tcp_respond
    takes them from the socket; once it is closed, a RST with the defaults."""
    a, b = vnet.pair()
    log = capture(a, "wire0")
    bmac = b.ifnet.lookup("wire0").lladdr
    fd = b.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    b.rump_sys_setsockopt(fd, socket.IPPROTO_IP, socket.IP_TOS, 0x20)
    b.rump_sys_setsockopt(fd, socket.IPPROTO_IP, socket.IP_TTL, 4)
    b.rump_sys_bind(fd, ("0.0.0.0", PORT))
    for last in (False, True):
        c = a.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
        with pytest.raises(ConnectionRefusedError):
            a.rump_sys_connect(c, (B, PORT))
        a.rump_sys_close(c)
        if not last:
            b.rump_sys_close(fd)
    rsts = [p for p in _ips(log, bmac) if p.haslayer(TCP) and "R" in p[TCP].flags]
    assert [(p.tos, p.ttl) for p in rsts] == [(0x20, 4), (0, 64)]


def test_tcp_info(vnet) -> None:
    a, b = vnet.pair()
    lfd = _listen(b)
    info = TCP_INFO_STRUCT.unpack(b.rump_sys_getsockopt(lfd, T, socket.TCP_INFO, 236))
    assert info[0] == TcpState.LISTEN
    c, s = _connect(a, b, lfd)
    a.rump_sys_send(c, b"x" * 100_000, 0)
    got = 0
    while got < 100_000:
        got += len(b.rump_sys_recv(s, 1 << 20, 0))
    raw = a.rump_sys_getsockopt(c, T, socket.TCP_INFO, 236)
    assert len(raw) == 236 == TCP_INFO_STRUCT.size
    f = TCP_INFO_STRUCT.unpack(raw)
    state, options, wscale = f[0], f[5], f[6]
    rto, snd_mss, rtt, cwnd_segs, rcv_space, snd_nxt = f[8], f[10], f[23], f[26], f[30], f[33]
    cb = a.inet.tcp.proto.conns[next(iter(k for k in a.inet.tcp.proto.conns if k[3] == PORT))]
    assert state == TcpState.ESTABLISHED and options == 0x07  # timestamps, SACK, window scale
    assert wscale == cb.snd_scale | cb.rcv_scale << 4 and cb.rcv_scale > 0
    assert snd_mss == 1448 and rto >= 1_000_000 and 0 < rtt < 1_000_000
    assert cwnd_segs == cb.snd_cwnd // 1448 and rcv_space == cb.rcv_wnd and snd_nxt == cb.snd_nxt
    # a short buffer gets the start; no buffer, the first int (Python's getsockopt)
    assert a.rump_sys_getsockopt(c, T, socket.TCP_INFO, 8) == raw[:8]
    assert a.rump_sys_getsockopt(c, T, socket.TCP_INFO) == struct.unpack("=i", raw[:4])[0]


def test_tcp_info_counts_retransmissions(vnet) -> None:
    a, b = vnet.pair()
    lfd = _listen(b)
    c, s = _connect(a, b, lfd)
    _silence(b)
    a.rump_sys_send(c, b"lost", 0)
    a.run_for(4)
    f = TCP_INFO_STRUCT.unpack(a.rump_sys_getsockopt(c, T, socket.TCP_INFO, 236))
    assert f[36] >= 2 and f[15] == f[36] and f[2] == min(f[36], 255)  # rexmitpack, retrans


def test_congestion_control_per_socket(vnet) -> None:
    a, b = vnet.pair()
    lfd = _listen(b, {(T, socket.TCP_CONGESTION): b"cubic"})
    c, s = _connect(a, b, lfd)
    assert a.rump_sys_getsockopt(c, T, socket.TCP_CONGESTION, 16) == b"newreno".ljust(16, b"\0")
    assert b.rump_sys_getsockopt(s, T, socket.TCP_CONGESTION, 16).rstrip(b"\0") == b"cubic"
    a.rump_sys_setsockopt(c, T, socket.TCP_CONGESTION, b"cubic")
    assert a.rump_sys_getsockopt(c, T, socket.TCP_CONGESTION, 16).rstrip(b"\0") == b"cubic"
    with pytest.raises(OSError) as ei:
        a.rump_sys_setsockopt(c, T, socket.TCP_CONGESTION, b"bbr")
    assert ei.value.errno == errno.EINVAL


def test_rcvlowat(vnet) -> None:
    a, b = vnet.pair()
    lfd = _listen(b)
    c, s = _connect(a, b, lfd)
    b.rump_sys_setsockopt(s, socket.SOL_SOCKET, socket.SO_RCVLOWAT, 10)
    a.rump_sys_send(c, b"12345", 0)
    b.run_for(0.5)
    assert b.rump_sys_poll([pollfd(s, POLLIN)], 1, 0) == 0  # 5 < 10 bytes: not readable
    assert b.rump_sys_recv(s, 100, socket.MSG_DONTWAIT) == b"12345"  # non-blocking: what is there
    a.rump_sys_send(c, b"abcdef", 0)
    b.rump_sys_setsockopt(s, socket.SOL_SOCKET, socket.SO_RCVTIMEO, 2.0)
    a.rump_sys_send(c, b"ghij", 0)
    assert b.rump_sys_recv(s, 100, 0) == b"abcdefghij"  # blocking: waited for 10
    for bad in (0, -5):
        with pytest.raises(OSError) as ei:
            b.rump_sys_setsockopt(s, socket.SOL_SOCKET, socket.SO_RCVLOWAT, bad)
        assert ei.value.errno == errno.EINVAL
    b.rump_sys_setsockopt(s, socket.SOL_SOCKET, socket.SO_SNDLOWAT, 1 << 30)
    assert b.rump_sys_getsockopt(s, socket.SOL_SOCKET, socket.SO_SNDLOWAT) == \
        b.rump_sys_getsockopt(s, socket.SOL_SOCKET, socket.SO_SNDBUF)  # capped at the buffer


def test_sol_socket_read_only_and_ranges(vnet) -> None:
    k = vnet.kernel(6)
    fd = k.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    g = k.rump_sys_getsockopt
    assert g(fd, socket.SOL_SOCKET, socket.SO_TYPE) == socket.SOCK_STREAM
    assert g(fd, socket.SOL_SOCKET, socket.SO_DOMAIN) == socket.AF_INET
    assert g(fd, socket.SOL_SOCKET, socket.SO_PROTOCOL) == socket.IPPROTO_TCP
    assert g(fd, socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 0
    for opt in (socket.SO_TYPE, socket.SO_ERROR, socket.SO_ACCEPTCONN, socket.SO_DOMAIN, socket.SO_PROTOCOL):
        with pytest.raises(OSError) as ei:
            k.rump_sys_setsockopt(fd, socket.SOL_SOCKET, opt, 1)
        assert ei.value.errno == errno.ENOPROTOOPT
    with pytest.raises(OSError) as ei:
        k.rump_sys_setsockopt(fd, socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, -1))
    assert ei.value.errno == errno.EDOM
    k.rump_sys_setsockopt(fd, socket.SOL_SOCKET, socket.SO_DEBUG, 1)
    assert g(fd, socket.SOL_SOCKET, socket.SO_DEBUG) == 1
    # what is not there
    for level, opt in ((T, socket.TCP_CORK), (T, socket.TCP_FASTOPEN), (T, socket.TCP_USER_TIMEOUT),
                       (socket.IPPROTO_IP, socket.IP_OPTIONS), (socket.SOL_SOCKET, getattr(socket, "SO_TIMESTAMP", 29))):
        with pytest.raises(OSError) as ei:
            k.rump_sys_setsockopt(fd, level, opt, 1)
        assert ei.value.errno == errno.ENOPROTOOPT


def test_reuseport(vnet) -> None:
    """SO_REUSEPORT on both: two listeners on one port; the newest takes connections
    (NetBSD), the older again once it closes. Without it on both: EADDRINUSE."""
    a, b = vnet.pair()

    def listener() -> int:
        fd = b.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK, 0)
        b.rump_sys_setsockopt(fd, socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        b.rump_sys_bind(fd, ("0.0.0.0", PORT))
        b.rump_sys_listen(fd, 4)
        return fd

    first, second = listener(), listener()
    plain = b.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    with pytest.raises(OSError) as ei:
        b.rump_sys_bind(plain, ("0.0.0.0", PORT))
    assert ei.value.errno == errno.EADDRINUSE

    def connect_and_see() -> int:
        c = a.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
        a.rump_sys_connect(c, (B, PORT))
        b.run_for(0.1)
        for fd in (first, second):
            try:
                b.rump_sys_accept(fd)
                return fd
            except (BlockingIOError, OSError):
                continue
        raise AssertionError("nobody accepted")

    assert connect_and_see() == second
    b.rump_sys_close(second)
    assert connect_and_see() == first
