"""ping6(8): ICMPv6 echo through the kernel's raw ICMPv6 socket, NetBSD syntax and output
(``sbin/ping6/ping6.c``).

``ping6 [-nqv] [-c count] [-h hoplimit] [-i wait] [-s packetsize] [-S sourceaddr]
[-I interface] [-g gateway] [-X timeout] host``; the host may carry a zone
(``fe80::1%shmif0``). It prints::

    PING6(56=40+8+8 bytes) fc00:0:0:1::2 --> fc00:0:0:2::2
    16 bytes from fc00:0:0:2::2, icmp_seq=0 hlim=63 time=0.912 ms

    --- fc00:0:0:2::2 ping6 statistics ---
    1 packets transmitted, 1 packets received, 0.0% packet loss
    round-trip min/avg/max/std-dev = 0.912/0.912/0.912/0.000 ms

Like NetBSD's, ping6 only listens to echo replies unless ``-v`` asks for the errors too
(ICMP6_FILTER), and exits with status 2 when no reply came. The run, its statistics and
its system call are ping's (``rumpnet.commands.ping_common``), with an IPv6 state: the
reply's hop limit comes from IPV6_RECVHOPLIMIT ancillary data.
"""

from __future__ import annotations

import errno
import socket as pysocket
import struct
from typing import TYPE_CHECKING, Any

from rumpkern.sched import SyscallCtx
from rumpnet import sys_socket as S  # noqa: N812
from rumpnet.commands import UsageError, strerror
from rumpnet.commands.ping6_pr import pr_icmph
from rumpnet.commands.ping_common import OptSpec, PingOptions, PingState, close_socket, getopt, ping_call, positive, set_options
from rumpnet.commands.rtsock_client import RouteClient
from rumpnet.netinet6 import in6, scope6
from rumpnet.netinet6.icmp6 import Icmp6Filter
from rumpnet.uipc_socket import MSG_DONTWAIT

if TYPE_CHECKING:
    from rumpkern.lwproc import Proc
    from rumpnet.net_kernel import NetKernel

USAGE = """usage: ping6 [-dfHmnNqRtvwW] [-a addrtype] [-b bufsiz] [-c count] [-g gateway]
	[-h hoplimit] [-I interface] [-i wait] [-l preload] [-p pattern]
	[-S sourceaddr] [-s packetsize] [-x maxwait] [-X timeout] [hops...] host"""

# sbin/ping6/ping6.c's getopt string (its IPsec options aside), for rump.ping6's check of
# the leading options; parse6() reads options anywhere, as ping's parse() does.
OPTSTRING = "a:b:c:dfHg:h:I:i:l:mnNp:qRS:s:tvwWX:x:"

ICMP6_ECHO_REQUEST = 128
ICMP6_ECHO_REPLY = 129
DEFDATALEN = 8            # ICMP6ECHOTMLEN: the send time only
MAXDATALEN = 65535 - 40 - 8
_ECHO6 = struct.Struct("!BBHHH")


class Ping6Options(PingOptions):
    def __init__(self) -> None:
        super().__init__()
        self.datalen = DEFDATALEN
        self.interface: str | None = None
        self.gateway: str | None = None
        self.hops: list[str] = []


# ping6.c's options with a value, and its words for a bad one
_OPTIONS6 = {
    "c": OptSpec("count", "count", int, positive, "ping6: illegal number of packets -- {val}"),
    "h": OptSpec("ttl", "hoplimit", int, lambda v: 0 <= v <= 255, "ping6: illegal hoplimit {val}"),
    "i": OptSpec("interval", "wait", float, positive, "ping6: illegal timing interval {val}"),
    "s": OptSpec("datalen", "packet size", int, lambda v: 0 <= v <= MAXDATALEN, "ping6: illegal datalen value -- {val}"),
    "X": OptSpec("maxwait", "timeout", float, positive, "ping6: illegal timeout -- {val}"),
    "S": OptSpec("source"),
    "I": OptSpec("interface"),
    "g": OptSpec("gateway"),
    "l": OptSpec("preload", "preload"),
}


def parse6(argv: list[str]) -> Ping6Options:
    """ping6's command line (UsageError / OSError naming the bad value)."""
    o = Ping6Options()
    opts, pos = getopt(argv, "chisSIgXxlpab", "nqvdfHmNRtwW", USAGE, "ping6")
    set_options(o, opts, _OPTIONS6)
    if not pos:
        raise UsageError(USAGE)
    # Intermediate hops go in a type 0 routing header (IPV6_RTHDR); RFC 5095 forbids
    # nodes to execute one, so such a ping gets Parameter Problem from the first hop.
    o.hops, o.host = pos[:-1], pos[-1]
    if len(o.hops) > 127:
        raise OSError(errno.EINVAL, "ping6: too many intermediate hops")
    return o


