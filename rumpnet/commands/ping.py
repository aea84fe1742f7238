"""ping(8): ICMP echo through the kernel's own raw socket, NetBSD syntax and output
(``sbin/ping/ping.c``). The run itself, its statistics and its one system call are
``rumpnet.commands.ping_common``'s, shared with ping6; here are IPv4's command line,
echo, reply and error lines.
"""

from __future__ import annotations

import errno
import socket as pysocket
import struct
from typing import TYPE_CHECKING, Any

from rumpkern.sched import SyscallCtx
from rumpnet import sys_socket as S  # noqa: N812
from rumpnet.commands import UsageError, strerror
from rumpnet.commands.ping_common import OptSpec, PingOptions, PingState, close_socket, getopt, ping_call, positive, set_options
from rumpnet.netinet.in_addr import ntoa
from rumpnet.netinet.in_cksum import in_cksum
from rumpnet.uipc_socket import MSG_DONTWAIT

if TYPE_CHECKING:
    from rumpkern.lwproc import Proc
    from rumpnet.net_kernel import NetKernel

USAGE = """usage: ping [-aCDdfLnoPQqRrv] [-c count] [-g gateway] [-h host] [-I addr] [-i interval]
	[-l preload] [-p pattern] [-s packetsize] [-t tos] [-T ttl] [-w maxwait] host"""

# sbin/ping/ping.c's getopt string, for a check of the leading options (rump.ping --help
# and bad options answer without a server); parse() reads options anywhere, as before.
OPTSTRING = "aCDdfLnoPQqRrvc:i:s:w:W:T:I:l:t:p:g:h:"

ICMP_ECHOREPLY = 0
ICMP_UNREACH = 3
ICMP_SOURCEQUENCH = 4
ICMP_REDIRECT = 5
ICMP_ECHO = 8
ICMP_TIMXCEED = 11
ICMP_PARAMPROB = 12
MAXPACKET = 65535 - 60 - 8

_UNREACH = {
    0: "Destination Net Unreachable", 1: "Destination Host Unreachable",
    2: "Destination Protocol Unreachable", 3: "Destination Port Unreachable",
    5: "Source Route Failed", 6: "Unreachable unknown net", 7: "Unreachable unknown host",
    8: "Unreachable host isolated", 9: "Net prohibited access", 10: "Host prohibited access",
    11: "Bad TOS for net", 12: "Bad TOS for host", 13: "Communication prohibited",
    14: "Host precedence violation", 15: "Precedence cutoff",
}
_REDIRECT = {0: "Redirect: Network", 1: "Redirect: Host", 2: "Redirect: Type of Service and Network",
             3: "Redirect: Type of Service and Host"}
_ECHO = struct.Struct("!BBHHH")


# ping.c's options with a value, and its words for a bad one
_OPTIONS = {
    "c": OptSpec("count", "count", int, positive, "ping: Bad/invalid number of packets: {val}"),
    "i": OptSpec("interval", "interval", float, positive, "ping: Bad/invalid interval: {val}"),
    "s": OptSpec("datalen", "packet size", int, lambda v: 0 <= v <= MAXPACKET, "ping: Bad/invalid packet size: {val}"),
    "w": OptSpec("maxwait", "maxwait", float, positive, "ping: Bad/invalid maxwait time: {val}"),
    "W": OptSpec("maxwait", "maxwait", float, positive, "ping: Bad/invalid maxwait time: {val}"),
    "T": OptSpec("ttl", "ttl", int, lambda v: 0 <= v <= 255, "ping: ttl {val} out of range"),
    "I": OptSpec("source"),
    "l": OptSpec("preload", "preload"),
}


def parse(argv: list[str]) -> PingOptions:
    """ping's command line (UsageError / OSError naming the bad value)."""
    o = PingOptions()
    opts, pos = getopt(argv, "ciswWTIltpgh", "nqvoaCDdfLPQRr", USAGE)
    set_options(o, opts, _OPTIONS)
    if len(pos) != 1:
        raise UsageError(USAGE)
    o.host = pos[0]
    return o


