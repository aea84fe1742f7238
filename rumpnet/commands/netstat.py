"""netstat(1): routing tables, protocol statistics, interfaces and sockets, NetBSD style.

As NetBSD's netstat is a program in userland, it reads the kernel through sysctl
(``net.inet.*.stats``, ``net.inet6.*.stats``, ``net.inet.*.pcblist``) and interface
ioctls (SIOCGIFCONF, SIOCGIFDATA) only."""

from __future__ import annotations

import errno
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from rumpkern.sysctl import stats_names
from rumpnet.commands import UsageError, getopt
from rumpnet.commands.ifaddrs import IfSock, Syscalls, getifaddrs, sysctl_value
from rumpnet.commands.route import kernel_rttable, netname
from rumpnet.if_ioctl import SIOCGIFDATA, SIOCGIFFLAGS, IfDatareq, Ifreq
from rumpnet.ifnet import IFF_LOOPBACK, IFF_UP
from rumpnet.netconfig import format_mac
from rumpnet.netinet.in_addr import ntoa
from rumpnet.netinet.in_control import SIOCGIFALIAS, InAliasreq
from rumpnet.netinet.in_pcblist import KinfoPcb, unpack_pcblist
from rumpnet.netinet.ip_var import ArpStats, IcmpStats, IpStats, UdpStats
from rumpnet.netinet.tcp_var import TcpStats

if TYPE_CHECKING:
    from rumpnet.net_kernel import NetKernel

USAGE = """usage: netstat [-Aan] [-f address_family] [-M core] [-N system]
       netstat [-bdgiLmnqrsSv] [-f address_family] [-M core] [-N system]
       netstat [-dn] [-I interface] [-M core] [-N system] [-w wait]
       netstat [-p protocol] [-i] [-I Interface] [-M core] [-N system]
       netstat [-s] [-f address_family] [-t] [-p protocol] [-M core] [-N system]"""

_ARGOPTS = "fpIMNwc"
OPTSTRING = "AabdgiLmnqrsSvtz" + "".join(f"{ch}:" for ch in _ARGOPTS)  # usr.bin/netstat/main.c

ICMP_NAMES = [
    "echo reply", "#1", "#2", "destination unreachable", "source quench", "routing redirect", "#6",
    "#7", "echo", "router advertisement", "router solicitation", "time exceeded", "parameter problem",
    "time stamp", "time stamp reply", "information request", "information request reply",
    "address mask request", "address mask reply",
]

TCP_STATES = ["CLOSED", "LISTEN", "SYN_SENT", "SYN_RCVD", "ESTABLISHED", "CLOSE_WAIT", "FIN_WAIT_1",
              "CLOSING", "LAST_ACK", "FIN_WAIT_2", "TIME_WAIT"]


def _pl(n: int) -> str:
    return "" if n == 1 else "s"


def _plies(n: int) -> str:
    return "y" if n == 1 else "ies"


class _Printer:
    def __init__(self, stats: Any) -> None:
        self.stats = stats
        self.lines: list[str] = []

    def v(self, name: str) -> int:
        return int(getattr(self.stats, name, 0) or 0)

    def p(self, name: str, fmt: str) -> None:
        n = self.v(name)
        self.lines.append(fmt.replace("{n}", str(n)).replace("{s}", _pl(n)).replace("{ies}", _plies(n))
                          .replace("{es}", "" if n == 1 else "es"))

    def p2(self, a: str, b: str, fmt: str) -> None:
        n, m = self.v(a), self.v(b)
        self.lines.append(fmt.replace("{n}", str(n)).replace("{s}", _pl(n))
                          .replace("{m}", str(m)).replace("{t}", _pl(m)))

    def raw(self, line: str) -> None:
        self.lines.append(line)