class _Ping6State(PingState):
    """ping6's variables: an IPv6 destination with its zone, replies with their hop limit."""

    def __init__(self, k: NetKernel, p: Proc, o: Ping6Options, dst: int, zone: int) -> None:
        super().__init__(k, p, o, 0)
        self.dst6 = dst
        self.zone = zone
        self.src6 = 0
        self.hlim = -1
        self.from6 = ""

    def _sockaddr(self, addr: int, zone: int) -> tuple[str, int, int, int]:
        return in6.ntop(addr), 0, 0, zone if scope6.shows_zone(addr, zone) else 0

    SEND_WARNING = "ping6: sendmsg"

    def _payload(self, seq: int, now: float) -> bytes:
        # the kernel sums an ICMPv6 raw socket's messages (RFC 3542 3.1)
        return _ECHO6.pack(ICMP6_ECHO_REQUEST, 0, 0, self.ident, seq & 0xFFFF) + bytes(self._data(now))

    def _target(self) -> Any:
        return self._sockaddr(self.dst6, self.zone)

    def receive(self, ctx: SyscallCtx) -> bytes | None:
        if self.fd is None:
            return None
        try:
            data, anc, _, src = S.sys_recvmsg(ctx, self.p, self.fd, 65535, 256, MSG_DONTWAIT)
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return None
            raise
        self.hlim = next((struct.unpack("=i", d)[0] for lv, t, d in anc if t == pysocket.IPV6_HOPLIMIT), -1)
        self.from6 = str(src[0])
        return bytes(data)

    def pr_pack(self, msg: bytes, now: float) -> None:
        cc = len(msg)
        if cc < 8:
            if self.o.verbose:
                self.emit(f"ping6: packet too short ({cc} bytes) from {self.from6}")
            return
        itype, _, _, iid, seq = _ECHO6.unpack_from(msg)
        if itype == ICMP6_ECHO_REPLY and iid == self.ident:
            triptime, dup = self.record_reply(seq, msg, now)
            self.emit_reply(f"{cc} bytes from {self.from6}, icmp_seq={seq} hlim={self.hlim}", triptime, dup)
            return
        if self.o.verbose:      # ping6.c: anything else only with -v (ICMP6_FILTER passes it)
            first, *more = pr_icmph(msg)
            self.emit(f"{cc} bytes from {self.from6}: {first}")
            for line in more:
                self.emit(line)

    # ping6.c's words: its header, the population standard deviation, "(DUP!)" unspaced
    STATS_HEADER = "--- {host} ping6 statistics ---"
    STDDEV_NAME = "std-dev"
    DUP = "(DUP!)"

    def _stddev(self, n: int, avg: float) -> float:
        return float(max(0.0, self.tsumsq / n - avg * avg) ** 0.5)


def if_nametoindex(k: NetKernel, name: str) -> int:
    """if_nametoindex(3): libc asks getifaddrs, that is sysctl NET_RT_IFLIST (through the
    system call table: ping6 already runs on the kernel's CPU); ENXIO when there is none."""
    return RouteClient(k).ifindex(name)


def _resolve6(k: NetKernel, host: str) -> tuple[int, int]:
    try:
        return scope6.parse_scoped(host, lambda n: if_nametoindex(k, n))
    except OSError:
        raise OSError(errno.EINVAL, f"ping6: {host}: No address associated with hostname") from None


def _start6(ctx: SyscallCtx, k: NetKernel, p: Proc, o: Any) -> PingState:
    dst, zone = _resolve6(k, o.host)
    if o.interface is not None:
        try:
            zone = zone or if_nametoindex(k, o.interface)
        except OSError:
            raise OSError(errno.ENXIO, f"ping6: {o.interface}: bad interface name") from None
    st = _Ping6State(k, p, o, dst, zone)
    try:
        st.fd = S.sys_socket(ctx, p, pysocket.AF_INET6, pysocket.SOCK_RAW, pysocket.IPPROTO_ICMPV6)
    except OSError as e:
        code = e.errno if e.errno is not None else errno.EPROTONOSUPPORT
        raise OSError(code, f"ping6: socket: {strerror(code)}") from None
    try:
        _setup6(ctx, k, st, o)
    except OSError as e:
        close_socket(ctx, st)
        code = e.errno if e.errno is not None else errno.EINVAL
        raise OSError(code, f"ping6: {e.strerror}") from None
    src = in6.ntop(st.src6) if st.src6 else "::"
    st.emit(f"PING6({40 + 8 + o.datalen}=40+8+{o.datalen} bytes) {src} --> {o.host.split('%')[0]}")
    for _ in range(o.preload):
        st.pinger(ctx, st.start)
    st.next_tx = st.start
    return st


