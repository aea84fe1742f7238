"""IPv4 wire format, tunables and counters (``ip.h``, ``ip_var.h``)."""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass, field
from typing import Protocol

IPVERSION = 4
IP_HDR = struct.Struct("!BBHHHBBHII")  # vhl tos len id off ttl p sum src dst
IP_HDR_LEN = 20
IP_MAXPACKET = 65535
IP_DF = 0x4000
IP_MF = 0x2000
IP_OFFMASK = 0x1FFF
IPDEFTTL = 64
IPFRAGTTL = 30.0  # seconds a reassembly queue lives (NetBSD: 60 slow-timeout ticks of 500 ms)
# The ECN field, the low two bits of the TOS octet (RFC 3168 section 5; NetBSD's ip.h).
IPTOS_ECN_MASK = 0x03
IPTOS_ECN_NOTECT = 0x00
IPTOS_ECN_ECT1 = 0x01
IPTOS_ECN_ECT0 = 0x02
IPTOS_ECN_CE = 0x03

IPPROTO_IP = 0
IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_RAW = 255

# ip_output flags
IP_FORWARDING = 0x1  # packet is being forwarded: do not pick a source, keep TTL
IP_ALLOWBROADCAST = 0x2
IP_ROUTETOIF = 0x4  # SO_DONTROUTE: ignore gateways, go straight to a connected net
IP_RAWOUTPUT = 0x8  # header supplied (IP_HDRINCL)

# ICMP error kinds (ip_icmp.ERROR_KINDS) -> errno: NetBSD's inetctlerrmap, with FreeBSD's
# entries for the kinds NetBSD does not tell apart (administratively prohibited, time
# exceeded in transit; reassembly time exceeded has none).
INETCTLERRMAP = {
    "needfrag": errno.EMSGSIZE,
    "netunreach": errno.EHOSTUNREACH,
    "hostunreach": errno.EHOSTUNREACH,
    "protounreach": errno.ECONNREFUSED,
    "portunreach": errno.ECONNREFUSED,
    "srcfail": errno.EHOSTUNREACH,
    "adminprohib": errno.ECONNREFUSED,
    "timxceed": errno.EHOSTUNREACH,
    "paramprob": errno.ENOPROTOOPT,
}


class PrCtlInput(Protocol):
    """A transport's ``pr_ctlinput``, one signature for every protocol (TCP, UDP, raw IP):
    an ICMP error of ``kind`` (a key of INETCTLERRMAP) about a datagram we sent from
    ``src`` to ``dst``; ``inner`` is the quoted IP header and at least 8 bytes of what
    followed it (RFC 792, RFC 1812 4.3.2.3); ``mtu`` the next-hop MTU of a "needfrag"
    (RFC 1191), else 0. True if the transport took it: it is about one of its
    connections or sockets (``Inet.ctlinput`` counts the rest as icps_noconn)."""

    def __call__(self, kind: str, src: int, dst: int, inner: bytes, mtu: int) -> bool: ...


class IpParams:
    """``net.inet.ip.*`` tunables."""

    def __init__(self) -> None:
        self.forwarding = 0
        self.sendredirects = 1
        self.ttl = IPDEFTTL
        self.forwsrcrt = 0
        self.directedbcast = 0
        self.mtudisc = 1
        self.mtudisctimeout = 600
        # Floor under path MTU discovery (Linux's net.ipv4.route.min_pmtu, 552): a smaller
        # reported MTU locks the route at the floor, without DF (Icmp.mtudisc).
        self.min_pmtu = 552
        self.maxfragpackets = 200
        self.maxfrags = 2000  # total fragments held in all reassembly queues
        self.maxfragsperpacket = 64
        self.checkinterface = 0
        self.dad_count = 3  # kept only: IPv4 DAD is not done (see in_proto's sysctl note)


@dataclass(slots=True)
class IpStats:
    """``struct ipstat`` (``net.inet.ip.stats``), names as in NetBSD's ``netstat -s``."""
    ips_total: int = 0
    ips_badsum: int = 0
    ips_tooshort: int = 0
    ips_toosmall: int = 0
    ips_badhlen: int = 0
    ips_badlen: int = 0
    ips_fragments: int = 0
    ips_fragdropped: int = 0
    ips_fragtimeout: int = 0
    ips_forward: int = 0
    ips_fastforward: int = 0
    ips_cantforward: int = 0
    ips_redirectsent: int = 0
    ips_noproto: int = 0
    ips_delivered: int = 0
    ips_localout: int = 0
    ips_odropped: int = 0
    ips_reassembled: int = 0
    ips_fragmented: int = 0
    ips_ofragments: int = 0
    ips_cantfrag: int = 0
    ips_badoptions: int = 0
    ips_noroute: int = 0
    ips_badvers: int = 0
    ips_rawout: int = 0
    ips_toolong: int = 0
    ips_notmember: int = 0
    ips_nogif: int = 0
    ips_badaddr: int = 0
    ips_fragoverlap: int = 0
    ips_fragduplicate: int = 0
    # Not in NetBSD's struct ipstat (so after its fields): datagrams with a source route
    # not used up, dropped (net.inet.ip.forwsrcrt off; RFC 7126 4.3, 4.4)
    ips_srcrtdrop: int = 0

@dataclass(slots=True)
class IcmpStats:
    """``struct icmpstat``."""
    icps_error: int = 0
    icps_oldshort: int = 0
    icps_oldicmp: int = 0
    icps_badcode: int = 0
    icps_tooshort: int = 0
    icps_checksum: int = 0
    icps_badlen: int = 0
    icps_reflect: int = 0
    icps_bmcastecho: int = 0
    icps_toofreq: int = 0
    icps_outhist: list[int] = field(default_factory=lambda: [0] * 41)
    icps_inhist: list[int] = field(default_factory=lambda: [0] * 41)
    # Not in NetBSD's struct icmpstat (so after its fields): errors no transport took
    # (no connection or socket they could be about, or a quoted sequence number out of
    # window, RFC 5927 4.1), and "fragmentation needed" not lowering the path MTU.
    icps_noconn: int = 0
    icps_pmtuignored: int = 0

@dataclass(slots=True)
class UdpStats:
    """``struct udpstat``."""
    udps_ipackets: int = 0
    udps_hdrops: int = 0
    udps_badsum: int = 0
    udps_badlen: int = 0
    udps_noport: int = 0
    udps_noportbcast: int = 0
    udps_fullsock: int = 0
    udps_opackets: int = 0
    udps_nosum: int = 0

@dataclass(slots=True)
class ArpStats:
    """``struct arpstat``."""
    as_sndtotal: int = 0
    as_sndreply: int = 0
    as_sndrequest: int = 0
    as_rcvtotal: int = 0
    as_rcvrequest: int = 0
    as_rcvreply: int = 0
    as_rcvmcast: int = 0
    as_rcvbadproto: int = 0
    as_rcvbadlen: int = 0
    as_rcvzerotpa: int = 0
    as_rcvzerospa: int = 0
    as_rcvnoint: int = 0
    as_rcvlocalsha: int = 0
    as_rcvbcastsha: int = 0
    as_rcvlocalspa: int = 0
    as_rcvoverperm: int = 0
    as_rcvoverint: int = 0
    as_rcvover: int = 0
    as_rcvlenchg: int = 0
    as_dfrtotal: int = 0
    as_dfrsent: int = 0
    as_dfrdropped: int = 0
    as_allocfail: int = 0
    as_ratelimited: int = 0
