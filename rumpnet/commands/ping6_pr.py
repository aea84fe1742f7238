"""What a verbose ping6 prints for an ICMPv6 message that is not its echo reply: KAME's
``pr_icmph``, ``pr_retip`` and ``pr_iph`` (``sbin/ping6/ping6.c``), word for word.

An error from a router on the way (Time Exceeded for a hop limit run out, Destination
Unreachable, Packet Too Big, Parameter Problem: RFC 4443 3) names itself on the
``N bytes from ROUTER:`` line, then the packet it quotes follows: its IPv6 header as a
table and the upper-layer header ping6 recognises::

    56 bytes from fc00:0:0:1::1: Time to live exceeded
    Vr TC  Flow Plen Nxt Hlim
     6 00 00000 0010  3a   01
    fc00:0:0:1::2->fc00:0:0:2::2
    ICMP6: type = 128, code = 0

ping6.c ends that with its own newline after pr_retip's, hence an empty line.
"""

from __future__ import annotations

import struct

from rumpnet.netinet6 import in6

ICMP6_DST_UNREACH = 1
ICMP6_PACKET_TOO_BIG = 2
ICMP6_TIME_EXCEEDED = 3
ICMP6_PARAM_PROB = 4
ND_REDIRECT = 137

_UNREACH6 = {0: "No Route to Destination", 1: "Destination Administratively Unreachable",
             2: "Destination Unreachable Beyond Scope", 3: "Destination Host Unreachable",
             4: "Destination Port Unreachable"}
_TIMXCEED6 = {0: "Time to live exceeded", 1: "Frag reassembly time exceeded"}
_PARAMPROB6 = {0: "Erroneous Header ", 1: "Unknown Nextheader ", 2: "Unrecognized Option "}
# the informational messages pr_icmph names without more
_NAMES6 = {128: "Echo Request", 129: "Echo Reply", 130: "Listener Query", 131: "Listener Report",
           132: "Listener Done", 133: "Router Solicitation", 134: "Router Advertisement",
           135: "Neighbor Solicitation", 136: "Neighbor Advertisement"}
# extension headers pr_retip walks (RFC 8200 4): name, and how their length is counted
_EXTHDRS = {0: "HBH ", 60: "DSTOPT ", 44: "FRAG ", 43: "RTHDR "}
_PORTS = {6: "TCP", 17: "UDP"}


def pr_icmph(msg: bytes) -> list[str]:
    """ping6.c's pr_icmph for ICMPv6 message ``msg`` (8 bytes or more): the text after
    ``N bytes from SRC: `` and any lines after it (for errors, the quoted packet)."""
    itype, code = msg[0], msg[1]
    word = struct.unpack_from("!I", msg, 4)[0]
    if itype == ICMP6_DST_UNREACH:
        return [_UNREACH6.get(code, f"Destination Unreachable, Bad Code: {code}"), *pr_retip(msg[8:])]
    if itype == ICMP6_PACKET_TOO_BIG:
        return [f"Packet too big mtu = {word}", *pr_retip(msg[8:])]
    if itype == ICMP6_TIME_EXCEEDED:
        return [_TIMXCEED6.get(code, f"Time exceeded, Bad Code: {code}"), *pr_retip(msg[8:])]
    if itype == ICMP6_PARAM_PROB:
        what = _PARAMPROB6.get(code, f"Bad code({code}) ")
        return [f"Parameter problem: {what}pointer = 0x{word:02x}", *pr_retip(msg[8:])]
    if itype == ND_REDIRECT and len(msg) >= 40:
        return ["Redirect", f"Destination: {in6.ntop(in6.unpack(msg, 24))} "
                            f"New Target: {in6.ntop(in6.unpack(msg, 8))}"]
    return [_NAMES6.get(itype, f"Bad ICMP type: {itype}")]


def pr_iph(ip6: bytes) -> list[str]:
    """The quoted IPv6 header (at least 40 bytes) as pr_iph prints it."""
    tc = ((ip6[1] >> 4) & 0x0F) | ((ip6[0] << 4) & 0xF0)
    flow = struct.unpack_from("!I", ip6, 0)[0] & 0xFFFFF
    plen, nxt, hlim = struct.unpack_from("!HBB", ip6, 4)
    return ["Vr TC  Flow Plen Nxt Hlim",
            f" {ip6[0] >> 4:1x} {tc:02x} {flow:05x} {plen:04x}  {nxt:02x}   {hlim:02x}",
            f"{in6.ntop(in6.unpack(ip6, 8))}->{in6.ntop(in6.unpack(ip6, 24))}"]


def pr_retip(ip6: bytes) -> list[str]:
    """pr_retip: the packet an error quotes, its header chain walked to the upper layer
    while 8 bytes remain; "..." where the quote ends first. Ends with ping6.c's empty line."""
    if len(ip6) < 40:
        return ["IP6...", ""]
    lines = pr_iph(ip6)
    nh, off, walked = ip6[6], 40, ""
    while len(ip6) - off >= 8:
        if nh in _EXTHDRS:
            walked += _EXTHDRS[nh]
            hlen = 8 if nh == 44 else (ip6[off + 1] + 1) << 3
            nh = ip6[off]
            off += hlen
            if off >= len(ip6):
                break
            continue
        if nh == 58:
            return [*lines, f"{walked}ICMP6: type = {ip6[off]}, code = {ip6[off + 1]}", ""]
        if nh in _PORTS:
            sport, dport = struct.unpack_from("!HH", ip6, off)
            return [*lines, f"{walked}{_PORTS[nh]}: from port {sport}, to port {dport} (decimal)", ""]
        if nh == 50:
            return [*lines, f"{walked}ESP", ""]
        return [*lines, f"{walked}Unknown Header({nh})", ""]
    return [*lines, f"{walked}...", ""]
