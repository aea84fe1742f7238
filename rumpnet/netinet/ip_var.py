"""IPv4 wire format, tunables and counters (``ip.h``, ``ip_var.h``)."""

from __future__ import annotations

import struct

IPVERSION = 4
IP_HDR = struct.Struct("!BBHHHBBHII")  # vhl tos len id off ttl p sum src dst
IP_HDR_LEN = 20
IP_MAXPACKET = 65535
IP_DF = 0x4000
IP_MF = 0x2000
IP_OFFMASK = 0x1FFF
IPDEFTTL = 64
IPFRAGTTL = 30.0  # seconds a reassembly queue lives (NetBSD: 60 slow-timeout ticks of 500 ms)

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
        self.maxfragpackets = 200
        self.maxfrags = 2000  # total fragments held in all reassembly queues
        self.maxfragsperpacket = 64
        self.checkinterface = 0


class IpStats:
    """``struct ipstat`` (``net.inet.ip.stats``), names as in NetBSD's ``netstat -s``."""

    __slots__ = (
        "ips_total", "ips_badsum", "ips_tooshort", "ips_toosmall", "ips_badhlen", "ips_badlen",
        "ips_fragments", "ips_fragdropped", "ips_fragtimeout", "ips_forward", "ips_fastforward",
        "ips_cantforward", "ips_redirectsent", "ips_noproto", "ips_delivered", "ips_localout",
        "ips_odropped", "ips_reassembled", "ips_fragmented", "ips_ofragments", "ips_cantfrag",
        "ips_badoptions", "ips_noroute", "ips_badvers", "ips_rawout", "ips_toolong", "ips_notmember",
        "ips_nogif", "ips_badaddr", "ips_fragoverlap", "ips_fragduplicate",
    )

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)


class IcmpStats:
    """``struct icmpstat``."""

    __slots__ = ("icps_error", "icps_oldshort", "icps_oldicmp", "icps_badcode", "icps_tooshort",
                 "icps_checksum", "icps_badlen", "icps_reflect", "icps_bmcastecho", "icps_toofreq",
                 "icps_outhist", "icps_inhist")

    def __init__(self) -> None:
        for name in self.__slots__[:-2]:
            setattr(self, name, 0)
        self.icps_outhist = [0] * 41
        self.icps_inhist = [0] * 41


class UdpStats:
    """``struct udpstat``."""

    __slots__ = ("udps_ipackets", "udps_hdrops", "udps_badsum", "udps_badlen", "udps_noport",
                 "udps_noportbcast", "udps_fullsock", "udps_opackets", "udps_nosum")

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)


class ArpStats:
    """``struct arpstat``."""

    __slots__ = ("as_sndtotal", "as_sndreply", "as_sndrequest", "as_rcvtotal", "as_rcvrequest",
                 "as_rcvreply", "as_rcvmcast", "as_rcvbadproto", "as_rcvbadlen", "as_rcvzerotpa",
                 "as_rcvzerospa", "as_rcvnoint", "as_rcvlocalsha", "as_rcvbcastsha", "as_rcvlocalspa",
                 "as_rcvoverperm", "as_rcvoverint", "as_rcvover", "as_rcvlenchg", "as_dfrtotal",
                 "as_dfrsent", "as_dfrdropped", "as_allocfail", "as_ratelimited")

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)
