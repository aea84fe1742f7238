"""A small frame matcher for the ``drop_match`` impairment.

Not part of tc-netem(8): netem drops at random, and Linux selects packets for a qdisc
with tc-u32/tc-flower filters instead.  Here the selection is folded into the model: a
:class:`FrameMatch` looks at raw Ethernet (optionally one 802.1Q tag) / IPv4 or IPv6 /
TCP / UDP / ICMP / ICMPv6 bytes and says whether a frame matches.

Text form (a subset of pcap-filter(7) words, pf's ``flags X/Y`` for TCP flags)::

    tcp dport 80 flags S/SA          # SYNs (no ACK) to port 80, over IPv4 or IPv6
    udp src 10.0.0.0/24 port 53
    icmp dst 10.0.0.2
    icmp6 dst fc00::2                # ICMPv6 (ND, MLD, echo, errors)
    ip6 src fe80::/64                # any IPv6 packet from a link-local source
    arp
    proto 47                         # IP protocol / IPv6 upper-layer header number
    tcp flags R                      # anything with RST set

All given conditions must hold (an implicit "and").  As in pcap-filter, ``tcp``, ``udp``
and ``proto N`` match both families, ``ip`` and ``icmp`` IPv4 only, ``ip6`` and
``icmp6`` IPv6 only; an address restricts the match to its family.  IPv6 extension
headers (hop-by-hop, routing, destination options, fragment, AH; RFC 8200 4) are walked
to the upper-layer header, as :mod:`rumpnet.bpf` does.  Ports only match TCP/UDP first
fragments (IPv4 offset 0, IPv6 Fragment header offset 0).  Malformed frames never match
and never raise.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

ETHERTYPE_IP = 0x0800
ETHERTYPE_ARP = 0x0806
ETHERTYPE_VLAN = 0x8100
ETHERTYPE_IPV6 = 0x86DD
IP_FAMILIES = frozenset({ETHERTYPE_IP, ETHERTYPE_IPV6})

IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_ICMPV6 = 58

# name -> (the ethertypes it matches, the protocol number or None)
PROTO_NAMES: dict[str, tuple[frozenset[int], int | None]] = {
    "ip": (frozenset({ETHERTYPE_IP}), None),
    "ip6": (frozenset({ETHERTYPE_IPV6}), None),
    "arp": (frozenset({ETHERTYPE_ARP}), None),
    "icmp": (frozenset({ETHERTYPE_IP}), IPPROTO_ICMP),
    "icmp6": (frozenset({ETHERTYPE_IPV6}), IPPROTO_ICMPV6),
    "tcp": (IP_FAMILIES, IPPROTO_TCP),
    "udp": (IP_FAMILIES, IPPROTO_UDP),
}
FAMILY_NAMES = {ETHERTYPE_IP: "ip", ETHERTYPE_IPV6: "ip6", ETHERTYPE_ARP: "arp"}

# IPv6 extension headers walked to the upper layer (RFC 8200 4.1's order is not enforced).
_IP6_EXT = frozenset({0, 43, 60})      # hop-by-hop, routing, destination options: (len+1)*8
IP6_FRAGMENT, IP6_AH = 44, 51
_IP6_MAX_EXT = 8                       # more than this: treated as malformed

# TCP header flag bits, letters as pf.conf(5) writes them (C for CWR accepted too).
TCP_FLAG_BITS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10, "U": 0x20, "E": 0x40, "W": 0x80, "C": 0x80}

_H = struct.Struct("!H")
_HH = struct.Struct("!HH")
_I = struct.Struct("!I")


def parse_flags(text: str, field: str = "flags") -> int:
    """TCP flags as the ``match`` clause names them (``SYN``, ``S|A``, ...) as a bit mask (ValueError naming ``field``)."""
    bits = 0
    for ch in text.upper():
        if ch not in TCP_FLAG_BITS:
            raise ValueError(f"{field}: unknown TCP flag {ch!r} in {text!r} (use FSRPAUEW)")
        bits |= TCP_FLAG_BITS[ch]
    return bits


def _net(text: str, field: str) -> tuple[int, int, int]:
    """``a.b.c.d[/len]`` or ``x::y[/len]`` -> (network, mask, ethertype), the addresses as
    ints."""
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"{field}: bad IPv4 or IPv6 address {text!r}") from None
    etype = ETHERTYPE_IP if net.version == 4 else ETHERTYPE_IPV6
    return int(net.network_address), int(net.netmask), etype


def frame_family(frame: bytes | bytearray | memoryview) -> str:
    """The family of an Ethernet frame (one 802.1Q tag skipped): ``ip``, ``ip6``, ``arp``
    or ``other`` (too short ones too)."""
    if len(frame) < 14:
        return "other"
    etype = _H.unpack_from(frame, 12)[0]
    if etype == ETHERTYPE_VLAN and len(frame) >= 18:
        etype = _H.unpack_from(frame, 16)[0]
    return FAMILY_NAMES.get(etype, "other")


def ip6_upper(frame: bytes | bytearray | memoryview, off: int) -> tuple[int, int | None]:
    """The upper-layer protocol of the IPv6 packet at ``off`` and where its header starts
    (None in a fragment other than the first, which carries no upper-layer header).
    Raises IndexError or struct.error on a truncated chain, ValueError on too long a one."""
    nxt = frame[off + 6]
    pos = off + 40
    for _ in range(_IP6_MAX_EXT):
        if nxt in _IP6_EXT:
            nxt, pos = frame[pos], pos + (frame[pos + 1] + 1) * 8
        elif nxt == IP6_FRAGMENT:
            first = _H.unpack_from(frame, pos + 2)[0] >> 3 == 0
            nxt, pos = frame[pos], pos + 8
            if not first:
                return nxt, None
        elif nxt == IP6_AH:
            nxt, pos = frame[pos], pos + (frame[pos + 1] + 2) * 4
        else:
            return nxt, pos
    raise ValueError("IPv6 extension header chain too long")


def _port(text: str, field: str) -> int:
    try:
        p = int(text, 10)
    except ValueError:
        raise ValueError(f"{field}: bad port {text!r}") from None
    if not 0 <= p <= 65535:
        raise ValueError(f"{field}: port {p} out of range")
    return p


@dataclass(frozen=True)
class FrameMatch:
    """Conditions over one Ethernet frame; ``None`` means "any".

    ``proto``: ``"ip"``, ``"arp"``, ``"tcp"``, ``"udp"``, ``"icmp"`` or an IP protocol
    number.  ``src``/``dst``/``host``: IPv4 address or CIDR prefix (``host`` matches either
    side).  ``sport``/``dport``/``port``: TCP/UDP ports (``port`` either side).
    ``flags``/``flags_mask``: TCP flag bits, pf's ``flags S/SA`` (``(th_flags & mask) ==
    flags``; mask defaults to ``flags``, i.e. "all of these set").
    """

    proto: str | int | None = None
    src: str | None = None
    dst: str | None = None
    host: str | None = None
    sport: int | None = None
    dport: int | None = None
    port: int | None = None
    flags: int | None = None
    flags_mask: int | None = None

    def __post_init__(self) -> None:
        # Validate and precompute (frozen: use object.__setattr__ for the caches).
        families, ipproto = self._proto_families()
        for name in ("sport", "dport", "port"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, int) and 0 <= v <= 65535):
                raise ValueError(f"{name}: port {v!r} out of range")
        for name in ("flags", "flags_mask"):
            v = getattr(self, name)
            if v is not None and not 0 <= v <= 0xFF:
                raise ValueError(f"{name}: {v!r} out of range")
        if self.flags_mask is not None and self.flags is None:
            raise ValueError("flags_mask: given without flags")
        nets = {name: _net(getattr(self, name), name) for name in ("src", "dst", "host")
                if getattr(self, name) is not None}
        needs_l4 = any(v is not None for v in (self.sport, self.dport, self.port))
        if (nets or needs_l4 or self.flags is not None) and families == {ETHERTYPE_ARP}:
            raise ValueError("proto: arp cannot be combined with address, port or flag conditions")
        if needs_l4 and ipproto not in (None, IPPROTO_TCP, IPPROTO_UDP):
            raise ValueError("proto: ports need tcp or udp")
        if self.flags is not None and ipproto not in (None, IPPROTO_TCP):
            raise ValueError("proto: flags need tcp")
        if self.flags is not None:
            ipproto = IPPROTO_TCP
        if nets or needs_l4 or ipproto is not None:
            families = families or IP_FAMILIES
        for name, (_n, _m, etype) in nets.items():
            if etype not in families:
                raise ValueError(f"{name}: {getattr(self, name)!r} is not an address of {self._family_words(families)}")
            families = frozenset({etype})
        object.__setattr__(self, "_families", families)
        object.__setattr__(self, "_ipproto", ipproto)
        for name in ("src", "dst", "host"):
            object.__setattr__(self, "_" + name, nets.get(name))
        object.__setattr__(self, "_l4", needs_l4)
        mask = self.flags_mask if self.flags_mask is not None else self.flags
        object.__setattr__(self, "_fmask", mask)

    def _proto_families(self) -> tuple[frozenset[int], int | None]:
        """``proto`` as (the ethertypes it allows, empty for any; the IP protocol)."""
        p = self.proto
        if p is None:
            return frozenset(), None
        if isinstance(p, int) and not isinstance(p, bool):
            if not 0 <= p <= 255:
                raise ValueError(f"proto: IP protocol {p} out of range")
            return IP_FAMILIES, p
        if isinstance(p, str) and p in PROTO_NAMES:
            return PROTO_NAMES[p]
        raise ValueError(f"proto: unknown protocol {p!r} (one of {', '.join(PROTO_NAMES)} or a number)")

    @staticmethod
    def _family_words(families: frozenset[int]) -> str:
        return " or ".join(FAMILY_NAMES[e] for e in sorted(families))

    @classmethod
    def parse(cls, text: str | list[str]) -> FrameMatch:
        """Parse the text form (see the module docstring); ``ValueError`` names the word."""
        words = text.split() if isinstance(text, str) else list(text)
        kw: dict[str, object] = {}
        i = 0

        def arg(name: str) -> str:
            nonlocal i
            if i + 1 >= len(words):
                raise ValueError(f"{name}: missing value")
            i += 1
            return words[i]

        while i < len(words):
            w = words[i].lower()
            if w in PROTO_NAMES:
                if "proto" in kw:
                    raise ValueError(f"proto: given twice ({w!r})")
                kw["proto"] = w
            elif w == "proto":
                v = arg("proto")
                if "proto" in kw:
                    raise ValueError("proto: given twice")
                kw["proto"] = int(v) if v.isdigit() else v.lower()
            elif w in ("src", "dst", "host"):
                kw[w] = arg(w)
            elif w in ("sport", "dport", "port"):
                kw[w] = _port(arg(w), w)
            elif w == "flags":
                v = arg("flags")
                if "/" in v:
                    f, m = v.split("/", 1)
                    kw["flags"] = parse_flags(f)
                    kw["flags_mask"] = parse_flags(m, "flags_mask")
                else:
                    kw["flags"] = parse_flags(v)
            elif w == "and":
                pass
            else:
                raise ValueError(f"match: unknown word {words[i]!r}")
            i += 1
        return cls(**kw)  # type: ignore[arg-type]

    def __str__(self) -> str:
        out: list[str] = []
        if self.proto is not None:
            out.append(f"proto {self.proto}" if isinstance(self.proto, int) else str(self.proto))
        for name in ("src", "dst", "host", "sport", "dport", "port"):
            v = getattr(self, name)
            if v is not None:
                out.append(f"{name} {v}")
        if self.flags is not None:
            out.append("flags " + _flag_letters(self.flags) + ("/" + _flag_letters(self.flags_mask) if self.flags_mask is not None else ""))
        return " ".join(out) or "all"

    def __call__(self, frame: bytes | bytearray | memoryview) -> bool:
        try:
            return self._match(frame)
        except (IndexError, struct.error):
            return False

    def _match(self, frame: bytes | bytearray | memoryview) -> bool:
        if len(frame) < 14:
            return False
        off = 12
        etype = _H.unpack_from(frame, off)[0]
        if etype == ETHERTYPE_VLAN:
            off += 4
            etype = _H.unpack_from(frame, off)[0]
        off += 2
        families: frozenset[int] = self._families  # type: ignore[attr-defined]
        if families and etype not in families:
            return False
        if etype == ETHERTYPE_IP:
            hdr = self._ip4(frame, off)
        elif etype == ETHERTYPE_IPV6:
            hdr = self._ip6(frame, off)
        else:
            return True
        if hdr is None:
            return False
        proto, src, dst, l4 = hdr
        want_p: int | None = self._ipproto  # type: ignore[attr-defined]
        if want_p is not None and proto != want_p:
            return False
        for net, addr in ((self._src, src), (self._dst, dst)):  # type: ignore[attr-defined]
            if net is not None and (addr & net[1]) != net[0]:
                return False
        h = self._host  # type: ignore[attr-defined]
        if h is not None and (src & h[1]) != h[0] and (dst & h[1]) != h[0]:
            return False
        if not self._l4 and self.flags is None:  # type: ignore[attr-defined]
            return True
        if proto not in (IPPROTO_TCP, IPPROTO_UDP) or l4 is None:
            return False  # no ports, or not a first fragment: no L4 header here
        return self._ports_flags(frame, l4)

    @staticmethod
    def _ip4(frame: bytes | bytearray | memoryview, off: int) -> tuple[int, int, int, int | None] | None:
        """(protocol, source, destination, L4 offset or None) of the IPv4 packet at ``off``."""
        vhl = frame[off]
        ihl = (vhl & 0x0F) * 4
        if vhl >> 4 != 4 or ihl < 20:
            return None
        src, dst = _I.unpack_from(frame, off + 12)[0], _I.unpack_from(frame, off + 16)[0]
        first = not _H.unpack_from(frame, off + 6)[0] & 0x1FFF
        return frame[off + 9], src, dst, off + ihl if first else None

    @staticmethod
    def _ip6(frame: bytes | bytearray | memoryview, off: int) -> tuple[int, int, int, int | None] | None:
        """The same for the IPv6 packet at ``off`` (extension headers walked; protocol -1
        when the chain is truncated or too long: ``ip6`` matches it, a protocol does not)."""
        if frame[off] >> 4 != 6 or len(frame) < off + 40:
            return None
        src = int.from_bytes(frame[off + 8:off + 24], "big")
        dst = int.from_bytes(frame[off + 24:off + 40], "big")
        try:
            proto, l4 = ip6_upper(frame, off)
        except (ValueError, IndexError, struct.error):
            return -1, src, dst, None      # an IPv6 packet whose upper layer is out of reach
        return proto, src, dst, l4

    def _ports_flags(self, frame: bytes | bytearray | memoryview, l4: int) -> bool:
        sport, dport = _HH.unpack_from(frame, l4)
        if self.sport is not None and sport != self.sport:
            return False
        if self.dport is not None and dport != self.dport:
            return False
        if self.port is not None and self.port not in (sport, dport):
            return False
        if self.flags is not None:
            th_flags = frame[l4 + 13]
            if (th_flags & self._fmask) != self.flags:  # type: ignore[attr-defined]
                return False
        return True


def _flag_letters(bits: int | None) -> str:
    if bits is None:
        return ""
    return "".join(ch for ch, b in TCP_FLAG_BITS.items() if ch != "C" and bits & b)
