"""ping(8): ICMP echo through the kernel's own raw socket, NetBSD syntax and output.

ping is one system call (``k.sched.syscall``) that keeps its state in the call's context
and sleeps on the socket's receive channel (or until the next packet is due), so it works
from a plain thread, against a kernel served in the background, and awaited from a
coroutine on the scheduler's loop.
"""

from __future__ import annotations

import errno
import math
import socket as pysocket
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rumpkern.sched import Sleep, SyscallCtx
from rumpnet import sys_socket as S  # noqa: N812
from rumpnet.commands import PingFailed, UsageError, strerror
from rumpnet.netinet.in_addr import ntoa
from rumpnet.netinet.in_cksum import in_cksum
from rumpnet.uipc_socket import MSG_DONTWAIT, Socket

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
PHDR_LEN = 8  # the send time at the start of the data (NetBSD's struct tv32)
MAXWAIT_DEFAULT = 10.0
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
_TIME = struct.Struct("!d")
_ECHO = struct.Struct("!BBHHH")


class PingOptions:
    """ping's options, parsed."""

    def __init__(self) -> None:
        self.count: int | None = None
        self.interval = 1.0
        self.datalen = 56
        self.ttl: int | None = None
        self.maxwait: float | None = None
        self.numeric = False
        self.quiet = False
        self.verbose = False
        self.once = False
        self.preload = 0
        self.source: str | None = None
        self.host = ""

    def flag(self, ch: str) -> None:
        """-n, -q, -v, -o; the others are accepted and change nothing here."""
        if ch == "n":
            self.numeric = True
        elif ch == "q":
            self.quiet = True
        elif ch == "v":
            self.verbose = True
        elif ch == "o":
            self.once = True


def _number(opt: str, text: str, kind: type = int) -> Any:
    try:
        v = kind(text)
    except ValueError:
        raise OSError(errno.EINVAL, f"ping: invalid {opt} value: `{text}'") from None
    return v


def getopt(argv: list[str], with_arg: str, flags: str, usage: str,
           prog: str = "ping") -> tuple[list[tuple[str, str]], list[str]]:
    """getopt(3) as ping's and ping6's, options anywhere: (option, value) pairs in order
    (value "" for a flag) and the operands; UsageError with getopt's message and the
    usage for an unknown option or a missing value."""
    args = list(argv)
    opts: list[tuple[str, str]] = []
    pos: list[str] = []
    while args:
        a = args.pop(0)
        if not a.startswith("-") or len(a) < 2:
            pos.append(a)
            continue
        for j, ch in enumerate(a[1:], 1):
            if ch in with_arg:
                val = a[j + 1:] or (args.pop(0) if args else None)
                if val is None:
                    raise UsageError(f"{prog}: option requires an argument -- {ch}\n{usage}")
                opts.append((ch, val))
                break
            if ch not in flags:
                raise UsageError(f"{prog}: unknown option -- {ch}\n{usage}")
            opts.append((ch, ""))
    return opts, pos


def parse(argv: list[str]) -> PingOptions:
    """ping's command line (UsageError / OSError naming the bad value)."""
    o = PingOptions()
    opts, pos = getopt(argv, "ciswWTIltpgh", "nqvoaCDdfLPQRr", USAGE)
    for ch, val in opts:
        if ch == "c":
            o.count = _number("count", val)
            if o.count <= 0:
                raise OSError(errno.EINVAL, f"ping: Bad/invalid number of packets: {val}")
        elif ch == "i":
            o.interval = _number("interval", val, float)
            if o.interval <= 0:
                raise OSError(errno.EINVAL, f"ping: Bad/invalid interval: {val}")
        elif ch == "s":
            o.datalen = _number("packet size", val)
            if not 0 <= o.datalen <= MAXPACKET:
                raise OSError(errno.EINVAL, f"ping: Bad/invalid packet size: {val}")
        elif ch in "wW":
            o.maxwait = _number("maxwait", val, float)
            if o.maxwait <= 0:
                raise OSError(errno.EINVAL, f"ping: Bad/invalid maxwait time: {val}")
        elif ch == "T":
            o.ttl = _number("ttl", val)
            if not 0 <= o.ttl <= 255:
                raise OSError(errno.EINVAL, f"ping: ttl {val} out of range")
        elif ch == "I":
            o.source = val
        elif ch == "l":
            o.preload = _number("preload", val)
        else:
            o.flag(ch)
    if len(pos) != 1:
        raise UsageError(USAGE)
    o.host = pos[0]
    if o.count is None and o.maxwait is None:
        # NetBSD's ping runs until interrupted; a call has to return: one packet.
        o.count = 1
    return o