def _setup6(ctx: SyscallCtx, k: NetKernel, st: _Ping6State, o: Ping6Options) -> None:
    fd, p = st.fd, st.p
    assert fd is not None and k.inet6 is not None
    v6 = pysocket.IPPROTO_IPV6
    flt = Icmp6Filter()
    if not o.verbose:
        flt.setblockall()
        flt.setpass(ICMP6_ECHO_REPLY)
    S.sys_setsockopt(ctx, p, fd, pysocket.IPPROTO_ICMPV6, 1, flt.to_bytes())
    S.sys_setsockopt(ctx, p, fd, v6, pysocket.IPV6_RECVHOPLIMIT, 1)
    if o.ttl is not None:
        S.sys_setsockopt(ctx, p, fd, v6, pysocket.IPV6_UNICAST_HOPS, o.ttl)
        S.sys_setsockopt(ctx, p, fd, v6, pysocket.IPV6_MULTICAST_HOPS, o.ttl)
    if o.interface is not None:
        S.sys_setsockopt(ctx, p, fd, v6, pysocket.IPV6_MULTICAST_IF, st.zone)
    nexthop = None
    if o.gateway is not None:
        gw, gzone = _resolve6(k, o.gateway)
        nexthop = (in6.ntop(gw), 0, 0, gzone or st.zone)
        S.sys_setsockopt(ctx, p, fd, v6, IPV6_NEXTHOP, nexthop)
    if o.hops:
        hops = [_resolve6(k, h)[0] for h in o.hops]
        S.sys_setsockopt(ctx, p, fd, v6, IPV6_RTHDR, rthdr0(hops))
    if o.source is not None:
        src, szone = _resolve6(k, o.source)
        S.sys_bind(ctx, p, fd, (in6.ntop(src), 0, 0, szone))
        st.src6 = src
    else:
        st.src6 = _source_by_connect(ctx, st, nexthop)


def _source_by_connect(ctx: SyscallCtx, st: _Ping6State, nexthop: tuple[str, int, int, int] | None) -> int:
    """ping6.c's way to its source address: connect a UDP socket to the destination (with
    the same next hop and interface) and read the address the kernel gave it. No
    route: no ping6 ("UDP connect")."""
    p = st.p
    v6 = pysocket.IPPROTO_IPV6
    fd = S.sys_socket(ctx, p, pysocket.AF_INET6, pysocket.SOCK_DGRAM, 0)
    try:
        if nexthop is not None:
            S.sys_setsockopt(ctx, p, fd, v6, IPV6_NEXTHOP, nexthop)
        S.sys_connect(ctx, p, fd, (in6.ntop(st.dst6), 9, 0, st.zone))   # any port: nothing is sent
        name = S.sys_getsockname(ctx, p, fd)
        return in6.pton(str(name[0]).split("%")[0])
    except OSError as e:
        code = e.errno if e.errno is not None else errno.EHOSTUNREACH
        raise OSError(code, f"UDP connect: {strerror(code)}") from None
    finally:
        S.sys_close(ctx, p, fd)


IPV6_NEXTHOP = getattr(pysocket, "IPV6_NEXTHOP", 9)
IPV6_RTHDR = getattr(pysocket, "IPV6_RTHDR", 57)


def rthdr0(hops: list[int]) -> bytes:
    """RFC 3542 7's ``inet6_rth_init`` and ``inet6_rth_add`` for a type 0 header."""
    return bytes((0, 2 * len(hops), 0, len(hops))) + bytes(4) + b"".join(in6.pack(a) for a in hops)


def ping6(k: NetKernel, argv: list[str]) -> Any:
    o = parse6(argv)
    if k.inet6 is None:
        raise OSError(errno.EPROTONOSUPPORT, "ping6: socket: Protocol not supported")
    return k.sched.syscall(ping_call, k, k.curproc, o, _start6)
