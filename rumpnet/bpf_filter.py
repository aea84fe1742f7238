"""pcap-filter(7) expressions compiled to predicates over Ethernet frames, for
:class:`rumpnet.bpf.BpfTap` and the fault model (what libpcap's ``gencode.c`` and NetBSD's
``bpf_filter.c`` do between them, as closures). Malformed frames never raise: they do
not match.

Filter grammar (a subset of pcap-filter(7))::

    expr      := term (("or" | "||") term)*
    term      := factor (("and" | "&&") factor)*
    factor    := ("not" | "!") factor | "(" expr ")" | relation | primitive
    primitive := [proto] [dir] [type] id  |  proto  |  flag keyword
    proto     := ether | ip | arp | tcp | udp | icmp
    ip6       := "ip6" [src|dst] [proto N | host ADDR6 | net ADDR6/LEN] | "icmp6"
    dir       := src | dst
    type      := host | net | port | portrange | proto
    relation  := proto "[" off [":" size] "]" ["&" value] relop value
    relop     := = | == | != | < | <= | > | >=

Examples: ``arp``, ``icmp or udp port 53``, ``src host 10.0.0.1``, ``net 10.0.0.0/24``,
``dst port 80``, ``tcp src port 1024``, ``ether host 02:00:00:00:00:01``,
``ether broadcast``, ``tcp-syn``, ``tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn``,
``icmp[icmptype] == icmp-echo``, ``not (port 22 or arp)``, ``less 64``, ``greater 1000``,
``ether proto 0x88cc``, ``ether proto \\arp``, ``ip proto 17``, ``ip6``, ``icmp6``,
``ip6 proto 17``, ``host fe80::1``, ``ip6 net fc00::/64``; ``tcp``, ``udp`` and their
ports match IPv6 frames too (the extension headers walked), as pcap-filter(7) says.
Unlike pcap, a qualifier is not inherited by a following bare id (``host a or b`` must
be written ``host a or host b``).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable

__all__ = ["Frame", "FrameFilter", "compile_filter"]

Frame = bytes | bytearray | memoryview
FrameFilter = Callable[[Frame], bool]


# --------------------------------------------------------------------------- frame access

ETHERTYPE_IP = 0x0800
ETHERTYPE_ARP = 0x0806
ETHERTYPE_IPV6 = 0x86DD
_ETHERTYPE_NAMES = {"ip": ETHERTYPE_IP, "arp": ETHERTYPE_ARP, "ip6": ETHERTYPE_IPV6}
IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_ICMPV6 = 58

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")


def _ethertype(b: Frame) -> int:
    return b[12] << 8 | b[13]


def _ip_l4(b: Frame, proto: int | None = None) -> int:
    """Offset of the IPv4 payload of frame ``b`` (first fragment only), or -1."""
    if len(b) < 34 or _ethertype(b) != ETHERTYPE_IP or b[14] >> 4 != 4:
        return -1
    if proto is not None and b[23] != proto:
        return -1
    if (b[20] << 8 | b[21]) & 0x1FFF:  # not the first fragment: no L4 header here
        return -1
    return 14 + (b[14] & 0x0F) * 4


def _is_ip(b: Frame) -> bool:
    return len(b) >= 34 and _ethertype(b) == ETHERTYPE_IP and b[14] >> 4 == 4


def _ip6_l4(b: Frame) -> tuple[int, int]:
    """(upper-layer protocol, its offset in the frame) of an IPv6 frame, the extension
    headers walked (the first fragment only); (-1, -1) otherwise."""
    if len(b) < 54 or _ethertype(b) != ETHERTYPE_IPV6 or b[14] >> 4 != 6:
        return -1, -1
    from rumpnet.netinet6.ip6 import ip6_lasthdr

    last = ip6_lasthdr(memoryview(b)[14:])
    return (last[0], 14 + last[1]) if last is not None else (-1, -1)


def _is_ip6proto(proto: int) -> FrameFilter:
    """``ip6 proto N`` / ``icmp6``: the upper layer after the extension headers."""
    return lambda b: _ip6_l4(b)[0] == proto


def _is_ipproto(proto: int, v6: bool = False) -> FrameFilter:
    """IPv4 protocol ``proto``; with ``v6`` (tcp, udp: pcap-filter(7) matches both
    families) an IPv6 upper layer too."""
    def f(b: Frame) -> bool:
        return (_is_ip(b) and b[23] == proto) or (v6 and _ip6_l4(b)[0] == proto)

    return f


def _ethertype_test(etype: int) -> FrameFilter:
    def f(b: Frame) -> bool:
        return len(b) >= 14 and _ethertype(b) == etype

    return f


def _is_arp(b: Frame) -> bool:
    return len(b) >= 14 and _ethertype(b) == ETHERTYPE_ARP


def _ip6_addr_test(want: int, mask: int, src: bool, dst: bool) -> FrameFilter:
    def f(b: Frame) -> bool:
        if len(b) < 54 or _ethertype(b) != ETHERTYPE_IPV6:
            return False
        s_ = int.from_bytes(b[22:38], "big")
        d_ = int.from_bytes(b[38:54], "big")
        return (src and s_ & mask == want) or (dst and d_ & mask == want)

    return f


def _ip_addr_test(want: int, mask: int, src: bool, dst: bool) -> FrameFilter:
    def f(b: Frame) -> bool:
        if not _is_ip(b):
            return False
        return (src and _U32.unpack_from(b, 26)[0] & mask == want) or (dst and _U32.unpack_from(b, 30)[0] & mask == want)

    return f


def _arp_addr_test(want: int, mask: int, src: bool, dst: bool) -> FrameFilter:
    def f(b: Frame) -> bool:
        # Ethernet/IPv4 ARP only: hrd 1, pro 0x0800, hln 6, pln 4.
        if len(b) < 42 or _ethertype(b) != ETHERTYPE_ARP or b[18] != 6 or b[19] != 4:
            return False
        return (src and _U32.unpack_from(b, 28)[0] & mask == want) or (dst and _U32.unpack_from(b, 38)[0] & mask == want)

    return f


def _port_test(protos: tuple[int, ...], lo: int, hi: int, src: bool, dst: bool) -> FrameFilter:
    def f(b: Frame) -> bool:
        if _is_ip(b):
            if b[23] not in protos:
                return False
            off = _ip_l4(b)
        else:
            nxt, off = _ip6_l4(b)
            if nxt not in protos:
                return False
        if off < 0 or len(b) < off + 4:
            return False
        sport = b[off] << 8 | b[off + 1]
        dport = b[off + 2] << 8 | b[off + 3]
        return (src and lo <= sport <= hi) or (dst and lo <= dport <= hi)

    return f


def _ether_test(mac: bytes, src: bool, dst: bool) -> FrameFilter:
    def f(b: Frame) -> bool:
        if len(b) < 14:
            return False
        return (dst and bytes(b[0:6]) == mac) or (src and bytes(b[6:12]) == mac)

    return f


def _ether_multicast(b: Frame) -> bool:
    return len(b) >= 14 and bool(b[0] & 1)


def _tcp_flag_test(mask: int) -> FrameFilter:
    def f(b: Frame) -> bool:
        off = _ip_l4(b, IPPROTO_TCP)
        return off >= 0 and len(b) > off + 13 and bool(b[off + 13] & mask)

    return f


def _len_test(op: str, n: int) -> FrameFilter:
    if op == "<=":
        return lambda b: len(b) <= n
    return lambda b: len(b) >= n


# --------------------------------------------------------------------------- the compiler

_TOKEN_RE = re.compile(r"\s*(?:(?P<op>&&|\|\||==|!=|<=|>=|[()\[\]!&|=<>])|(?P<word>[A-Za-z0-9_.:/\-\\]+))")

_PROTOS = ("ether", "ip", "arp", "tcp", "udp", "icmp")
_DIRS = ("src", "dst")
_TYPES = ("host", "net", "port", "portrange", "proto")

_NAMED = {
    "tcpflags": 13,
    "icmptype": 0,
    "icmpcode": 1,
    "tcp-fin": 0x01,
    "tcp-syn": 0x02,
    "tcp-rst": 0x04,
    "tcp-push": 0x08,
    "tcp-ack": 0x10,
    "tcp-urg": 0x20,
    "tcp-ece": 0x40,
    "tcp-cwr": 0x80,
    "icmp-echoreply": 0,
    "icmp-unreach": 3,
    "icmp-sourcequench": 4,
    "icmp-redirect": 5,
    "icmp-echo": 8,
    "icmp-routeradvert": 9,
    "icmp-routersolicit": 10,
    "icmp-timxceed": 11,
    "icmp-paramprob": 12,
    "icmp-tstamp": 13,
    "icmp-tstampreply": 14,
}
_TCP_FLAG_WORDS = {k: v for k, v in _NAMED.items() if k.startswith("tcp-")}
_IP_PROTO_NAMES = {"icmp": IPPROTO_ICMP, "tcp": IPPROTO_TCP, "udp": IPPROTO_UDP}
_PORT_NAMES = {
    "ftp-data": 20, "ftp": 21, "ssh": 22, "telnet": 23, "smtp": 25, "domain": 53,
    "bootps": 67, "bootpc": 68, "tftp": 69, "http": 80, "ntp": 123, "https": 443,
}  # fmt: skip


def _tokenize(expr: str) -> list[str]:
    tokens: list[str] = []
    pos = 0
    expr = expr.rstrip()
    while pos < len(expr):
        m = _TOKEN_RE.match(expr, pos)
        if m is None or m.end() == pos:
            raise ValueError(f"filter {expr!r}: unexpected character {expr[pos:].lstrip()[:1]!r} at {pos}")
        tokens.append(m.group("op") or m.group("word"))
        pos = m.end()
    return tokens


def _parse_ipv4(text: str) -> int:
    parts = text.split(".")
    if len(parts) != 4 or not all(p.isdigit() and int(p) < 256 for p in parts):
        raise ValueError(f"bad IPv4 address {text!r}")
    return int.from_bytes(bytes(int(p) for p in parts), "big")


def _parse_net(text: str) -> tuple[int, int]:
    """``10.0.0.0/24``, ``10.0.0.0`` or ``10.1`` (implicit prefix from the octets given)."""
    if "/" in text:
        addr, _, plen_s = text.partition("/")
        if not plen_s.isdigit() or int(plen_s) > 32:
            raise ValueError(f"bad prefix length in {text!r}")
        plen = int(plen_s)
        parts = addr.split(".")
        addr = ".".join(parts + ["0"] * (4 - len(parts)))
        base = _parse_ipv4(addr)
    else:
        parts = text.split(".")
        if not 1 <= len(parts) <= 4:
            raise ValueError(f"bad network {text!r}")
        plen = 8 * len(parts)
        base = _parse_ipv4(".".join(parts + ["0"] * (4 - len(parts))))
    mask = (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF
    if base & ~mask & 0xFFFFFFFF:
        raise ValueError(f"non-network bits set in {text!r}")
    return base, mask


def _parse_mac(text: str) -> bytes:
    parts = re.split(r"[:\-.]", text)
    if len(parts) == 6 and all(1 <= len(p) <= 2 for p in parts):
        try:
            return bytes(int(p, 16) for p in parts)
        except ValueError:
            pass
    raise ValueError(f"bad Ethernet address {text!r}")


def _parse_port(text: str) -> int:
    if text in _PORT_NAMES:
        return _PORT_NAMES[text]
    if not text.isdigit() or int(text) > 65535:
        raise ValueError(f"bad port {text!r}")
    return int(text)


def _looks_mac(text: str) -> bool:
    parts = text.split(":")
    return len(parts) == 6 and all(1 <= len(p) <= 2 and all(c in "0123456789abcdefABCDEF" for c in p) for p in parts)


def _looks_ipv4(text: str) -> bool:
    return bool(re.fullmatch(r"\d+\.\d+\.\d+\.\d+", text))


class _Parser:
    def __init__(self, expr: str) -> None:
        self.expr = expr
        self.toks = _tokenize(expr)
        self.i = 0

    # token helpers
    def peek(self, k: int = 0) -> str | None:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else None

    def take(self) -> str:
        tok = self.peek()
        if tok is None:
            raise self.error("unexpected end of expression")
        self.i += 1
        return tok

    def expect(self, tok: str) -> None:
        got = self.peek()
        if got != tok:
            raise self.error(f"expected {tok!r}, got {got!r}" if got else f"expected {tok!r} at end")
        self.i += 1

    def error(self, msg: str) -> ValueError:
        return ValueError(f"bad filter {self.expr!r}: {msg}")

    # grammar
    def parse(self) -> FrameFilter:
        if not self.toks:
            return lambda b: True
        f = self.expr_or()
        if self.peek() is not None:
            raise self.error(f"unexpected {self.peek()!r}")
        return f

    def expr_or(self) -> FrameFilter:
        f = self.expr_and()
        while self.peek() in ("or", "||"):
            self.i += 1
            g = self.expr_and()
            f = _or(f, g)
        return f

    def expr_and(self) -> FrameFilter:
        f = self.factor()
        while self.peek() in ("and", "&&"):
            self.i += 1
            g = self.factor()
            f = _and(f, g)
        return f

    def factor(self) -> FrameFilter:
        tok = self.peek()
        if tok in ("not", "!"):
            self.i += 1
            g = self.factor()
            return lambda b: not g(b)
        if tok == "(":
            self.i += 1
            f = self.expr_or()
            self.expect(")")
            return f
        if tok is None:
            raise self.error("unexpected end of expression")
        if tok in _PROTOS and self.peek(1) == "[":
            return self.relation()
        return self.primitive()

    def primitive(self) -> FrameFilter:
        tok = self.take()
        if tok == "ip6":
            return self.ip6()
        if tok == "icmp6":
            return _is_ip6proto(IPPROTO_ICMPV6)
        if tok in _TCP_FLAG_WORDS:
            return _tcp_flag_test(_TCP_FLAG_WORDS[tok])
        if tok in ("less", "greater"):
            n = self.take()
            if not n.isdigit():
                raise self.error(f"{tok} needs a length, got {n!r}")
            return _len_test("<=" if tok == "less" else ">=", int(n))
        if tok in ("broadcast", "multicast"):
            return self.ether_special(tok)
        proto: str | None = None
        if tok in _PROTOS:
            proto = tok
            nxt = self.peek()
            if nxt not in _DIRS and nxt not in _TYPES and nxt not in ("broadcast", "multicast"):
                return self.proto_only(proto)
            tok = self.take()
        if proto == "ether" and tok in ("broadcast", "multicast"):
            return self.ether_special(tok)
        if proto == "ip" and tok in ("broadcast", "multicast"):
            raise self.error(f"'ip {tok}' is not supported")
        src = dst = True
        if tok in _DIRS:
            src, dst = tok == "src", tok == "dst"
            if self.peek() in ("or", "and") and self.peek(1) in _DIRS and self.peek(1) != tok:
                # "src or dst" / "src and dst" (the latter approximated as "either")
                self.i += 2
                src = dst = True
            tok = self.take()
        if tok in _TYPES:
            kind = tok
            ident = self.take()
        else:
            # A bare id after a qualifier: "ether src MAC", "src 10.0.0.1", "10.0.0.1".
            ident = tok
            if proto is None and ":" in ident and not _looks_mac(ident):
                return self.ip6_addr(ident, src, dst)     # a bare IPv6 address
            if proto == "ether" or (proto is None and ":" in ident):
                kind = "host"
                proto = "ether"
            elif _looks_ipv4(ident):
                kind = "host"
            else:
                raise self.error(f"unknown primitive {ident!r}")
        if ident in ("and", "or", "not", "(", ")", "&&", "||", "!"):
            raise self.error(f"{kind} needs an argument, got {ident!r}")
        return self.qualified(proto, src, dst, kind, ident)

    def ip6(self) -> FrameFilter:
        """``ip6``, ``ip6 proto N``, ``ip6 [src|dst] host|net ADDR[/LEN]``."""
        nxt = self.peek()
        src = dst = True
        if nxt in _DIRS:
            src, dst = nxt == "src", nxt == "dst"
            self.i += 1
            nxt = self.peek()
        if nxt == "proto":
            self.i += 1
            ident = self.take().lstrip("\\")
            num = _IP_PROTO_NAMES.get(ident, IPPROTO_ICMPV6 if ident == "icmp6" else None)
            if num is None:
                if not ident.isdigit() or int(ident) > 255:
                    raise self.error(f"bad protocol {ident!r}")
                num = int(ident)
            return _is_ip6proto(num)
        if nxt in ("host", "net"):
            self.i += 1
            return self.ip6_addr(self.take(), src, dst)
        return _ethertype_test(ETHERTYPE_IPV6)

    def ip6_addr(self, ident: str, src: bool, dst: bool) -> FrameFilter:
        from rumpnet.netinet6 import in6

        text, _, plen = ident.partition("/")
        try:
            addr = in6.pton(text)
            n = int(plen) if plen else 128
            mask = in6.prefixlen2mask(n)
        except (OSError, ValueError):
            raise self.error(f"bad IPv6 address {ident!r}") from None
        return _ip6_addr_test(addr & mask, mask, src, dst)

    def proto_only(self, proto: str) -> FrameFilter:
        if proto == "ether":
            raise self.error("'ether' needs a qualifier (host, src, dst, broadcast, ...)")
        if proto == "ip":
            return _is_ip
        if proto == "arp":
            return _is_arp
        return _is_ipproto(_IP_PROTO_NAMES[proto], v6=proto in ("tcp", "udp"))

    def ether_special(self, word: str) -> FrameFilter:
        if word == "broadcast":
            return _ether_test(b"\xff" * 6, False, True)
        return _ether_multicast

    def qualified(self, proto: str | None, src: bool, dst: bool, kind: str, ident: str) -> FrameFilter:
        try:
            if kind == "proto" and proto == "ether":
                etype = _ETHERTYPE_NAMES.get(ident.lstrip("\\"))
                if etype is None:
                    etype = int(ident, 0)
                    if not 0 <= etype <= 0xFFFF:
                        raise ValueError(f"bad ethertype {ident!r}")
                return _ethertype_test(etype)
            if kind == "proto":
                if proto not in (None, "ip"):
                    raise ValueError(f"'{proto} proto' is not supported")
                num = _IP_PROTO_NAMES.get(ident.lstrip("\\"))
                if num is None:
                    if not ident.isdigit() or int(ident) > 255:
                        raise ValueError(f"bad protocol {ident!r}")
                    num = int(ident)
                return _is_ipproto(num)
            if proto == "ether":
                if kind != "host":
                    raise ValueError(f"'ether {kind}' is not supported")
                return _ether_test(_parse_mac(ident), src, dst)
            if kind in ("port", "portrange"):
                if proto in ("tcp", "udp"):
                    protos: tuple[int, ...] = (_IP_PROTO_NAMES[proto],)
                elif proto in (None, "ip"):
                    protos = (IPPROTO_TCP, IPPROTO_UDP)
                else:
                    raise ValueError(f"'{proto} port' makes no sense")
                if kind == "port":
                    lo = hi = _parse_port(ident)
                else:
                    a, sep, z = ident.partition("-")
                    if not sep:
                        raise ValueError(f"bad port range {ident!r}")
                    lo, hi = sorted((_parse_port(a), _parse_port(z)))
                return _port_test(protos, lo, hi, src, dst)
            # host / net
            if ":" in ident and proto in (None, "ip6"):
                return self.ip6_addr(ident, src, dst)
            if kind == "host":
                want, mask = _parse_ipv4(ident), 0xFFFFFFFF
            else:
                want, mask = self.net_operand(ident)
            ipf = _ip_addr_test(want, mask, src, dst)
            if proto == "arp":
                return _arp_addr_test(want, mask, src, dst)
            if proto is None:
                arpf = _arp_addr_test(want, mask, src, dst)
                return _or(ipf, arpf)
            if proto == "ip":
                return ipf
            return _and(_is_ipproto(_IP_PROTO_NAMES[proto]), ipf)
        except ValueError as e:
            if str(e).startswith("bad filter"):
                raise
            raise self.error(str(e)) from None

    def net_operand(self, ident: str) -> tuple[int, int]:
        if self.peek() == "mask":
            self.i += 1
            mask = _parse_ipv4(self.take())
            base = _parse_ipv4(ident)
            if base & ~mask & 0xFFFFFFFF:
                raise ValueError(f"non-network bits set in {ident!r}")
            return base, mask
        return _parse_net(ident)

    # proto[off:size] & mask relop value
    def relation(self) -> FrameFilter:
        proto = self.take()
        self.expect("[")
        spec = self.take()
        self.expect("]")
        off_s, _, size_s = spec.partition(":")
        off = self.const(off_s)
        size = int(size_s) if size_s else 1
        if size not in (1, 2, 4):
            raise self.error(f"access size must be 1, 2 or 4, got {size_s!r}")
        mask: int | None = None
        if self.peek() == "&":
            self.i += 1
            mask = self.value()
        op = self.take()
        if op not in ("=", "==", "!=", "<", "<=", ">", ">="):
            raise self.error(f"expected a comparison, got {op!r}")
        val = self.value()
        base = _accessor_base(proto)
        cmp = _COMPARE[op]

        def f(b: Frame) -> bool:
            start = base(b)
            if start < 0 or len(b) < start + off + size:
                return False
            i = start + off
            x = b[i] if size == 1 else int.from_bytes(b[i : i + size], "big")
            if mask is not None:
                x &= mask
            return cmp(x, val)

        return f

    def value(self) -> int:
        """A constant, a name, or a parenthesised '|'/'&' combination of them."""
        if self.peek() == "(":
            self.i += 1
            v = self.value()
            self.expect(")")
        else:
            v = self.const(self.take())
        while self.peek() in ("|", "&"):
            op = self.take()
            w = self.value()
            v = v | w if op == "|" else v & w
        return v

    def const(self, tok: str) -> int:
        if tok in _NAMED:
            return _NAMED[tok]
        try:
            return int(tok, 0)
        except ValueError:
            raise self.error(f"expected a number or a name, got {tok!r}") from None


def _accessor_base(proto: str) -> Callable[[Frame], int]:
    if proto == "ether":
        return lambda b: 0
    if proto == "ip":
        return lambda b: 14 if _is_ip(b) else -1
    if proto == "arp":
        return lambda b: 14 if _is_arp(b) else -1
    num = _IP_PROTO_NAMES[proto]
    return lambda b: _ip_l4(b, num)


_COMPARE: dict[str, Callable[[int, int], bool]] = {
    "=": lambda a, b: a == b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _and(f: FrameFilter, g: FrameFilter) -> FrameFilter:
    return lambda b: f(b) and g(b)


def _or(f: FrameFilter, g: FrameFilter) -> FrameFilter:
    return lambda b: f(b) or g(b)


def compile_filter(expr: str) -> FrameFilter:
    """Compile a pcap-filter(7) subset (see the module docstring) into a predicate.

    Raises ValueError with the reason for a bad expression. The predicate never raises:
    a frame too short or malformed for a test does not match.
    """
    if not isinstance(expr, str):
        raise TypeError("filter expression must be a str")
    inner = _Parser(expr).parse()

    def match(frame: Frame) -> bool:
        try:
            return bool(inner(frame))
        except (IndexError, struct.error):  # a field beyond a short or malformed frame
            return False

    match.expr = expr  # type: ignore[attr-defined]
    return match