class _PingState:
    """ping's variables (NetBSD ping.c's globals), kept across retries of the call."""

    def __init__(self, k: NetKernel, p: Proc, o: PingOptions, dst: int) -> None:
        self.k = k
        self.p = p
        self.o = o
        self.dst = dst
        self.ident = (0x5A00 + k.net.next_ping_ident()) & 0xFFFF
        self.fd: int | None = None
        self.lines: list[str] = []
        self.warnings: list[str] = []
        self.ntransmitted = 0
        self.nreceived = 0
        self.nrepeats = 0
        self.send_errno = 0
        self.seen: set[int] = set()
        self.sent_at: dict[int, float] = {}
        self.tmin = math.inf
        self.tmax = 0.0
        self.tsum = 0.0
        self.tsumsq = 0.0
        self.start = k.sched.now()
        self.next_tx = self.start
        self.last_tx = self.start
        self.done = False

    # -- output ----------------------------------------------------------------------
    SEND_WARNING = "ping: sendto"

    def _data(self, now: float) -> bytearray:
        """The echo's data: the send time, then bytes counting up (NetBSD's fill)."""
        n = self.o.datalen
        data = bytearray(n)
        for i in range(PHDR_LEN, n):
            data[i] = i & 0xFF
        if n >= PHDR_LEN:
            data[0:PHDR_LEN] = _TIME.pack(now)
        return data

    def _payload(self, seq: int, now: float) -> bytes:
        msg = bytearray(_ECHO.pack(ICMP_ECHO, 0, 0, self.ident, seq & 0xFFFF)) + self._data(now)
        c = in_cksum(msg)
        msg[2] = c >> 8
        msg[3] = c & 0xFF
        return bytes(msg)

    def _target(self) -> Any:
        return (ntoa(self.dst), 0)

    def pinger(self, ctx: SyscallCtx, now: float) -> None:
        seq = self.ntransmitted
        pkt = self._payload(seq, now)
        self.sent_at[seq & 0xFFFF] = now
        try:
            assert self.fd is not None
            S.sys_sendto(ctx, self.p, self.fd, pkt, 0, self._target())
        except OSError as e:
            code = e.errno if e.errno is not None else errno.EIO
            self.send_errno = code
            self.emit_warning(f"{self.SEND_WARNING}: {strerror(code)}")
        self.ntransmitted += 1
        self.last_tx = now
        self.next_tx += self.o.interval
        if self.next_tx < now - 0.1:
            self.next_tx = now + self.o.interval

    def emit(self, line: str) -> None:
        self.lines.append(line)

    def emit_warning(self, line: str) -> None:
        self.lines.append(line)
        self.warnings.append(line)

    # -- input -----------------------------------------------------------------------
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
            self.nreceived += 1
            sent = self.sent_at.get(seq)
            if self.o.datalen >= PHDR_LEN and len(icmp) >= 8 + PHDR_LEN:
                sent = _TIME.unpack_from(icmp, 8)[0]
            triptime = max(0.0, now - sent) if sent is not None else 0.0
            self.tsum += triptime
            self.tsumsq += triptime * triptime
            self.tmin = min(self.tmin, triptime)
            self.tmax = max(self.tmax, triptime)
            dup = seq in self.seen
            if dup:
                self.nrepeats += 1
                self.nreceived -= 1
            else:
                self.seen.add(seq)
            if self.o.quiet:
                return
            line = f"{cc} bytes from {ntoa(src)}: icmp_seq={seq} ttl={ttl}"
            if self.o.datalen >= PHDR_LEN:
                line += f" time={triptime * 1000.0:.3f} ms"
            if dup:
                line += " (DUP!)"
            self.emit(line)
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

    # -- the end ---------------------------------------------------------------------
    def summary(self) -> str:
        out = [f"----{self.o.host} PING Statistics----"]
        s = f"{self.ntransmitted} packets transmitted, {self.nreceived} packets received, "
        if self.nrepeats:
            s += f"+{self.nrepeats} duplicates, "
        if self.ntransmitted:
            if self.nreceived > self.ntransmitted:
                s += "-- somebody's duplicating packets!"
            else:
                s += f"{(self.ntransmitted - self.nreceived) * 100.0 / self.ntransmitted:.1f}% packet loss"
        out.append(s)
        if self.nreceived and self.o.datalen >= PHDR_LEN:
            n = self.nreceived + self.nrepeats
            avg = self.tsum / n
            var = (self.tsumsq - n * avg * avg) / (n - 1) if n > 1 else 0.0
            std = math.sqrt(max(0.0, var))
            out.append(f"round-trip min/avg/max/stddev = {self.tmin * 1000.0:.3f}/{avg * 1000.0:.3f}/"
                       f"{self.tmax * 1000.0:.3f}/{std * 1000.0:.3f} ms")
        return "\n".join(out)

    def output(self) -> str:
        return "\n".join(self.lines) + "\n\n" + self.summary() + "\n"


