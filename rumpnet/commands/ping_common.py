"""What ping(8) and ping6(8) share (``rumpnet.commands.ping``, ``rumpnet.commands.ping6``):
the options both take, getopt as theirs, the state of one run (counters, the send
schedule, round-trip statistics), the reply line's tail and the statistics, and the one
system call that sends, receives and sleeps.

ping is one system call (``k.sched.syscall``) that keeps its state in the call's context
and sleeps on the socket's receive channel (or until the next packet is due), so it works
from a plain thread, against a kernel served in the background, and awaited from a
coroutine on the scheduler's loop.
"""

from __future__ import annotations

import errno
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rumpkern.sched import Sleep, SyscallCtx
from rumpnet import sys_socket as S  # noqa: N812
from rumpnet.commands import PingFailed, UsageError, strerror
from rumpnet.uipc_socket import Socket

if TYPE_CHECKING:
    from rumpkern.lwproc import Proc
    from rumpnet.net_kernel import NetKernel

PHDR_LEN = 8  # the send time at the start of the data (NetBSD's struct tv32)
MAXWAIT_DEFAULT = 10.0
_TIME = struct.Struct("!d")


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


def number(opt: str, text: str, kind: type = int) -> Any:
    try:
        v = kind(text)
    except ValueError:
        raise OSError(errno.EINVAL, f"ping: invalid {opt} value: `{text}'") from None
    return v


def positive(v: float) -> bool:
    """A count, an interval or a wait: more than 0."""
    return v > 0


@dataclass(frozen=True)
class OptSpec:
    """One option with a value, as data: the PingOptions attribute it sets, and for a
    number its name in number()'s message, its type, the range check and the message
    (``{val}``: the text given) the tool prints when the value is out of range."""

    attr: str
    what: str = ""                              # "" for a plain string (an address, a name)
    kind: type = int
    ok: Callable[[Any], bool] | None = None
    bad: str = ""


def set_options(o: PingOptions, opts: list[tuple[str, str]], table: dict[str, OptSpec]) -> None:
    """Apply getopt's pairs to ``o``: options in ``table`` set their attribute (OSError
    EINVAL with the tool's message for a bad value); the others are flags."""
    for ch, val in opts:
        spec = table.get(ch)
        if spec is None:
            o.flag(ch)
            continue
        v = number(spec.what, val, spec.kind) if spec.what else val
        if spec.ok is not None and not spec.ok(v):
            raise OSError(errno.EINVAL, spec.bad.format(val=val))
        setattr(o, spec.attr, v)
    if o.count is None and o.maxwait is None:
        o.count = 1     # NetBSD's ping runs until interrupted; a call has to return: one packet


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


class PingState:
    """ping's and ping6's variables (their ping.c's globals), kept across retries of the
    call; a family's subclass says how an echo is built and sent (``_payload``,
    ``_target``), how a datagram is read (``receive``, ``pr_pack``) and the words its
    NetBSD tool prints (``STATS_HEADER``, ``STDDEV_NAME``, ``DUP``, ``_stddev``)."""

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
        """The echo request with sequence number ``seq``, as the socket sends it."""
        raise NotImplementedError

    def _target(self) -> Any:
        """The destination's socket address."""
        raise NotImplementedError

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
        """The next datagram on the socket; None when none is queued."""
        raise NotImplementedError

    def pr_pack(self, msg: bytes, now: float) -> None:
        """Count and print one received datagram."""
        raise NotImplementedError

    def record_reply(self, seq: int, icmp: bytes, now: float) -> tuple[float, bool]:
        """One of our echo replies came (ping.c's and ping6.c's pr_pack): count it, take
        its round trip from the send time it carries (or the one we noted) into the
        statistics; (round trip, whether it is a duplicate)."""
        self.nreceived += 1
        sent = self.sent_at.get(seq)
        if self.o.datalen >= PHDR_LEN and len(icmp) >= 8 + PHDR_LEN:
            sent = _TIME.unpack_from(icmp, 8)[0]
        t = max(0.0, now - sent) if sent is not None else 0.0
        self.tsum += t
        self.tsumsq += t * t
        self.tmin = min(self.tmin, t)
        self.tmax = max(self.tmax, t)
        dup = seq in self.seen
        if dup:
            self.nrepeats += 1
            self.nreceived -= 1
        else:
            self.seen.add(seq)
        return t, dup

    def emit_reply(self, line: str, triptime: float, dup: bool) -> None:
        """A reply's line: ``line`` (who, icmp_seq, ttl or hlim), then the time when the
        echo carried it, then the duplicate mark; nothing with -q."""
        if self.o.quiet:
            return
        if self.o.datalen >= PHDR_LEN:
            line += f" time={triptime * 1000.0:.3f} ms"
        self.emit(line + (self.DUP if dup else ""))

    # -- the end ---------------------------------------------------------------------
    STATS_HEADER = "----{host} PING Statistics----"
    STDDEV_NAME = "stddev"
    DUP = " (DUP!)"

    def _stddev(self, n: int, avg: float) -> float:
        """ping.c's: the sample standard deviation."""
        var = (self.tsumsq - n * avg * avg) / (n - 1) if n > 1 else 0.0
        return math.sqrt(max(0.0, var))

    def summary(self) -> str:
        """The statistics lines (ping.c's and ping6.c's summary)."""
        out = [self.STATS_HEADER.format(host=self.o.host)]
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
            std = self._stddev(n, avg)
            out.append(f"round-trip min/avg/max/{self.STDDEV_NAME} = {self.tmin * 1000.0:.3f}/"
                       f"{avg * 1000.0:.3f}/{self.tmax * 1000.0:.3f}/{std * 1000.0:.3f} ms")
        return "\n".join(out)

    def output(self) -> str:
        return "\n".join(self.lines) + "\n\n" + self.summary() + "\n"


def close_socket(ctx: SyscallCtx, st: PingState) -> None:
    if st.fd is not None:
        fd, st.fd = st.fd, None
        # A call made inside ping's own call gets its own scratch context: ping's state
        # lives in ctx.data, and close may keep restart state there (SO_LINGER).
        try:
            S.sys_close(SyscallCtx(), st.p, fd)
        except OSError:
            pass


def ping_call(ctx: SyscallCtx, k: NetKernel, p: Proc, o: PingOptions,
              start: Callable[[SyscallCtx, NetKernel, Proc, Any], PingState]) -> str:
    """ping's and ping6's one system call; ``start`` opens the family's socket and
    makes its state on the first attempt."""
    # ping manages its own timeouts: every attempt starts a fresh sleep.
    ctx.timed_out = False
    ctx.deadline = None
    st: PingState | None = ctx.data
    if st is None:
        st = ctx.data = start(ctx, k, p, o)
    try:
        wait = _step(ctx, st)
    except BaseException:
        close_socket(ctx, st)
        raise
    if wait is not None:
        fp = p.fdt.files.get(st.fd) if st.fd is not None else None
        chans = [fp.obj.rcv_chan] if fp is not None and isinstance(fp.obj, Socket) else []
        raise Sleep(chans, wait)
    close_socket(ctx, st)
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


def _step(ctx: SyscallCtx, st: PingState) -> float | None:
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