def ip_stats(st: Any) -> list[str]:
    """``netstat -s``'s ip section."""
    p = _Printer(st)
    p.p("ips_total", "\t{n} total packet{s} received")
    p.p("ips_badsum", "\t{n} bad header checksum{s}")
    p.p("ips_toosmall", "\t{n} with size smaller than minimum")
    p.p("ips_tooshort", "\t{n} with data size < data length")
    p.p("ips_toolong", "\t{n} with length > max ip packet size")
    p.p("ips_badhlen", "\t{n} with header length < data size")
    p.p("ips_badlen", "\t{n} with data length < header length")
    p.p("ips_badoptions", "\t{n} with bad options")
    p.p("ips_badvers", "\t{n} with incorrect version number")
    p.p("ips_fragments", "\t{n} fragment{s} received")
    p.p("ips_fragdropped", "\t{n} fragment{s} dropped (dup or out of space)")
    p.p("ips_fragtimeout", "\t{n} fragment{s} dropped after timeout")
    p.p("ips_reassembled", "\t{n} packet{s} reassembled ok")
    p.p("ips_delivered", "\t{n} packet{s} for this host")
    p.p("ips_noproto", "\t{n} packet{s} for unknown/unsupported protocol")
    p.p("ips_forward", "\t{n} packet{s} forwarded")
    p.p("ips_cantforward", "\t{n} packet{s} not forwardable")
    p.p("ips_redirectsent", "\t{n} redirect{s} sent")
    p.p("ips_nogif", "\t{n} packet{s} no matching gif found")
    p.p("ips_localout", "\t{n} packet{s} sent from this host")
    p.p("ips_rawout", "\t{n} packet{s} sent with fabricated ip header")
    p.p("ips_odropped", "\t{n} output packet{s} dropped due to no bufs, etc.")
    p.p("ips_noroute", "\t{n} output packet{s} discarded due to no route")
    p.p("ips_fragmented", "\t{n} output datagram{s} fragmented")
    p.p("ips_ofragments", "\t{n} fragment{s} created")
    p.p("ips_cantfrag", "\t{n} datagram{s} that can't be fragmented")
    p.p("ips_badaddr", "\t{n} datagram{s} with bad address in header")
    return p.lines


def icmp_stats(st: Any) -> list[str]:
    """``netstat -s``'s icmp section."""
    p = _Printer(st)
    p.p("icps_error", "\t{n} call{s} to icmp_error")
    p.p("icps_oldicmp", "\t{n} error{s} not generated because old message was icmp")
    out = list(getattr(st, "icps_outhist", []))
    if any(out):
        p.raw("\tOutput histogram:")
        for i, n in enumerate(out):
            if n:
                p.raw(f"\t\t{ICMP_NAMES[i] if i < len(ICMP_NAMES) else f'#{i}'}: {n}")
    p.p("icps_badcode", "\t{n} message{s} with bad code fields")
    p.p("icps_tooshort", "\t{n} message{s} < minimum length")
    p.p("icps_checksum", "\t{n} bad checksum{s}")
    p.p("icps_badlen", "\t{n} message{s} with bad length")
    p.p("icps_bmcastecho", "\t{n} multicast echo request{s} ignored")
    inh = list(getattr(st, "icps_inhist", []))
    if any(inh):
        p.raw("\tInput histogram:")
        for i, n in enumerate(inh):
            if n:
                p.raw(f"\t\t{ICMP_NAMES[i] if i < len(ICMP_NAMES) else f'#{i}'}: {n}")
    p.p("icps_reflect", "\t{n} message response{s} generated")
    return p.lines


def udp_stats(st: Any) -> list[str]:
    """``netstat -s``'s udp section."""
    p = _Printer(st)
    p.p("udps_ipackets", "\t{n} datagram{s} received")
    p.p("udps_hdrops", "\t{n} with incomplete header")
    p.p("udps_badlen", "\t{n} with bad data length field")
    p.p("udps_badsum", "\t{n} with bad checksum")
    p.p("udps_noport", "\t{n} dropped due to no socket")
    p.p("udps_noportbcast", "\t{n} broadcast/multicast datagram{s} dropped due to no socket")
    p.p("udps_fullsock", "\t{n} dropped due to full socket buffers")
    delivered = p.v("udps_ipackets") - sum(p.v(n) for n in (
        "udps_hdrops", "udps_badlen", "udps_badsum", "udps_noport", "udps_noportbcast", "udps_fullsock"))
    p.raw(f"\t{max(0, delivered)} delivered")
    p.p("udps_opackets", "\t{n} datagram{s} output")
    return p.lines