class _Ping4State(PingState):
    """ping's IPv4 state: ICMP echoes summed here, replies read with their IP header."""

    def _payload(self, seq: int, now: float) -> bytes:
        msg = bytearray(_ECHO.pack(ICMP_ECHO, 0, 0, self.ident, seq & 0xFFFF)) + self._data(now)
        c = in_cksum(msg)
        msg[2] = c >> 8
        msg[3] = c & 0xFF
        return bytes(msg)

    def _target(self) -> Any:
        return (ntoa(self.dst), 0)

    def receive(self, ctx: SyscallCtx) -> bytes | None:
        """The next datagram on ping's socket; None when none is queued."""
        if self.fd is None:
            return None
        try:
            data, _src = S.sys_recvfrom(ctx, self.p, self.fd, 65535, MSG_DONTWAIT)
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return None
            raise
        return bytes(data) if data else None

    def pr_pack(self, buf: bytes, now: float) -> None:
        if len(buf) < 20:
            return
        hlen = (buf[0] & 0xF) << 2
        ttl = buf[8]
        src = struct.unpack_from("!I", buf, 12)[0]
        cc = len(buf) - hlen
        if cc < 8:
            if self.o.verbose:
                self.emit(f"packet too short ({len(buf)} bytes) from {ntoa(src)}")
            return
        icmp = buf[hlen:]
        itype, code, _, iid, seq = _ECHO.unpack_from(icmp)
        if itype == ICMP_ECHOREPLY and iid == self.ident:
            triptime, dup = self.record_reply(seq, icmp, now)
            self.emit_reply(f"{cc} bytes from {ntoa(src)}: icmp_seq={seq} ttl={ttl}", triptime, dup)
            return
        text = self.pr_icmph(icmp, itype, code, src, cc)
        if text is not None:
            self.emit(text)

    def _ours(self, icmp: bytes) -> tuple[bool, int | None]:
        """Is the datagram an ICMP error quotes one of our echo requests? (and its seq)."""
        inner = icmp[8:]
        if len(inner) < 20:
            return False, None
        ihl = (inner[0] & 0xF) << 2
        if inner[9] != 1 or len(inner) < ihl + 8:
            return False, None
        t, _, _, iid, seq = _ECHO.unpack_from(inner, ihl)
        return iid == self.ident, seq if t == ICMP_ECHO else None

    def pr_icmph(self, icmp: bytes, itype: int, code: int, src: int, cc: int) -> str | None:
        if itype in (ICMP_UNREACH, ICMP_SOURCEQUENCH, ICMP_REDIRECT, ICMP_TIMXCEED, ICMP_PARAMPROB):
            ours, seq = self._ours(icmp)
            if not ours and not self.o.verbose:
                return None
            if self.o.quiet and not self.o.verbose:
                return None
            if itype == ICMP_UNREACH:
                if code == 4:
                    nextmtu = struct.unpack_from("!H", icmp, 6)[0]
                    msg = f"frag needed and DF set.  Next MTU={nextmtu}"
                else:
                    msg = _UNREACH.get(code, f"Bad Destination Unreachable Code: {code}")
            elif itype == ICMP_SOURCEQUENCH:
                msg = "Source Quench"
            elif itype == ICMP_REDIRECT:
                gw = struct.unpack_from("!I", icmp, 4)[0]
                msg = _REDIRECT.get(code, f"Redirect: Bad Code: {code}") + f" New addr: {ntoa(gw)}"
            elif itype == ICMP_TIMXCEED:
                msg = {0: "Time To Live exceeded", 1: "Frag reassembly time exceeded"}.get(
                    code, f"Time exceeded, Bad Code: {code}")
            else:
                msg = f"Parameter problem: pointer = 0x{icmp[4]:02x}"
            if seq is not None:
                msg += f" for icmp_seq={seq}"
            return f"{cc} bytes from {ntoa(src)}: {msg}"
        if not self.o.verbose or itype == ICMP_ECHOREPLY:
            return None
        names = {ICMP_ECHO: "Echo Request", 9: "Router Discovery Advert", 10: "Router Discovery Solicit",
                 13: "Timestamp", 14: "Timestamp Reply", 15: "Information Request",
                 16: "Information Reply", 17: "Address Mask Request", 18: "Address Mask Reply"}
        msg = names.get(itype, f"Bad ICMP type: {itype}")
        if itype == ICMP_ECHO:
            _, _, _, iid, seq = _ECHO.unpack_from(icmp)
            msg = f"Echo Request: ID={iid} seq={seq}"
        return f"{cc} bytes from {ntoa(src)}: {msg}"

def _resolve(host: str) -> int:
    from rumpnet.netinet.in_addr import aton

    if host == "localhost":
        return 0x7F000001
    try:
        return aton(host)
    except OSError:
        raise OSError(errno.EINVAL, f"ping: Cannot resolve \"{host}\" (Unknown host)") from None


def _start(ctx: SyscallCtx, k: NetKernel, p: Proc, o: PingOptions) -> PingState:
    dst = _resolve(o.host)
    st = _Ping4State(k, p, o, dst)
    try:
        st.fd = S.sys_socket(ctx, p, pysocket.AF_INET, pysocket.SOCK_RAW, pysocket.IPPROTO_ICMP)
    except OSError as e:
        code = e.errno if e.errno is not None else errno.EPROTONOSUPPORT
        raise OSError(code, f"ping: socket: {strerror(code)}") from None
    try:
        if o.ttl is not None:
            S.sys_setsockopt(ctx, p, st.fd, pysocket.IPPROTO_IP, pysocket.IP_TTL, o.ttl)
        if o.source is not None:
            S.sys_bind(ctx, p, st.fd, (o.source, 0))
    except OSError as e:
        close_socket(ctx, st)
        code = e.errno if e.errno is not None else errno.EINVAL
        what = "bind" if o.source is not None else "setsockopt"
        raise OSError(code, f"ping: {what}: {strerror(code)}") from None
    st.emit(f"PING {o.host} ({ntoa(dst)}): {o.datalen} data bytes")
    for _ in range(o.preload):
        st.pinger(ctx, st.start)
    st.next_tx = st.start
    return st


def ping(k: NetKernel, argv: list[str]) -> Any:
    """ping(8) on kernel ``k`` (see rumpnet.commands)."""
    o = parse(argv)
    if k.inet is None:
        raise OSError(errno.EPROTONOSUPPORT, "ping: socket: Protocol not supported")
    p = k.curproc
    return k.sched.syscall(ping_call, k, p, o, _start)
