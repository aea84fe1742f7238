"""The kernel's own tools for packetdrill's backtick lines: ``sysctl``, ``sockstat`` and
``tcpdrop``, as FreeBSD has them (the syntax the FreeBSD TCP test suite uses), run on
the kernel under test.

``sysctl -w name=value``: FreeBSD names with the same meaning as one of ours are mapped
onto it (:data:`FREEBSD_SYSCTL`, with unit conversions); names that exist in our tree as
they are written are set as they are; any other name is accepted, changes nothing and is
reported on standard error (``rump_packetdrill`` lists each such name once).
"""

from __future__ import annotations

import errno
import getopt
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from rumpnet.net_kernel import net_kernel, netinet
from rumpnet.netinet.in_addr import ntoa
from rumpnet.netinet.tcp_fsm import TcpState
from rumpnet.netinet6 import in6
from rumpnet.packetdrill.wire import Reply, Request, fatal

if TYPE_CHECKING:
    from rumpnet.packetdrill.session import Session

IGNORED_MARK = "sysctl: ignored"


@dataclass(frozen=True)
class Mapping:
    """A FreeBSD sysctl with the same meaning as ours, and how its value converts."""

    name: str
    to_ours: Callable[[int], int] = int
    to_theirs: Callable[[int], int] = int