def arp_stats(st: Any) -> list[str]:
    """``netstat -s``'s arp section."""
    p = _Printer(st)
    p.p("as_sndtotal", "\t{n} packet{s} sent")
    p.p("as_sndreply", "\t\t{n} reply packet{s}")
    p.p("as_sndrequest", "\t\t{n} request packet{s}")
    p.p("as_rcvtotal", "\t{n} packet{s} received")
    p.p("as_rcvreply", "\t\t{n} reply packet{s}")
    p.p("as_rcvrequest", "\t\t{n} valid request packet{s}")
    p.p("as_rcvmcast", "\t\t{n} broadcast/multicast packet{s}")
    p.p("as_rcvbadproto", "\t\t{n} packet{s} with unknown protocol type")
    p.p("as_rcvbadlen", "\t\t{n} packet{s} with bad (short) length")
    p.p("as_rcvzerotpa", "\t\t{n} packet{s} with null target IP address")
    p.p("as_rcvzerospa", "\t\t{n} packet{s} with null source IP address")
    p.p("as_rcvnoint", "\t\t{n} could not be mapped to an interface")
    p.p("as_rcvlocalsha", "\t\t{n} packet{s} sourced from a local hardware address")
    p.p("as_rcvbcastsha", "\t\t{n} packet{s} with a broadcast source hardware address")
    p.p("as_rcvlocalspa", "\t\t{n} duplicate{s} for a local IP address")
    p.p("as_rcvoverperm", "\t\t{n} attempt{s} to overwrite a static entry")
    p.p("as_rcvoverint", "\t\t{n} packet{s} received on wrong interface")
    p.p("as_rcvover", "\t\t{n} entr{ies} overwritten")
    p.p("as_rcvlenchg", "\t\t{n} change{s} in hardware address length")
    p.p("as_dfrtotal", "\t{n} packet{s} deferred pending ARP resolution")
    p.p("as_dfrsent", "\t\t{n} sent")
    p.p("as_dfrdropped", "\t\t{n} dropped")
    p.p("as_allocfail", "\t{n} failure{s} to allocate llinfo")
    return p.lines


