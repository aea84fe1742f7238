"""pcap capture and a bpf-like filter (NetBSD's ``net/bpf.c`` seen from user space).

* :class:`PcapWriter` writes classic pcap files (magic ``0xa1b2c3d4``, version 2.4,
  LINKTYPE_ETHERNET, microsecond timestamps) that tcpdump, Wireshark and scapy read.
  The same frames and timestamps always give the same bytes: the file header has no
  host-dependent field and the byte order is fixed (little-endian).
* :class:`PcapReader` iterates ``(ts, frame)`` over a pcap file (either byte order,
  microsecond or nanosecond magic); a truncated last record ends the iteration quietly.
* :func:`compile_filter` compiles a subset of pcap-filter(7) into a predicate over
  Ethernet frames. Malformed frames never raise: they do not match.
* :class:`BpfTap` joins a writer and a filter: the interface calls ``tap(frame)`` for
  every frame it receives or transmits.

Filter grammar (a subset of pcap-filter(7))::

    expr      := term (("or" | "||") term)*
    term      := factor (("and" | "&&") factor)*
    factor    := ("not" | "!") factor | "(" expr ")" | relation | primitive
    primitive := [proto] [dir] [type] id  |  proto  |  flag keyword
    proto     := ether | ip | arp | tcp | udp | icmp      (and "ip6" alone)
    dir       := src | dst
    type      := host | net | port | portrange | proto
    relation  := proto "[" off [":" size] "]" ["&" value] relop value
    relop     := = | == | != | < | <= | > | >=

Examples: ``arp``, ``icmp or udp port 53``, ``src host 10.0.0.1``, ``net 10.0.0.0/24``,
``dst port 80``, ``tcp src port 1024``, ``ether host 02:00:00:00:00:01``,
``ether broadcast``, ``tcp-syn``, ``tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn``,
``icmp[icmptype] == icmp-echo``, ``not (port 22 or arp)``, ``less 64``, ``greater 1000``,
``ether proto 0x88cc``, ``ether proto \\arp``, ``ip proto 17``, ``ip6``.
Unlike pcap, a qualifier is not inherited by a following bare id (``host a or b`` must
be written ``host a or host b``).
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Callable, Iterator
from typing import IO, Any, Self

__all__ = [
    "LINKTYPE_ETHERNET",
    "PCAP_MAGIC",
    "PCAP_SNAPLEN",
    "BpfTap",
    "FrameFilter",
    "PcapReader",
    "PcapWriter",
    "compile_filter",
]

PCAP_MAGIC = 0xA1B2C3D4
PCAP_MAGIC_NSEC = 0xA1B23C4D
PCAP_VERSION_MAJOR = 2
PCAP_VERSION_MINOR = 4
PCAP_SNAPLEN = 262144
LINKTYPE_ETHERNET = 1

_FILE_HDR = struct.Struct("<IHHiIII")
_REC_HDR = struct.Struct("<IIII")

Frame = bytes | bytearray | memoryview
FrameFilter = Callable[[Frame], bool]


# --------------------------------------------------------------------------- pcap files


class PcapWriter:
    """Write Ethernet frames to a classic pcap file.

    ``sink`` is a path (str or os.PathLike, created or truncated) or a binary file
    object opened for writing; a file object passed in is flushed but not closed by
    :meth:`close`.
    """

    def __init__(
        self,
        sink: str | os.PathLike[str] | IO[bytes],
        snaplen: int = PCAP_SNAPLEN,
        linktype: int = LINKTYPE_ETHERNET,
    ) -> None:
        if snaplen <= 0:
            raise ValueError("snaplen must be positive")
        self.snaplen = snaplen
        self.linktype = linktype
        self.frames = 0
        self.closed = False
        if isinstance(sink, (str, os.PathLike)):
            self._fp: IO[bytes] = open(sink, "wb")  # noqa: SIM115 - owned, closed by close()
            self._owned = True
        else:
            self._fp = sink
            self._owned = False
        self._fp.write(
            _FILE_HDR.pack(
                PCAP_MAGIC,
                PCAP_VERSION_MAJOR,
                PCAP_VERSION_MINOR,
                0,
                0,
                snaplen,
                linktype,
            )
        )

    def write(self, frame: Frame, ts: float) -> None:
        """Append one frame captured at ``ts`` (seconds; stored with microsecond precision)."""
        sec = int(ts // 1)
        usec = round((ts - sec) * 1_000_000)
        if usec >= 1_000_000:
            sec += 1
            usec -= 1_000_000
        self.write_record(frame, sec, usec)

    def write_record(self, frame: Frame, sec: int, usec: int) -> None:
        """Append one frame with an exact ``sec``/``usec`` timestamp."""
        if self.closed:
            raise ValueError("write to a closed PcapWriter")
        n = len(frame)
        caplen = min(n, self.snaplen)
        self._fp.write(_REC_HDR.pack(sec & 0xFFFFFFFF, usec, caplen, n))
        self._fp.write(frame[:caplen] if caplen < n else frame)
        self.frames += 1

    def flush(self) -> None:
        """Push what was written to the file."""
        if not self.closed:
            self._fp.flush()

    def close(self) -> None:
        """Flush and close (the file only if this writer opened it)."""
        if self.closed:
            return
        self.closed = True
        if self._owned:
            self._fp.close()
        else:
            self._fp.flush()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PcapReader:
    """Iterate ``(ts, frame)`` over a classic pcap file (path or binary file object).

    Both byte orders and the nanosecond variant are read. A last record cut short (a
    capture still being written, or a crash) ends the iteration without an error.
    Raises ValueError for a file that is not pcap.
    """

    def __init__(self, source: str | os.PathLike[str] | IO[bytes]) -> None:
        if isinstance(source, (str, os.PathLike)):
            self._fp: IO[bytes] = open(source, "rb")  # noqa: SIM115 - owned, closed by close()
            self._owned = True
        else:
            self._fp = source
            self._owned = False
        hdr = self._fp.read(_FILE_HDR.size)
        if len(hdr) < _FILE_HDR.size:
            self.close()
            raise ValueError("not a pcap file: header truncated")
        magic_le = struct.unpack_from("<I", hdr)[0]
        magic_be = struct.unpack_from(">I", hdr)[0]
        if magic_le in (PCAP_MAGIC, PCAP_MAGIC_NSEC):
            order, magic = "<", magic_le
        elif magic_be in (PCAP_MAGIC, PCAP_MAGIC_NSEC):
            order, magic = ">", magic_be
        else:
            self.close()
            raise ValueError(f"not a pcap file: magic 0x{magic_le:08x}")
        self._tsdiv = 1e9 if magic == PCAP_MAGIC_NSEC else 1e6
        (
            _,
            self.version_major,
            self.version_minor,
            _,
            _,
            self.snaplen,
            self.linktype,
        ) = struct.unpack(order + "IHHiIII", hdr)
        self._rec = struct.Struct(order + "IIII")
        self.truncated = False

    def __iter__(self) -> Iterator[tuple[float, bytes]]:
        rec = self._rec
        fp = self._fp
        while True:
            hdr = fp.read(rec.size)
            if len(hdr) < rec.size:
                self.truncated = bool(hdr)
                return
            sec, frac, caplen, _origlen = rec.unpack(hdr)
            data = fp.read(caplen)
            if len(data) < caplen:
                self.truncated = True
                return
            yield sec + frac / self._tsdiv, data

    def close(self) -> None:
        """Close the file (only if this reader opened it)."""
        if self._owned:
            self._fp.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- frame access

ETHERTYPE_IP = 0x0800
ETHERTYPE_ARP = 0x0806
ETHERTYPE_IPV6 = 0x86DD
_ETHERTYPE_NAMES = {"ip": ETHERTYPE_IP, "arp": ETHERTYPE_ARP, "ip6": ETHERTYPE_IPV6}
IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17

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


def _is_ipproto(proto: int) -> FrameFilter:
    def f(b: Frame) -> bool:
        return _is_ip(b) and b[23] == proto

    return f


def _ethertype_test(etype: int) -> FrameFilter:
    def f(b: Frame) -> bool:
        return len(b) >= 14 and _ethertype(b) == etype

    return f


def _is_arp(b: Frame) -> bool:
    return len(b) >= 14 and _ethertype(b) == ETHERTYPE_ARP


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
        if not _is_ip(b) or b[23] not in protos:
            return False
        off = _ip_l4(b)
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
            return _ethertype_test(ETHERTYPE_IPV6)
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

    def proto_only(self, proto: str) -> FrameFilter:
        if proto == "ether":
            raise self.error("'ether' needs a qualifier (host, src, dst, broadcast, ...)")
        if proto == "ip":
            return _is_ip
        if proto == "arp":
            return _is_arp
        return _is_ipproto(_IP_PROTO_NAMES[proto])

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


# --------------------------------------------------------------------------- the tap


class BpfTap:
    """A capture point: ``tap(frame)`` writes the frame if it passes the filter.

    ``writer`` is a :class:`PcapWriter` (or anything with ``write(frame, ts)``),
    ``filter`` an expression or a predicate, ``clock`` gives the capture time (the
    kernel clock, so virtual-time runs give identical files). Counters follow NetBSD's
    ``struct bpf_stat``: ``bs_recv`` frames seen, ``bs_capt`` frames written,
    ``bs_drop`` frames the writer failed on.
    """

    def __init__(
        self,
        writer: Any,
        filter: str | FrameFilter | None = None,  # noqa: A002 - pcap's and the brief's name
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.writer = writer
        self.filter: FrameFilter | None = compile_filter(filter) if isinstance(filter, str) else filter
        if clock is None:
            raise TypeError("BpfTap needs a clock (the kernel's clock_now)")
        self.clock = clock
        self.bs_recv = 0
        self.bs_capt = 0
        self.bs_drop = 0

    def tap(self, frame: Frame) -> None:
        """One frame seen by the interface: counted (bs_recv) and, when it passes the filter, written."""
        self.bs_recv += 1
        flt = self.filter
        if flt is not None and not flt(frame):
            return
        try:
            self.writer.write(frame, self.clock())
        except (OSError, ValueError):
            self.bs_drop += 1
            return
        self.bs_capt += 1

    __call__ = tap

    def flush(self) -> None:
        """Flush the writer."""
        flush = getattr(self.writer, "flush", None)
        if flush is not None:
            flush()

    def close(self) -> None:
        """Close the writer."""
        self.writer.close()
