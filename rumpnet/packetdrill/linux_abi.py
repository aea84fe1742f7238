"""What packetdrill hands over and expects back, in Linux's binary layouts, translated to
and from the kernel's calls: socket addresses, option values, ``struct tcp_info``.

packetdrill is built on Linux, so the constants in a script (``SOL_SOCKET``,
``O_NONBLOCK``, errno names) are Linux's numbers; the kernel takes Python's
``socket`` constants, which on a Linux host are the same. Only what differs is
translated here.
"""

from __future__ import annotations

import errno
import socket as pysocket
import struct
from typing import Any

from rumpkern.errno import kerr
from rumpnet.netinet.tcp_ctloutput import TCP_KEEPINIT, TCP_NOOPT, tcpi_options
from rumpnet.netinet.tcp_fsm import TcpState
from rumpnet.packetdrill.profiles import FREEBSD_TCPOPT

AF_INET = 2
AF_INET6 = 10
_SIN = struct.Struct("<H")         # sa_family is host order (little-endian here)
_SIN_REST = struct.Struct("!H4s8x")
_SIN6_REST = struct.Struct("!HI16sI")
SOCKADDR_IN_LEN = 16
SOCKADDR_IN6_LEN = 28

SOL_TCP = 6
SOL_SOCKET = 1
TCP_INFO = 11
TCP_CC_INFO = 26
SO_MEMINFO = 55
SK_MEMINFO_VARS = 9
TCP_CC_INFO_LEN = 20              # union tcp_cc_info (vegas, dctcp, bbr)
LINUX_TCP_INFO_LEN = 280          # struct tcp_info as packetdrill's Linux build has it

# Linux's tcpi_state numbers (include/net/tcp_states.h) for our states.
LINUX_TCP_STATE = {
    TcpState.ESTABLISHED: 1, TcpState.SYN_SENT: 2, TcpState.SYN_RECEIVED: 3,
    TcpState.FIN_WAIT_1: 4, TcpState.FIN_WAIT_2: 5, TcpState.TIME_WAIT: 6,
    TcpState.CLOSED: 7, TcpState.CLOSE_WAIT: 8, TcpState.LAST_ACK: 9,
    TcpState.LISTEN: 10, TcpState.CLOSING: 11,
}
TCPI_OPT_TIMESTAMPS = 1
TCPI_OPT_SACK = 2
TCPI_OPT_WSCALE = 4
TCPI_OPT_ECN = 8


def decode_sockaddr(raw: bytes) -> tuple[Any, ...]:
    """A Linux ``struct sockaddr_in``/``sockaddr_in6`` as Python's address tuple."""
    if len(raw) < 2:
        raise kerr(errno.EINVAL)
    (family,) = _SIN.unpack_from(raw)
    if family == AF_INET:
        if len(raw) < SOCKADDR_IN_LEN:
            raise kerr(errno.EINVAL)
        port, addr = _SIN_REST.unpack_from(raw, 2)
        return (pysocket.inet_ntop(pysocket.AF_INET, addr), port)
    if family == AF_INET6:
        if len(raw) < SOCKADDR_IN6_LEN:
            raise kerr(errno.EINVAL)
        port, flowinfo, addr, scope = _SIN6_REST.unpack_from(raw, 2)
        return (pysocket.inet_ntop(pysocket.AF_INET6, addr), port, flowinfo, scope)
    raise kerr(errno.EAFNOSUPPORT)


def encode_sockaddr(addr: Any) -> bytes:
    """Python's address tuple as a Linux ``struct sockaddr_in``/``sockaddr_in6``."""
    if addr is None:
        return b""
    host = addr[0]
    if ":" in host:
        flowinfo = addr[2] if len(addr) > 2 else 0
        scope = addr[3] if len(addr) > 3 else 0
        return _SIN.pack(AF_INET6) + _SIN6_REST.pack(addr[1], flowinfo,
                                                      pysocket.inet_pton(pysocket.AF_INET6, host), scope)
    return _SIN.pack(AF_INET) + _SIN_REST.pack(addr[1], pysocket.inet_pton(pysocket.AF_INET, host))


# FreeBSD's TCP option numbers (as rump_packetdrill --defines them, see profiles) -> the
# kernel's option number; None where the kernel has no such option.
FREEBSD_TCP_OPTION_MAP: dict[int, int | None] = {
    8: TCP_NOOPT,
    128: TCP_KEEPINIT,
    1054: None,   # TCP_RACK_PACE_MAX_SEG (FreeBSD's RACK stack only)
    1055: None,   # TCP_RACK_PACE_ALWAYS
    1109: None,   # TCP_RACK_PACE_RATE_SS
}


def kernel_option(level: int, opt: int) -> int:
    """The kernel's option number for what packetdrill passed (ENOPROTOOPT for a
    FreeBSD-only option the kernel does not have)."""
    if level == pysocket.IPPROTO_TCP and opt & FREEBSD_TCPOPT:
        ours = FREEBSD_TCP_OPTION_MAP.get(opt & ~FREEBSD_TCPOPT)
        if ours is None:
            raise kerr(errno.ENOPROTOOPT)
        return ours
    return opt


def decode_optval(level: int, opt: int, raw: bytes) -> Any:
    """A setsockopt value: ints as ints, ``struct linger`` and the rest as bytes."""
    if len(raw) == 4 and not (level == SOL_SOCKET and opt in (pysocket.SO_RCVTIMEO, pysocket.SO_SNDTIMEO)):
        return struct.unpack("<i", raw)[0]
    return raw


def encode_optval(value: Any, optlen: int) -> bytes:
    """A getsockopt value as the bytes a C caller gets (truncated to ``optlen``)."""
    if isinstance(value, bool | int):
        raw = struct.pack("<i", int(value))
    elif isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
    elif isinstance(value, tuple):
        raw = struct.pack(f"<{len(value)}i", *value)
    else:
        raise kerr(errno.EINVAL)
    return raw[:optlen] if optlen >= 0 else raw


def tcp_info(cb: Any, listening: bool) -> bytes:
    """Linux's ``struct tcp_info`` for a connection (``cb``, a TcpCb, or None for a
    socket with no connection), as the Python snippets of a script read it."""
    buf = bytearray(LINUX_TCP_INFO_LEN)
    if cb is None:
        buf[0] = LINUX_TCP_STATE[TcpState.LISTEN if listening else TcpState.CLOSED]
        return bytes(buf)
    buf[0] = LINUX_TCP_STATE[TcpState(cb.state)]
    options = tcpi_options(cb.t_flags)      # Linux's TCPI_OPT_* numbers are NetBSD's
    if options & TCPI_OPT_WSCALE:
        buf[6] = (cb.snd_scale & 0xF) | ((cb.rcv_scale & 0xF) << 4)
    buf[5] = options
    # tcpi_rto (microseconds), tcpi_snd_mss, tcpi_rcv_mss.
    struct.pack_into("<III", buf, 8, int(cb.t_rxtcur * 1_000_000), cb.t_maxseg, cb.t_maxseg)
    return bytes(buf)


def meminfo() -> bytes:
    """``SO_MEMINFO``: the socket memory counters (zeros: the snippets of the suite do
    not read them, but packetdrill needs the call to succeed)."""
    return bytes(4 * SK_MEMINFO_VARS)


def cc_info() -> bytes:
    """``TCP_CC_INFO``: no vegas/dctcp/bbr state (zeros, as Linux for reno/cubic)."""
    return bytes(TCP_CC_INFO_LEN)