def _resolve(host: str) -> int:
    from rumpnet.netinet.in_addr import aton

    if host == "localhost":
        return 0x7F000001
    try:
        return aton(host)
    except OSError:
        raise OSError(errno.EINVAL, f"ping: Cannot resolve \"{host}\" (Unknown host)") from None


def _close(ctx: SyscallCtx, st: _PingState) -> None:
    if st.fd is not None:
        fd, st.fd = st.fd, None
        # A call made inside ping's own call gets its own scratch context: ping's state
        # lives in ctx.data, and close may keep restart state there (SO_LINGER).
        try:
            S.sys_close(SyscallCtx(), st.p, fd)
        except OSError:
            pass


def _start(ctx: SyscallCtx, k: NetKernel, p: Proc, o: PingOptions) -> _PingState:
    dst = _resolve(o.host)
    st = _PingState(k, p, o, dst)
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
        _close(ctx, st)
        code = e.errno if e.errno is not None else errno.EINVAL
        what = "bind" if o.source is not None else "setsockopt"
        raise OSError(code, f"ping: {what}: {strerror(code)}") from None
    st.emit(f"PING {o.host} ({ntoa(dst)}): {o.datalen} data bytes")
    for _ in range(o.preload):
        st.pinger(ctx, st.start)
    st.next_tx = st.start
    return st


def _ping_call(ctx: SyscallCtx, k: NetKernel, p: Proc, o: PingOptions,
               start: Callable[[SyscallCtx, NetKernel, Proc, Any], _PingState] | None = None) -> str:
    """ping's (and ping6's, with its own ``start``) one system call."""
    # ping manages its own timeouts: every attempt starts a fresh sleep.
    ctx.timed_out = False
    ctx.deadline = None
    st: _PingState | None = ctx.data
    if st is None:
        st = ctx.data = (start or _start)(ctx, k, p, o)
    try:
        wait = _step(ctx, st)
    except BaseException:
        _close(ctx, st)
        raise
    if wait is not None:
        fp = p.fdt.files.get(st.fd) if st.fd is not None else None
        chans = [fp.obj.rcv_chan] if fp is not None and isinstance(fp.obj, Socket) else []
        raise Sleep(chans, wait)
    _close(ctx, st)
    text = st.output()
    if st.nreceived > 0:
        return text
    if st.warnings:
        msg = "\n".join(st.warnings)
        code = st.send_errno or errno.EHOSTUNREACH
    else:
        msg = st.summary().splitlines()[1]
        code = errno.ETIMEDOUT
    raise PingFailed(code, msg, text, 2)


def _step(ctx: SyscallCtx, st: _PingState) -> float | None:
    """Receive what arrived, send what is due; the seconds to sleep, or None when done."""
    o = st.o
    now = st.k.sched.now()
    while True:
        # Drain the socket.
        while (data := st.receive(ctx)) is not None:
            st.pr_pack(data, now)
            if o.count is not None and st.nreceived >= o.count:
                return None
            if o.once and st.nreceived > 0:
                return None
        if o.maxwait is not None and now >= st.start + o.maxwait:
            return None
        events: list[float] = []
        if o.count is None or st.ntransmitted < o.count:
            if now >= st.next_tx:
                st.pinger(ctx, now)
                continue  # the reply may already be queued (a local destination)
            events.append(st.next_tx)
        else:
            linger = 2 * st.tmax if st.nreceived else 0.0
            linger = max(linger, MAXWAIT_DEFAULT if not st.nreceived else 0.0, o.interval)
            end = st.last_tx + linger
            if now >= end:
                return None
            events.append(end)
        if o.maxwait is not None:
            events.append(st.start + o.maxwait)
        return max(1e-6, min(events) - now)


def ping(k: NetKernel, argv: list[str]) -> Any:
    """ping(8) on kernel ``k`` (see rumpnet.commands)."""
    o = parse(argv)
    if k.inet is None:
        raise OSError(errno.EPROTONOSUPPORT, "ping: socket: Protocol not supported")
    p = k.curproc
    return k.sched.syscall(_ping_call, k, p, o)
