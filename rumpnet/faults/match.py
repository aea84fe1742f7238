"""A small frame matcher for the ``drop_match`` impairment.

Not part of tc-netem(8): netem drops at random, and Linux selects packets for a qdisc
with tc-u32/tc-flower filters instead.  Here the selection is folded into the model: a
:class:`FrameMatch` looks at raw Ethernet (optionally one 802.1Q tag) / IPv4 / TCP / UDP /
ICMP bytes and says whether a frame matches.

Text form (a subset of pcap-filter(7) words, pf's ``flags X/Y`` for TCP flags)::

    tcp dport 80 flags S/SA          # SYNs (no ACK) to port 80
    udp src 10.0.0.0/24 port 53
    icmp dst 10.0.0.2
    arp
    proto 47                         # IP protocol number
    tcp flags R                      # anything with RST set

All given conditions must hold (an implicit "and").  Ports only match TCP/UDP first
fragments.  Malformed frames never match and never raise.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

ETHERTYPE_IP = 0x0800
ETHERTYPE_ARP = 0x0806
ETHERTYPE_VLAN = 0x8100

IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17

PROTO_NAMES = {"icmp": IPPROTO_ICMP, "tcp": IPPROTO_TCP, "udp": IPPROTO_UDP}

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


def _net(text: str, field: str) -> tuple[int, int]:
    """``a.b.c.d[/len]`` -> (network, mask) as host-order ints."""
    try:
        net = ipaddress.IPv4Network(text, strict=False)
    except ValueError:
        raise ValueError(f"{field}: bad IPv4 address {text!r}") from None
    return int(net.network_address), int(net.netmask)


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
        p = self.proto
        ethertype: int | None = None
        ipproto: int | None = None
        if p is None:
            pass
        elif isinstance(p, int) and not isinstance(p, bool):
            if not 0 <= p <= 255:
                raise ValueError(f"proto: IP protocol {p} out of range")
            ethertype, ipproto = ETHERTYPE_IP, p
        elif p == "ip":
            ethertype = ETHERTYPE_IP
        elif p == "arp":
            ethertype = ETHERTYPE_ARP
        elif isinstance(p, str) and p in PROTO_NAMES:
            ethertype, ipproto = ETHERTYPE_IP, PROTO_NAMES[p]
        else:
            raise ValueError(f"proto: unknown protocol {p!r}")
        for name in ("sport", "dport", "port"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, int) and 0 <= v <= 65535):
                raise ValueError(f"{name}: port {v!r} out of range")
        if self.flags is not None and not 0 <= self.flags <= 0xFF:
            raise ValueError(f"flags: {self.flags!r} out of range")
        if self.flags_mask is not None and not 0 <= self.flags_mask <= 0xFF:
            raise ValueError(f"flags_mask: {self.flags_mask!r} out of range")
        if self.flags_mask is not None and self.flags is None:
            raise ValueError("flags_mask: given without flags")
        needs_ip = any(v is not None for v in (self.src, self.dst, self.host))
        needs_l4 = any(v is not None for v in (self.sport, self.dport, self.port))
        if (needs_ip or needs_l4 or self.flags is not None) and ethertype == ETHERTYPE_ARP:
            raise ValueError("proto: arp cannot be combined with address, port or flag conditions")
        if needs_l4 and ipproto not in (None, IPPROTO_TCP, IPPROTO_UDP):
            raise ValueError("proto: ports need tcp or udp")
        if self.flags is not None and ipproto not in (None, IPPROTO_TCP):
            raise ValueError("proto: flags need tcp")
        if self.flags is not None:
            ipproto = IPPROTO_TCP
        if needs_ip or needs_l4 or ipproto is not None:
            ethertype = ETHERTYPE_IP
        object.__setattr__(self, "_ethertype", ethertype)
        object.__setattr__(self, "_ipproto", ipproto)
        object.__setattr__(self, "_src", _net(self.src, "src") if self.src is not None else None)
        object.__setattr__(self, "_dst", _net(self.dst, "dst") if self.dst is not None else None)
        object.__setattr__(self, "_host", _net(self.host, "host") if self.host is not None else None)
        object.__setattr__(self, "_l4", needs_l4)
        mask = self.flags_mask if self.flags_mask is not None else self.flags
        object.__setattr__(self, "_fmask", mask)

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
            if w in ("tcp", "udp", "icmp", "ip", "arp"):
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
        want_et: int | None = self._ethertype  # type: ignore[attr-defined]
        if want_et is not None and etype != want_et:
            return False
        if etype != ETHERTYPE_IP:
            return want_et is None or want_et == etype
        vhl = frame[off]
        if vhl >> 4 != 4:
            return False
        ihl = (vhl & 0x0F) * 4
        if ihl < 20:
            return False
        proto = frame[off + 9]
        want_p: int | None = self._ipproto  # type: ignore[attr-defined]
        if want_p is not None and proto != want_p:
            return False
        src = _I.unpack_from(frame, off + 12)[0]
        dst = _I.unpack_from(frame, off + 16)[0]
        for net, addr in ((self._src, src), (self._dst, dst)):  # type: ignore[attr-defined]
            if net is not None and (addr & net[1]) != net[0]:
                return False
        h = self._host  # type: ignore[attr-defined]
        if h is not None and (src & h[1]) != h[0] and (dst & h[1]) != h[0]:
            return False
        if not self._l4 and self.flags is None:  # type: ignore[attr-defined]
            return True
        if proto not in (IPPROTO_TCP, IPPROTO_UDP):
            return False
        if _H.unpack_from(frame, off + 6)[0] & 0x1FFF:
            return False  # not a first fragment: no L4 header here
        l4 = off + ihl
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