def _ms_to_s(v: int) -> int:
    return max(1, (v + 999) // 1000) if v > 0 else 0


def _s_to_ms(v: int) -> int:
    return v * 1000


def _ecn_mode(v: int) -> int:
    """FreeBSD's net.inet.tcp.ecn.enable: 0 off, 1 request and accept, 2 accept only --
    ours, the same numbers; 3 and 4 are FreeBSD 14's AccECN modes, which the stack lacks."""
    if v in (3, 4):
        raise ToolError(f"net.inet.tcp.ecn.enable={v}: AccECN is not implemented "
                        "(0 off, 1 request and accept, 2 accept only)")
    return v


FREEBSD_SYSCTL: dict[str, Mapping] = {
    "kern.ipc.maxsockbuf": Mapping("kern.sbmax"),
    "net.inet.tcp.sack.enable": Mapping("net.inet.tcp.sack"),
    "net.inet.tcp.rexmit_initial": Mapping("net.inet.tcp.init_rto"),     # both milliseconds
    "net.inet.tcp.rexmit_min": Mapping("net.inet.tcp.rtomin"),
    "net.inet.tcp.keepidle": Mapping("net.inet.tcp.keepidle", _ms_to_s, _s_to_ms),
    "net.inet.tcp.keepintvl": Mapping("net.inet.tcp.keepintvl", _ms_to_s, _s_to_ms),
    "net.inet.tcp.keepinit": Mapping("net.inet.tcp.keepinit", _ms_to_s, _s_to_ms),
    "net.inet.tcp.ecn.enable": Mapping("net.inet.tcp.ecn.enable", _ecn_mode),     # RFC 3168
}

# FreeBSD's names for the states (sys/netinet/tcp_fsm.h tcpstates[]).
STATE_NAMES = {
    TcpState.CLOSED: "CLOSED", TcpState.LISTEN: "LISTEN", TcpState.SYN_SENT: "SYN_SENT",
    TcpState.SYN_RECEIVED: "SYN_RCVD", TcpState.ESTABLISHED: "ESTABLISHED",
    TcpState.CLOSE_WAIT: "CLOSE_WAIT", TcpState.FIN_WAIT_1: "FIN_WAIT_1",
    TcpState.CLOSING: "CLOSING", TcpState.LAST_ACK: "LAST_ACK",
    TcpState.FIN_WAIT_2: "FIN_WAIT_2", TcpState.TIME_WAIT: "TIME_WAIT",
}


class ToolError(Exception):
    """A tool failed: its message goes to standard error, exit status 1 (2: usage)."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Conn:
    """One line of sockstat: a TCP endpoint of IP version ``ipv`` (4 or 6), with the
    process and fd holding it if any."""

    ipv: int
    laddr: int
    lport: int
    faddr: int
    fport: int
    state: TcpState
    comm: str = "?"
    pid: int | None = None
    fd: int | None = None
    cb: Any = None

    def ntop(self, addr: int) -> str:
        return in6.ntop(addr) if self.ipv == 6 else ntoa(addr)

    def addresses(self) -> tuple[str, str, str, str]:
        """laddr, lport, faddr, fport as tcpdrop(8) takes them."""
        return self.ntop(self.laddr), str(self.lport), self.ntop(self.faddr), str(self.fport)


class Tools:
    """The kernel-tool half of a :class:`Session`."""

    def __init__(self, session: Session) -> None:
        self.s = session
        self._tools: dict[str, Callable[[list[str]], tuple[str, str]]] = {
            "sysctl": self.sysctl, "sockstat": self.sockstat, "tcpdrop": self.tcpdrop,
        }

    def command(self, req: Request) -> Reply:
        argv = [a.decode(errors="replace") for a in req.payload.split(b"\0")[:-1]]
        if not argv or argv[0] not in self._tools:
            return fatal(f"unknown kernel tool {argv[:1]}")
        try:
            out, err = self._tools[argv[0]](argv[1:])
            status = 0
        except ToolError as e:
            out, err, status = "", f"{argv[0]}: {e}\n", e.status
        except getopt.GetoptError as e:
            out, err, status = "", f"{argv[0]}: {e}\n", 2
        self.s.loop.settle()
        return Reply(ret=status, aux=len(out.encode()), payload=out.encode() + err.encode())

    # -- sysctl ------------------------------------------------------------------------
    def sysctl(self, argv: list[str]) -> tuple[str, str]:
        opts, names = getopt.getopt(argv, "wnqa")
        flags = {o for o, _ in opts}
        out: list[str] = []
        err: list[str] = []
        for arg in names:
            name, eq, value = arg.partition("=")
            if eq:
                line = self._sysctl_write(name, value, err)
            else:
                line = self._sysctl_read(name)
            if line is not None and "-q" not in flags:
                out.append(line.split(": ", 1)[1] if "-n" in flags else line)
        return "".join(x + "\n" for x in out), "".join(err)

    def _node(self, name: str) -> tuple[str, Mapping | None] | None:
        """Our node for a FreeBSD name: (our name, its mapping), or None if we have none."""
        m = FREEBSD_SYSCTL.get(name)
        ours = m.name if m is not None else name
        try:
            self.s.k.sysctl_tree.lookup(ours)
        except OSError:
            return None
        return ours, m

    def _sysctl_read(self, name: str) -> str:
        found = self._node(name)
        if found is None:
            raise ToolError(f"unknown oid '{name}'")
        ours, m = found
        value = self.s.k.sysctl_tree.read(ours)
        return f"{name}: {m.to_theirs(cast(int, value)) if m is not None else value}"

    def _sysctl_write(self, name: str, value: str, err: list[str]) -> str | None:
        found = self._node(name)
        if found is None:
            err.append(f"{IGNORED_MARK} {name}={value}: no counterpart in rumpnet\n")
            return None
        ours, m = found
        tree = self.s.k.sysctl_tree
        try:
            new: Any = m.to_ours(int(value, 0)) if m is not None else value
            old = tree.write(ours, new)
        except ValueError:
            raise ToolError(f"invalid integer '{value}'") from None
        except OSError as e:
            raise ToolError(f"{name}={value}: {e.strerror}") from None
        shown_old = m.to_theirs(cast(int, old)) if m is not None else old
        return f"{name}: {shown_old} -> {value}"

    # -- the TCP endpoints -------------------------------------------------------------
    def _tcp_protos(self) -> list[tuple[int, Any]]:
        """(IP version, TcpProtocol) of each family's TCP."""
        nk = net_kernel(self.s.k)
        tcp = netinet(nk).tcp
        if tcp is None:
            raise ToolError("no TCP in this kernel")
        protos = [(4, tcp.proto)]
        if nk.inet6 is not None and nk.inet6.tcp6 is not None:
            protos.append((6, nk.inet6.tcp6.proto))
        return protos

    def _conns(self) -> Iterator[Conn]:
        """Every TCP endpoint: sockets in the fd tables (their connection's state, or
        LISTEN/CLOSED), connections no socket holds any more (TIME_WAIT after close),
        and SYN-cache entries (SYN_RCVD), as FreeBSD's net.inet.tcp.pcblist lists them."""
        from rumpnet.netinet.tcp_usrreq import TcpSocket

        held = set()
        for p in self.s.k.procs.procs.values():
            for fd, fp in sorted(p.fdt.files.items()):
                so = fp.obj
                if not isinstance(so, TcpSocket):
                    continue
                ipv = 6 if so.family == socket.AF_INET6 else 4
                cb = so.cb
                if cb is not None and not cb.freed:
                    held.add(id(cb))
                    yield Conn(ipv, cb.laddr, cb.lport, cb.faddr, cb.fport, TcpState(cb.state),
                               p.comm, p.pid, fd, cb)
                elif so.listener is not None:
                    yield Conn(ipv, so.listener.laddr, so.listener.lport, 0, 0, TcpState.LISTEN, p.comm, p.pid, fd)
                else:
                    yield Conn(ipv, so.laddr, so.lport, 0, 0, TcpState.CLOSED, p.comm, p.pid, fd)
        for ipv, proto in self._tcp_protos():
            for cb in list(proto.conns.values()):
                if id(cb) not in held:
                    yield Conn(ipv, cb.laddr, cb.lport, cb.faddr, cb.fport, TcpState(cb.state), cb=cb)
            for e in proto.syn_cache_entries():
                yield Conn(ipv, e.laddr, e.lport, e.faddr, e.fport, TcpState.SYN_RECEIVED)

    # -- sockstat ----------------------------------------------------------------------
    def sockstat(self, argv: list[str]) -> tuple[str, str]:
        """FreeBSD sockstat(1): ``[-46cls] [-P protocols] [-p ports]`` (TCP only)."""
        opts, rest = getopt.getopt(argv, "46clsuP:p:jwnqi")
        if rest:
            raise ToolError("usage: sockstat [-46cls] [-P protocols] [-p ports]", 2)
        flags = {o: v for o, v in opts}
        protos = set(flags.get("-P", "tcp").split(","))
        ports = {int(p) for p in flags["-p"].split(",")} if "-p" in flags else None
        lines = [f"{'USER':8} {'COMMAND':10} {'PID':5} {'FD':3} {'PROTO':6} {'LOCAL ADDRESS':21} "
                 f"{'FOREIGN ADDRESS':21}" + (" PATH STATE   CONN STATE" if "-s" in flags else "")]
        # -4 and -6 each limit the listing to their family; neither or both: both.
        versions = {v for v, o in ((4, "-4"), (6, "-6")) if o in flags} or {4, 6}
        if "tcp" in protos:
            for c in self._conns():
                if c.ipv not in versions:
                    continue
                if ports is not None and c.lport not in ports and c.fport not in ports:
                    continue
                if "-l" in flags and "-c" not in flags and c.state != TcpState.LISTEN:
                    continue
                if "-c" in flags and "-l" not in flags and c.state == TcpState.LISTEN:
                    continue
                lines.append(self._sockstat_line(c, "-s" in flags))
        return "\n".join(lines) + "\n", ""

    @staticmethod
    def _sockstat_line(c: Conn, with_state: bool) -> str:
        user = "root" if c.pid is not None else "?"
        # FreeBSD's printaddr(): "addr:port" for both families, '*' for the wildcard.
        local = f"{c.ntop(c.laddr) if c.laddr else '*'}:{c.lport if c.lport else '*'}"
        foreign = f"{c.ntop(c.faddr)}:{c.fport}" if c.faddr else "*:*"
        line = (f"{user:8} {c.comm[:10]:10} {c.pid if c.pid is not None else '?'!s:5} "
                f"{c.fd if c.fd is not None else '?'!s:3} {f'tcp{c.ipv}':6} {local:21} {foreign:21}")
        if with_state:
            line += f"      {STATE_NAMES[c.state]}"
        return line

    # -- tcpdrop -----------------------------------------------------------------------
    def tcpdrop(self, argv: list[str]) -> tuple[str, str]:
        """FreeBSD tcpdrop(8): ``laddr lport faddr fport``, or ``-a``/``-l`` with
        ``-s state`` (drop every connection, or those in that state)."""
        opts, rest = getopt.getopt(argv, "als:S:")
        flags = {o: v for o, v in opts}
        if rest and len(rest) != 4 or not rest and not ({"-a", "-s"} & set(flags)):
            raise ToolError("usage: tcpdrop [-l] -a | -s state | laddr lport faddr fport", 2)
        state = flags.get("-s")
        if state is not None and state not in STATE_NAMES.values():
            raise ToolError(f"invalid state: {state}")
        out = []
        protos = dict(self._tcp_protos())
        now = self.s.loop.time()
        want = _tcpdrop_addresses(rest) if rest else None
        for c in list(self._conns()):
            if c.cb is None or c.cb.freed:
                continue
            if want is not None and c.addresses() != want:
                continue
            proto = protos[c.ipv]
            if state is not None and STATE_NAMES[c.state] != state:
                continue
            if c.state == TcpState.TIME_WAIT:
                proto.close_cb(c.cb, now)      # tcp_twclose: no RST from TIME_WAIT
            else:
                proto.drop(c.cb, errno.ECONNABORTED, now)
            out.append(f"{' '.join(c.addresses())}: dropped\n")
        if rest and not out:
            raise ToolError(f"{' '.join(rest)}: No such process")
        return "".join(out), ""


def _tcpdrop_addresses(rest: list[str]) -> tuple[str, str, str, str]:
    """tcpdrop's ``laddr lport faddr fport`` with IPv6 addresses in their canonical text
    (so that ``fd3d:fa7b:d17d:0::2`` names ``fd3d:fa7b:d17d::2``)."""
    laddr, lport, faddr, fport = rest

    def canon(a: str) -> str:
        try:
            return in6.ntop(in6.pton(a)) if ":" in a else a
        except (OSError, ValueError):
            return a
    return canon(laddr), lport, canon(faddr), fport