def tcp_stats(st: Any) -> list[str]:
    """``netstat -s``'s tcp section."""
    p = _Printer(st)
    p.p("tcps_sndtotal", "\t{n} packet{s} sent")
    p.p2("tcps_sndpack", "tcps_sndbyte", "\t\t{n} data packet{s} ({m} byte{t})")
    p.p2("tcps_sndrexmitpack", "tcps_sndrexmitbyte", "\t\t{n} data packet{s} ({m} byte{t}) retransmitted")
    p.p2("tcps_sndacks", "tcps_delack", "\t\t{n} ack-only packet{s} ({m} delayed)")
    p.p("tcps_sndurg", "\t\t{n} URG only packet{s}")
    p.p("tcps_sndprobe", "\t\t{n} window probe packet{s}")
    p.p("tcps_sndwinup", "\t\t{n} window update packet{s}")
    p.p("tcps_sndctrl", "\t\t{n} control packet{s}")
    p.p("tcps_rcvtotal", "\t{n} packet{s} received")
    p.p2("tcps_rcvackpack", "tcps_rcvackbyte", "\t\t{n} ack{s} (for {m} byte{t})")
    p.p("tcps_rcvdupack", "\t\t{n} duplicate ack{s}")
    p.p("tcps_rcvacktoomuch", "\t\t{n} ack{s} for unsent data")
    p.p2("tcps_rcvpack", "tcps_rcvbyte", "\t\t{n} packet{s} ({m} byte{t}) received in-sequence")
    p.p2("tcps_rcvduppack", "tcps_rcvdupbyte", "\t\t{n} completely duplicate packet{s} ({m} byte{t})")
    p.p("tcps_pawsdrop", "\t\t{n} old duplicate packet{s}")
    p.p2("tcps_rcvpartduppack", "tcps_rcvpartdupbyte", "\t\t{n} packet{s} with some dup. data ({m} byte{t} duped)")
    p.p2("tcps_rcvoopack", "tcps_rcvoobyte", "\t\t{n} out-of-order packet{s} ({m} byte{t})")
    p.p2("tcps_rcvpackafterwin", "tcps_rcvbyteafterwin", "\t\t{n} packet{s} ({m} byte{t}) of data after window")
    p.p("tcps_rcvwinprobe", "\t\t{n} window probe{s}")
    p.p("tcps_rcvwinupd", "\t\t{n} window update packet{s}")
    p.p("tcps_rcvafterclose", "\t\t{n} packet{s} received after close")
    p.p("tcps_rcvbadsum", "\t\t{n} discarded for bad checksum{s}")
    p.p("tcps_rcvbadoff", "\t\t{n} discarded for bad header offset field{s}")
    p.p("tcps_rcvshort", "\t\t{n} discarded because packet too short")
    p.p("tcps_connattempt", "\t{n} connection request{s}")
    p.p("tcps_accepts", "\t{n} connection accept{s}")
    p.p("tcps_connects", "\t{n} connection{s} established (including accepts)")
    p.p2("tcps_closed", "tcps_drops", "\t{n} connection{s} closed (including {m} drop{t})")
    p.p("tcps_conndrops", "\t{n} embryonic connection{s} dropped")
    p.p2("tcps_rttupdated", "tcps_segstimed", "\t{n} segment{s} updated rtt (of {m} attempt{t})")
    p.p("tcps_rexmttimeo", "\t{n} retransmit timeout{s}")
    p.p("tcps_timeoutdrop", "\t\t{n} connection{s} dropped by rexmit timeout")
    p.p("tcps_persisttimeo", "\t{n} persist timeout{s} (resulting in {m} dropped connection{t})"
        .replace("{m}", str(p.v("tcps_persistdrops"))).replace("{t}", _pl(p.v("tcps_persistdrops"))))
    p.p("tcps_keeptimeo", "\t{n} keepalive timeout{s}")
    p.p("tcps_keepprobe", "\t\t{n} keepalive probe{s} sent")
    p.p("tcps_keepdrops", "\t\t{n} connection{s} dropped by keepalive")
    p.p("tcps_predack", "\t{n} correct ACK header prediction{s}")
    p.p("tcps_preddat", "\t{n} correct data packet header prediction{s}")
    p.p("tcps_noport", "\t{n} dropped due to no socket")
    p.p("tcps_listendrop", "\t{n} connection{s} dropped due to overflowing queue")
    p.p("tcps_badsyn", "\t{n} bad connection attempt{s}")
    p.p("tcps_sc_added", "\t{n} SYN cache entr{ies} added")
    p.p("tcps_sc_collisions", "\t\t{n} hash collision{s}")
    p.p("tcps_sc_completed", "\t\t{n} completed")
    p.p("tcps_sc_aborted", "\t\t{n} aborted (no space to build PCB)")
    p.p("tcps_sc_timed_out", "\t\t{n} timed out")
    p.p("tcps_sc_overflowed", "\t\t{n} dropped due to overflow")
    p.p("tcps_sc_bucketoverflow", "\t\t{n} dropped due to bucket overflow")
    p.p("tcps_sc_reset", "\t\t{n} dropped due to RST")
    p.p("tcps_sc_unreach", "\t\t{n} dropped due to ICMP unreachable")
    p.p("tcps_sc_retransmitted", "\t{n} SYN,ACK{s} retransmitted")
    p.p("tcps_sc_dupesyn", "\t{n} duplicate SYN{s} received for entries already in the cache")
    p.p("tcps_sc_dropped", "\t{n} SYN{s} dropped (no route or no space)")
    p.p("tcps_ecn_shs", "\t{n} successful ECN handshake{s}")
    p.p("tcps_ecn_ce", "\t{n} packet{s} with ECN CE bit")
    p.p("tcps_ecn_ect", "\t{n} packet{s} ECN ECT(0) bit")
    p.p("tcps_sack_recovery_episode", "\t{n} SACK recovery episode{s}")
    p.p("tcps_sack_rexmits", "\t{n} segment rexmit{s} in SACK recovery episodes")
    p.p("tcps_sack_rexmit_bytes", "\t{n} byte rexmit{s} in SACK recovery episodes")
    p.p("tcps_sack_rcv_opts", "\t{n} SACK option{s} received")
    p.p("tcps_sack_send_opts", "\t{n} SACK option{s} sent")
    # Loss recovery beyond NetBSD's list (FreeBSD's and Linux's names and wording).
    p.p("tcps_rack_lost", "\t{n} segment{s} deemed lost by RACK")
    p.p("tcps_rack_lost_rexmit", "\t\t{n} of them lost retransmission{s}")
    p.p("tcps_rack_reordertimeo", "\t{n} RACK reordering timeout{s}")
    p.p("tcps_dupack_lost", "\t{n} ACK{s} finding losses by the DupAck threshold")
    p.p("tcps_tlp_probes", "\t{n} tail loss probe{s} sent")
    p.p("tcps_tlp_probe_rexmit", "\t\t{n} retransmitting the last segment")
    p.p("tcps_tlp_recovered", "\t{n} loss{es} repaired by tail loss probes")
    p.p("tcps_prr_recoveries", "\t{n} recover{ies} with proportional rate reduction")
    p.p("tcps_rexmttimeo_spurious", "\t{n} spurious retransmit timeout{s} undone")
    p.p("tcps_sndrexmitbad", "\t{n} unnecessary packet retransmission{s}")
    p.p("tcps_rexmttimeo_sacklost", "\t{n} retransmit timeout{s} of segments SACK had deemed lost")
    p.p("tcps_hystart_css", "\t{n} HyStart++ conservative slow start{s}")
    # ECN beyond NetBSD's three lines (FreeBSD's names; sent ECE and CWR ours).
    p.p("tcps_ecn_ect1", "\t{n} packet{s} with ECN ECT(1) bit")
    p.p("tcps_ecn_rcwnd", "\t{n} congestion window reduction{s} for ECN-Echo")
    p.p("tcps_ecn_sndect0", "\t{n} packet{s} sent with ECN ECT(0) bit")
    p.p("tcps_ecn_sndece", "\t{n} packet{s} sent with ECN-Echo")
    p.p("tcps_ecn_sndcwr", "\t{n} packet{s} sent with Congestion Window Reduced")
    p.p("tcps_challenge_ack", "\t{n} challenge ACK{s} sent")
    return p.lines


