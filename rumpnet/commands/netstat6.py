"""netstat -s for the inet6 protocols (NetBSD's ``usr.bin/netstat/inet6.c``: ip6_stats,
icmp6_stats, udp6_stats, rip6_stats), with NetBSD's wording."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rumpnet.commands.ifaddrs import Syscalls
from rumpnet.commands.netstat import _Printer
from rumpnet.netinet6.icmp6 import Icmp6Stats
from rumpnet.netinet6.ip6_var import Ip6Stats
from rumpnet.netinet6.raw_ip6 import Rip6Stats
from rumpnet.netinet6.udp6_usrreq import Udp6Stats

# Next-header names of ip6's input histogram (NetBSD inet6.c ip6nh[]).
_NH = {0: "hop by hop", 4: "IP", 6: "TCP", 17: "UDP", 41: "IP6", 43: "routing", 44: "fragment",
       50: "ESP", 51: "AH", 58: "ICMP6", 59: "no next header", 60: "destination option", 89: "OSPF",
       103: "PIM", 132: "SCTP", 255: "raw"}

# ICMPv6 type names of the in/out histograms (NetBSD inet6.c icmp6names[]).
_ICMP6 = {1: "unreach", 2: "packet too big", 3: "time exceed", 4: "parameter problem", 128: "echo",
          129: "echo reply", 130: "multicast listener query", 131: "MLDv1 listener report",
          132: "multicast listener done", 133: "router solicitation", 134: "router advertisement",
          135: "neighbor solicitation", 136: "neighbor advertisement", 137: "redirect",
          143: "MLDv2 listener report"}


_IP6_LINES: tuple[tuple[str, str], ...] = (
    ("ip6s_total", "\t{n} total packet{s} received"),
    ("ip6s_toosmall", "\t{n} with size smaller than minimum"),
    ("ip6s_tooshort", "\t{n} with data size < data length"),
    ("ip6s_badoptions", "\t{n} with bad options"),
    ("ip6s_badvers", "\t{n} with incorrect version number"),
    ("ip6s_fragments", "\t{n} fragment{s} received"),
    ("ip6s_fragdropped", "\t{n} fragment{s} dropped (dup or out of space)"),
    ("ip6s_fragtimeout", "\t{n} fragment{s} dropped after timeout"),
    ("ip6s_fragoverflow", "\t{n} fragment{s} that exceeded limit"),
    ("ip6s_reassembled", "\t{n} packet{s} reassembled ok"),
    ("ip6s_delivered", "\t{n} packet{s} for this host"),
    ("ip6s_forward", "\t{n} packet{s} forwarded"),
    ("ip6s_cantforward", "\t{n} packet{s} not forwardable"),
    ("ip6s_redirectsent", "\t{n} redirect{s} sent"),
    ("ip6s_localout", "\t{n} packet{s} sent from this host"),
    ("ip6s_rawout", "\t{n} packet{s} sent with fabricated ip header"),
    ("ip6s_odropped", "\t{n} output packet{s} dropped due to no bufs, etc."),
    ("ip6s_noroute", "\t{n} output packet{s} discarded due to no route"),
    ("ip6s_fragmented", "\t{n} output datagram{s} fragmented"),
    ("ip6s_ofragments", "\t{n} fragment{s} created"),
    ("ip6s_cantfrag", "\t{n} datagram{s} that can't be fragmented"),
    ("ip6s_badscope", "\t{n} packet{s} that violated scope rules"),
    ("ip6s_notmember", "\t{n} multicast packet{s} which we don't join"),
    ("ip6s_toomanyhdr", "\t{n} packet{s} whose headers are not continuous"),
    ("ip6s_exthdrtoolong", "\t{n} packet{s} with too long extension headers"),
    ("ip6s_fragoverlap", "\t{n} fragment{s} overlapping others (datagram dropped)"),
    ("ip6s_atomicfrags", "\t{n} atomic fragment{s}"),
    ("ip6s_notready", "\t{n} packet{s} to tentative or duplicated addresses"),
    ("ip6s_ifdisabled", "\t{n} packet{s} on interfaces with IPv6 off"),
)


def ip6_stats(st: Any) -> list[str]:
    p = _Printer(st)
    for name, fmt in _IP6_LINES:
        p.p(name, fmt)
    hist = [(i, n) for i, n in enumerate(st.ip6s_nxthist) if n]
    if hist:
        p.raw("\tInput histogram:")
        for i, n in hist:
            p.raw(f"\t\t{_NH.get(i, f'#{i}')}: {n}")
    return p.lines


def icmp6_stats(st: Any) -> list[str]:
    p = _Printer(st)
    p.p("icp6s_error", "\t{n} call{s} to icmp6_error")
    p.p("icp6s_canterror", "\t{n} error{s} not generated because old message was icmp6 or so")
    p.p("icp6s_toofreq", "\t{n} error{s} not generated because of rate limitation")
    _hist(p, "\tOutput packet histogram:", st.icp6s_outhist)
    p.p("icp6s_badcode", "\t{n} message{s} with bad code fields")
    p.p("icp6s_tooshort", "\t{n} message{s} < minimum length")
    p.p("icp6s_checksum", "\t{n} bad checksum{s}")
    p.p("icp6s_badlen", "\t{n} message{s} with bad length")
    _hist(p, "\tInput packet histogram:", st.icp6s_inhist)
    p.raw("\tHistogram of error messages to be generated:")
    for name, text in (("icp6s_odst_unreach_noroute", "no route"), ("icp6s_odst_unreach_admin", "administratively prohibited"),
                       ("icp6s_odst_unreach_beyondscope", "beyond scope"), ("icp6s_odst_unreach_addr", "address unreachable"),
                       ("icp6s_odst_unreach_noport", "port unreachable"), ("icp6s_opacket_too_big", "packet too big"),
                       ("icp6s_otime_exceed_transit", "time exceed transit"),
                       ("icp6s_otime_exceed_reassembly", "time exceed reassembly"),
                       ("icp6s_oparamprob_header", "erroneous header field"),
                       ("icp6s_oparamprob_nextheader", "unrecognized next header"),
                       ("icp6s_oparamprob_option", "unrecognized option"), ("icp6s_oredirect", "redirect"),
                       ("icp6s_ounknown", "unknown")):
        p.p(name, f"\t\t{{n}} {text}")
    p.p("icp6s_reflect", "\t{n} message response{s} generated")
    p.p("icp6s_nd_toomanyopt", "\t{n} message{s} with too many ND options")
    p.p("icp6s_nd_badopt", "\t{n} message{s} with bad ND options")
    p.p("icp6s_badns", "\t{n} bad neighbor solicitation message{s}")
    p.p("icp6s_badna", "\t{n} bad neighbor advertisement message{s}")
    p.p("icp6s_badrs", "\t{n} bad router solicitation message{s}")
    p.p("icp6s_badra", "\t{n} bad router advertisement message{s}")
    p.p("icp6s_dropped_raroute", "\t{n} router advertisement route{s} dropped")
    p.p("icp6s_badredirect", "\t{n} bad redirect message{s}")
    p.p("icp6s_pmtuchg", "\t{n} path MTU change{s}")
    p.p("icp6s_pmtuignored", "\t{n} packet too big message{s} ignored")
    return p.lines


def _hist(p: _Printer, title: str, hist: list[int]) -> None:
    rows = [(t, n) for t, n in enumerate(hist) if n]
    if rows:
        p.raw(title)
        for t, n in rows:
            p.raw(f"\t\t{_ICMP6.get(t, f'#{t}')}: {n}")


_UDP6_LINES: tuple[tuple[str, str], ...] = (
    ("udp6s_ipackets", "\t{n} datagram{s} received"),
    ("udp6s_hdrops", "\t{n} with incomplete header"),
    ("udp6s_badlen", "\t{n} with bad data length field"),
    ("udp6s_badsum", "\t{n} with bad checksum"),
    ("udp6s_nosum", "\t{n} with no checksum"),
    ("udp6s_noport", "\t{n} dropped due to no socket"),
    ("udp6s_noportmcast", "\t{n} multicast datagram{s} dropped due to no socket"),
    ("udp6s_fullsock", "\t{n} dropped due to full socket buffers"),
    ("udp6s_opackets", "\t{n} datagram{s} output"),
)


def udp6_stats(st: Any) -> list[str]:
    p = _Printer(st)
    for name, fmt in _UDP6_LINES:
        p.p(name, fmt)
    return p.lines


_RIP6_LINES: tuple[tuple[str, str], ...] = (
    ("rip6s_ipackets", "\t{n} message{s} received"),
    ("rip6s_isum", "\t{n} checksum calculation{s} on inbound"),
    ("rip6s_badsum", "\t{n} message{s} with bad checksum"),
    ("rip6s_nosock", "\t{n} message{s} dropped due to no socket"),
    ("rip6s_fullsock", "\t{n} message{s} dropped due to full socket buffers"),
    ("rip6s_opackets", "\t{n} message{s} sent"),
)


def rip6_stats(st: Any) -> list[str]:
    p = _Printer(st)
    for name, fmt in _RIP6_LINES:
        p.p(name, fmt)
    return p.lines


def proto_stats6(sys: Syscalls) -> list[tuple[str, Callable[[], list[str]] | None]]:
    """netstat -s's inet6 sections, from sysctl net.inet6.*.stats."""
    from rumpnet.commands.netstat import _section

    return [
        _section(sys, "udp6", "net.inet6.udp6.stats", Udp6Stats, udp6_stats),
        _section(sys, "ip6", "net.inet6.ip6.stats", Ip6Stats, ip6_stats),
        _section(sys, "icmp6", "net.inet6.icmp6.stats", Icmp6Stats, icmp6_stats),
        _section(sys, "rip6", "net.inet6.raw6.stats", Rip6Stats, rip6_stats),
    ]
