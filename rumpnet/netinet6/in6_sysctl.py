"""``net.inet6.*`` (NetBSD's ``sysctl_net_inet6_ip6_setup``, ``sysctl_net_inet6_icmp6_setup``,
``sysctl_net_inet6_udp6_setup``): names and MIB numbers as NetBSD's, bound to the params
objects of the netinet6 cores, and the ``*.stats`` nodes to their counters.

rumpnet's own leaves (NetBSD keeps these as compile-time constants or does not have them)
are marked in their descriptions: ``maxfragsperpacket``, ``maxfragbytes``,
``mtudisctimeout`` (NetBSD's icmp6.c ages path MTUs after a fixed 10 minutes) and
``net.inet6.icmp6.nd6_gctimer``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rumpkern.sysctl import SysctlTree
    from rumpnet.netinet6.in6_proto import Inet6

PF_INET6 = 24
IPPROTO_IPV6 = 41
IPPROTO_ICMPV6 = 58
IPPROTO_UDP = 17

# (leaf, attribute of Ip6Params, MIB number or None, min, max, rumpnet's own?)
IPV6CTL: tuple[tuple[str, str, int | None, int | None, int | None, str], ...] = (
    ("forwarding", "forwarding", 1, 0, 1, "act as a router (RFC 8200 forwarding)"),
    ("redirect", "redirect", 2, 0, 1, "send ICMPv6 redirects when forwarding"),
    ("hlim", "hlim", 3, 1, 255, "default hop limit"),
    ("maxfragpackets", "maxfragpackets", 9, -1, None, "datagrams under reassembly at most (-1: no limit)"),
    ("accept_rtadv", "accept_rtadv", 12, 0, 1, "configure from router advertisements"),
    ("hdrnestlimit", "hdrnestlimit", 15, 0, None, "extension headers walked at most"),
    ("dad_count", "dad_count", 16, 0, 10, "duplicate address detection probes (RFC 4862)"),
    ("auto_flowlabel", "auto_flowlabel", 17, 0, 1, "RFC 6437 flow labels on output"),
    ("defmcasthlim", "defmcasthlim", 18, 1, 255, "default multicast hop limit"),
    ("use_deprecated", "use_deprecated", 21, 0, 1, "use deprecated addresses as sources"),
    ("v6only", "v6only", 24, 0, 1, "IPV6_V6ONLY default of new sockets"),
    ("use_defaultzone", "use_defzone", 39, 0, 1, "scoped addresses without a zone take the default one"),
    ("maxfrags", "maxfrags", 41, 0, None, "fragments held at most"),
    ("rtadv_maxroutes", "rtadv_maxroutes", 43, 0, None, "routes and addresses learned from RAs at most"),
    ("neighborgcthresh", "neighborgcthresh", None, 0, None, "neighbour cache entries at most"),
    ("auto_linklocal", "auto_linklocal", None, 0, 1, "make a link-local address when an interface comes up"),
    ("mtudisctimeout", "mtudisctimeout", None, 1, None, "seconds a learned path MTU lives (rumpnet's)"),
    ("maxfragsperpacket", "maxfragsperpacket", None, 1, None, "fragments per datagram at most (rumpnet's)"),
    ("maxfragbytes", "maxfragbytes", None, 0, None, "reassembly bytes held at most (rumpnet's)"),
)

# (leaf, which params object, attribute, MIB number, min, max)
ICMPV6CTL: tuple[tuple[str, str, str, int | None, int | None, int | None], ...] = (
    ("rediraccept", "icmp6", "rediraccept", 2, 0, 1),
    ("redirtimeout", "icmp6", "redirtimeout", 3, 0, None),
    ("nd6_delay", "nd6", "nd6_delay", 8, 1, None),
    ("nd6_umaxtries", "nd6", "nd6_umaxtries", 9, 1, None),
    ("nd6_mmaxtries", "nd6", "nd6_mmaxtries", 10, 1, None),
    ("errppslimit", "icmp6", "errppslimit", 14, -1, None),
    ("mtudisc_hiwat", "icmp6", "mtudisc_hiwat", 16, -1, None),
    ("mtudisc_lowat", "icmp6", "mtudisc_lowat", 17, -1, None),
    ("nd6_maxqueuelen", "nd6", "nd6_maxqueuelen", 24, 1, None),
    ("nd6_gctimer", "nd6", "nd6_gctimer", None, 1, None),
)


def inet6_sysctl(t: SysctlTree, node: Inet6, set_forwarding: Callable[[int], None],
                 udp6_stats: Callable[[], object], raw6_stats: Callable[[], object]) -> None:
    """Create ``net.inet6`` and its leaves on ``t`` for ``node``."""
    t.add_node("net.inet6", num=PF_INET6)
    t.add_node("net.inet6.ip6", num=IPPROTO_IPV6)
    p = node.ip6_params
    for leaf, attr, num, lo, hi, desc in IPV6CTL:
        path = f"net.inet6.ip6.{leaf}"
        if leaf == "forwarding":
            t.add_int(path, lambda: int(p.forwarding), set_forwarding, num=num, desc=desc, minval=lo, maxval=hi)
        else:
            t.bind_int(path, p, attr, num=num, minval=lo, maxval=hi, desc=desc)
    t.add_struct("net.inet6.ip6.stats", lambda: node.ip6stat, num=6)
    t.add_node("net.inet6.icmp6", num=IPPROTO_ICMPV6)
    objs: dict[str, object] = {"icmp6": node.icmp6_params, "nd6": node.nd6_params}
    for leaf, which, attr, num, lo, hi in ICMPV6CTL:
        t.bind_int(f"net.inet6.icmp6.{leaf}", objs[which], attr, num=num, minval=lo, maxval=hi)
    t.add_struct("net.inet6.icmp6.stats", lambda: node.icmp6stat, num=1)
    t.add_struct("net.inet6.icmp6.nd6_stats", lambda: node.nd6stat)
    t.add_struct("net.inet6.icmp6.mld_stats", lambda: node.mld6stat)
    t.add_node("net.inet6.udp6", num=IPPROTO_UDP)
    t.add_struct("net.inet6.udp6.stats", udp6_stats, num=6)
    t.add_node("net.inet6.raw6", num=255)
    t.add_struct("net.inet6.raw6.stats", raw6_stats, num=6)