T = TypeVar("T")


def sysctl_stats(sys: Syscalls, name: str, cls: Callable[[], T]) -> T | None:
    """The counters of ``name`` (an array of uint64 in the struct's order, NetBSD's
    ``*_NSTATS`` arrays) as a ``cls`` (the struct's declaration, as netstat includes
    ``tcp_var.h``); None when the kernel has no such node."""
    raw = sysctl_value(sys, name)
    if not isinstance(raw, bytes):
        return None
    st = cls()
    values = struct.unpack(f"{len(raw) // 8}Q", raw[: len(raw) // 8 * 8])
    pos = 0
    for field_name in stats_names(st):
        cur = getattr(st, field_name)
        n = len(cur) if isinstance(cur, list) else 1
        got = list(values[pos: pos + n])
        pos += n
        setattr(st, field_name, got + [0] * (n - len(got)) if isinstance(cur, list) else (got[0] if got else 0))
    return st


Section = tuple[str, Callable[[], list[str]] | None]


def _section(sys: Syscalls, proto: str, node: str, cls: Callable[[], object],
             fmt: Callable[[Any], list[str]]) -> Section:
    st = sysctl_stats(sys, node, cls)
    return proto, (None if st is None else (lambda: fmt(st)))


def _proto_stats(sys: Syscalls, family: str | None) -> list[Section]:
    table: list[Section] = []
    if family in (None, "inet"):
        table += [
            _section(sys, "tcp", "net.inet.tcp.stats", TcpStats, tcp_stats),
            _section(sys, "udp", "net.inet.udp.stats", UdpStats, udp_stats),
            _section(sys, "ip", "net.inet.ip.stats", IpStats, ip_stats),
            _section(sys, "icmp", "net.inet.icmp.stats", IcmpStats, icmp_stats),
            _section(sys, "arp", "net.inet.arp.stats", ArpStats, arp_stats),
        ]
    if family in (None, "inet6") and sysctl_value(sys, "net.inet6.ip6.hlim") is not None:
        from rumpnet.commands.netstat6 import proto_stats6

        table += proto_stats6(sys)
    return table


def _stats(sys: Syscalls, proto: str | None, family: str | None = None) -> str:
    table = _proto_stats(sys, None if proto is not None else family)
    if proto is not None:
        for name, fn in table:
            if name == proto and fn is not None:
                return f"{name}:\n" + "".join(line + "\n" for line in fn())
        if proto in ("igmp", "pim", "carp", "ip6", "icmp6", "udp6", "tcp6", "raw6"):
            return ""
        raise OSError(errno.EINVAL, f"netstat: {proto}: unknown or uninstrumented protocol")
    out = []
    for name, fn in table:
        if fn is not None:
            out.append(f"{name}:\n" + "".join(line + "\n" for line in fn()))
    return "".join(out)


def _interfaces(sys: Syscalls, only: str | None) -> str:
    """``netstat -i``: per interface its link row and a row per IPv4 address, with the
    counters of SIOCGIFDATA."""
    hdr = (f"{'Name':<5.5} {'Mtu':<5.5} {'Network':<13.13} {'Address':<17.17} "
           f"{'Ipkts':>8.8} {'Ierrs':>5.5} {'Opkts':>8.8} {'Oerrs':>5.5} {'Colls':>5.5}")
    lines = [hdr]
    with IfSock(sys) as s:
        ifas = getifaddrs(s)
        if only is not None:
            ifas = [i for i in ifas if i.name == only]
            if not ifas:
                raise OSError(errno.ENXIO, f"{only}: Device not configured")
        for ifa in ifas:
            flags = Ifreq.unpack(s.ioctl(SIOCGIFFLAGS, Ifreq(ifa.name).pack())).flags
            st = IfDatareq.unpack(s.ioctl(SIOCGIFDATA, IfDatareq(ifa.name).pack())).data
            name = ifa.name + ("" if flags & IFF_UP else "*")
            counts = f"{st.ipackets:>8} {st.ierrors:>5} {st.opackets:>8} {st.oerrors:>5} {st.collisions:>5}"
            mac = "" if flags & IFF_LOOPBACK else format_mac(ifa.lladdr)
            lines.append(f"{name:<5} {st.mtu:<5} {'<Link>':<13.13} {mac:<17.17} {counts}")
            for addr in ifa.ipv4:
                req = InAliasreq.unpack(s.ioctl(SIOCGIFALIAS, InAliasreq(ifa.name, addr).pack()))
                mask = req.mask or 0
                plen = bin(mask).count("1")
                lines.append(f"{name:<5} {st.mtu:<5} {netname(addr & mask, plen):<13.13} "
                             f"{ntoa(addr):<17.17} {counts}")
    return "\n".join(lines) + "\n"


def _sockaddr(addr: int, port: int) -> str:
    host = "*" if addr == 0 else ntoa(addr)
    return f"{host[:16]}.{port if port else '*'}"


def _connections(sys: Syscalls, aflag: bool) -> str:
    """``netstat [-a]``: the PCB lists of sysctl net.inet.{tcp,udp,raw}.pcblist."""
    rows: list[tuple[str, KinfoPcb]] = []
    for proto in ("tcp", "udp", "raw"):
        raw = sysctl_value(sys, f"net.inet.{proto}.pcblist")
        if isinstance(raw, bytes):
            rows += [(proto, pcb) for pcb in unpack_pcblist(raw)]
    if not aflag:
        rows = [r for r in rows if r[1].faddr != 0]
    head = "Active Internet connections" + (" (including servers)" if aflag else "")
    lines = [head,
             f"{'Proto':<5.5} {'Recv-Q':<6.6} {'Send-Q':<6.6}  {'Local Address':<22.22} "
             f"{'Foreign Address':<22.22} State"]
    for proto, pcb in rows:
        state = ""
        if proto == "tcp":
            state = TCP_STATES[pcb.tstate] if 0 <= pcb.tstate < len(TCP_STATES) else str(pcb.tstate)
        lines.append(f"{proto:<5.5} {pcb.rcvq:>6} {pcb.sndq:>6}  {_sockaddr(pcb.laddr, pcb.lport):<22.22} "
                     f"{_sockaddr(pcb.faddr, pcb.fport):<22.22} {state}")
    return "\n".join(lines) + "\n"


def netstat(k: Syscalls, argv: list[str]) -> str:
    """netstat(1) through sysctl and socket ioctls on ``k`` (a kernel or a rumpclient;
    see rumpnet.commands)."""
    return _netstat(k, argv)


def _netstat(k: Syscalls, argv: list[str]) -> str:
    parsed, args = getopt("netstat", argv, OPTSTRING, USAGE)
    flags = {ch for ch, value in parsed if ch not in _ARGOPTS}
    opts = {ch: value for ch, value in parsed if ch in _ARGOPTS}
    if args:
        raise UsageError(USAGE)
    fam = opts.get("f")
    if fam is not None and fam not in ("inet", "inet6", "local", "unix", "link"):
        raise OSError(errno.EINVAL, f"netstat: {fam}: unknown address family")
    if sysctl_value(k, "net.inet.ip.ttl") is None:
        raise OSError(errno.EAFNOSUPPORT, "netstat: no inet domain in this kernel")
    if fam is not None and fam not in ("inet", "inet6") and "r" in flags:
        return "Routing tables\n"
    if "r" in flags:
        if "s" in flags:
            return "routing:\n"
        # The routing tables are route(8)'s part (PF_ROUTE and sysctl net.route).
        return kernel_rttable(cast("NetKernel", k), fam)
    if "s" in flags:
        return _stats(k, opts.get("p"), fam)
    if "i" in flags or "I" in opts:
        return _interfaces(k, opts.get("I"))
    if fam is not None and fam != "inet":
        return ""
    return _connections(k, "a" in flags)
