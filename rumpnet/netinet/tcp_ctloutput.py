"""TCP socket options (NetBSD's ``tcp_ctloutput``, tcp_usrreq.c) and ``TCP_INFO``
(its ``tcp_fill_info``), per socket, with NetBSD's checks and errnos.

Option numbers are those of the host's ``socket`` module (the system calls take Python's
constants, DESIGN section 5); ``TCP_KEEPINIT``, which Linux has no number for, is
FreeBSD's 128 (:data:`TCP_KEEPINIT`). Values a connection takes from its socket, and an
accepted connection from its listener (NetBSD's sonewconn/syn_cache_get), travel as the
``opts`` dict ``TcpProtocol.connect`` and ``TcpListener.opts`` carry; :data:`CB_OPTS`
applies them to a ``TcpCb``.

``TCP_INFO`` is NetBSD's ``struct tcp_info`` (236 bytes, host byte order), whose first
104 bytes are laid out as Linux's (FreeBSD and NetBSD kept that layout): state (NetBSD's
TCPS_* numbers), options, window scales, RTO/RTT/RTTVAR in microseconds, MSS,
ssthresh (bytes), cwnd and send window (in segments, as NetBSD gives them for the
Linux API), receive space, sequence numbers and the per-connection retransmission,
out-of-order and zero-window counters; the fields NetBSD leaves reserved are zero.
"""

from __future__ import annotations

import errno
import socket as pysocket
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rumpkern.errno import kerr
from rumpnet.netinet.tcp_congctl import CONGCTL, congctl_class
from rumpnet.netinet.tcp_const import (
    TCPT_KEEP,
    TF_ECN_PERMIT,
    TF_RCVD_SCALE,
    TF_RCVD_TSTMP,
    TF_REQ_SCALE,
    TF_REQ_TSTMP,
    TF_SACK_PERMIT,
)
from rumpnet.netinet.tcp_fsm import TcpState
from rumpnet.netinet.tcp_var import (
    TcpCb,
)
from rumpnet.uipc_socket import _int_value

if TYPE_CHECKING:
    from rumpnet.netinet.tcp_usrreq import TcpSocket

TCP_NODELAY = pysocket.TCP_NODELAY
TCP_MAXSEG = pysocket.TCP_MAXSEG
TCP_KEEPIDLE = getattr(pysocket, "TCP_KEEPIDLE", 4)
TCP_KEEPINTVL = getattr(pysocket, "TCP_KEEPINTVL", 5)
TCP_KEEPCNT = getattr(pysocket, "TCP_KEEPCNT", 6)
TCP_KEEPINIT = 128  # FreeBSD's number (NetBSD's 7 is Linux's TCP_SYNCNT)
TCP_INFO = getattr(pysocket, "TCP_INFO", 11)
TCP_CONGESTION = getattr(pysocket, "TCP_CONGESTION", 13)
TCP_CA_NAME_MAX = 16

TCPI_OPT_TIMESTAMPS = 0x01
TCPI_OPT_SACK = 0x02
TCPI_OPT_WSCALE = 0x04
TCPI_OPT_ECN = 0x08
# struct tcp_info: 8 octets, 31 u_int32 fields, 26 u_int32 of padding (NetBSD tcp.h)
TCP_INFO_STRUCT = struct.Struct("=8B31I104x")
KEEP_MAX = 0xFFFFFFFF // 100  # NetBSD: up to UINT_MAX / hz seconds

# FreeBSD's TCP_NOOPT (8 there) has no Linux counterpart and Linux's 8 is TCP_LINGER2:
# rumpnet's number for it lies outside Linux's option numbers.
TCP_NOOPT = 0x1008

# The per-socket TCP options connections inherit, with the socket attribute holding
# each: the keys of the opts dict (see CB_OPTS).
KEEP_OPTS = {TCP_KEEPIDLE: "keepidle", TCP_KEEPINTVL: "keepintvl", TCP_KEEPCNT: "keepcnt",
             TCP_KEEPINIT: "keepinit"}


def _keep_value(value: Any) -> int:
    v = _int_value(value)
    if not 0 < v <= KEEP_MAX:
        raise kerr(errno.EINVAL)  # NetBSD: ui > 0, else EINVAL
    return v


def _congctl_name(value: Any) -> str:
    if isinstance(value, str):
        name = value
    elif isinstance(value, (bytes, bytearray)):
        name = bytes(value).split(b"\0", 1)[0].decode("ascii", "replace")
    else:
        raise kerr(errno.EINVAL)
    if name not in CONGCTL:
        raise kerr(errno.EINVAL)  # NetBSD's tcp_congctl_select
    return name


def tcp_setsockopt(so: TcpSocket, opt: int, value: Any) -> None:
    """``setsockopt(IPPROTO_TCP, opt, value)`` (NetBSD's tcp_ctloutput PRCO_SETOPT)."""
    cb = so.cb
    if opt in KEEP_OPTS:
        name = KEEP_OPTS[opt]
        setattr(so, name, _keep_value(value))
        if cb is not None:
            CB_OPTS[name](cb, getattr(so, name))
            change_keepalive(cb)
    elif opt == TCP_CONGESTION:
        so.congctl = _congctl_name(value)
        if cb is not None and cb.cc.name != so.congctl:
            CB_OPTS["congctl"](cb, so.congctl)
    elif opt == TCP_NOOPT:
        # FreeBSD: before the SYN (on the connecting or listening socket) only.
        so.noopt = bool(_int_value(value))
    elif opt == TCP_NODELAY:
        so.nodelay = bool(_int_value(value))
        if cb is not None:
            cb.nodelay = so.nodelay
    elif opt == TCP_MAXSEG:
        v = _int_value(value)
        if v <= 0 or v > 65535:
            raise kerr(errno.EINVAL)
        so.maxseg = v
        if cb is not None:
            cb.set_maxseg(v)
    else:
        raise kerr(errno.ENOPROTOOPT)


def tcp_getsockopt(so: TcpSocket, opt: int, buflen: int) -> Any:
    """``getsockopt(IPPROTO_TCP, opt)`` (NetBSD's tcp_ctloutput PRCO_GETOPT): an int, or
    bytes (up to ``buflen``) for TCP_INFO and TCP_CONGESTION."""
    cb = so.cb
    if opt in KEEP_OPTS:
        name = KEEP_OPTS[opt]
        return int(getattr(so, name) or getattr(so.tcp.params, name))  # unset: the sysctl's
    if opt == TCP_NODELAY:
        return 1 if so.nodelay else 0
    if opt == TCP_NOOPT:
        return 1 if so.noopt else 0
    if opt == TCP_MAXSEG:
        return cb.t_maxseg if cb is not None else (so.maxseg or so.tcp.params.mssdflt)
    if opt == TCP_INFO:
        info = tcp_fill_info(cb, so.kernel.sched.now()) if cb is not None else TCP_INFO_STRUCT.pack(
            TcpState.LISTEN if so.listener is not None else TcpState.CLOSED, *([0] * 38))
        if not buflen:
            return struct.unpack_from("=i", info)[0]  # an int asked for: the first 4 bytes
        return info[:buflen]
    if opt == TCP_CONGESTION:
        current = cb.cc.name if cb is not None else so.congctl or so.tcp.params.congctl
        return current.encode().ljust(TCP_CA_NAME_MAX, b"\0")[:buflen or TCP_CA_NAME_MAX]
    raise kerr(errno.ENOPROTOOPT)


def change_keepalive(cb: TcpCb) -> None:
    """A keepalive parameter changed: re-arm the timer it governs (NetBSD's
    change_keepalive): the connection-establishment timeout before ESTABLISHED, the
    idle time after, with SO_KEEPALIVE on."""
    if cb.freed:
        return
    if cb.state < TcpState.ESTABLISHED and cb.state != TcpState.CLOSED:
        cb.set_timer(TCPT_KEEP, cb.keep_init(), cb.t_starttime)
    elif cb.keepalive and cb.state <= TcpState.CLOSING:
        cb.set_timer(TCPT_KEEP, cb.keep_idle(), cb.t_rcvtime)


def tcpi_options(tf: int) -> int:
    """``tcpi_options`` for a connection's t_flags: what was negotiated (timestamps, SACK,
    window scaling; ECN, RFC 3168 6.1.1, as NetBSD's and Linux's TCPI_OPT_ECN)."""
    options = 0
    if tf & TF_REQ_TSTMP and tf & TF_RCVD_TSTMP:
        options |= TCPI_OPT_TIMESTAMPS
    if tf & TF_SACK_PERMIT:
        options |= TCPI_OPT_SACK
    if tf & TF_REQ_SCALE and tf & TF_RCVD_SCALE:
        options |= TCPI_OPT_WSCALE
    if tf & TF_ECN_PERMIT:
        options |= TCPI_OPT_ECN
    return options


def tcp_fill_info(cb: TcpCb, now: float) -> bytes:
    """NetBSD's tcp_fill_info: ``struct tcp_info`` of ``cb`` (see the module doc)."""
    options = tcpi_options(cb.t_flags)
    wscale = 0
    if options & TCPI_OPT_WSCALE:
        wscale = (cb.snd_scale & 0x0F) | (cb.rcv_scale & 0x0F) << 4
    segsz = cb.segsize()
    rexmit = cb.t_sndrexmitpack & 0xFFFFFFFF
    usec = 1_000_000
    return TCP_INFO_STRUCT.pack(
        int(cb.state), 0, min(rexmit, 255), 0, 0, options, wscale, 0,
        int(cb.t_rxtcur * usec), 0, segsz, segsz,                      # rto, ato, mss
        0, 0, 0, rexmit, 0,                                             # unacked..fackets
        0, 0, max(0, int((now - cb.t_rcvtime) * usec)) & 0xFFFFFFFF, 0,  # last_*
        0, 0, int(cb.t_srtt * usec), int(cb.t_rttvar * usec),           # pmtu, rcv_ssthresh
        min(cb.snd_ssthresh, 0xFFFFFFFF), cb.snd_cwnd // segsz,
        0, 0, 0, cb.rcv_wnd,                                            # advmss..rcv_space
        cb.snd_wnd // segsz, 0, cb.snd_nxt, cb.rcv_nxt, 0,              # ..toe_tid
        rexmit, cb.t_rcvoopack & 0xFFFFFFFF, cb.t_sndzerowin & 0xFFFFFFFF)


def _set_congctl(cb: TcpCb, name: str | None) -> None:
    if name:
        cb.cc = congctl_class(name)(cb)


# opts-dict key -> how a TcpCb takes it (TcpProtocol.connect and the SYN cache apply
# these; an unknown key is a programming error).
CB_OPTS: dict[str, Callable[[TcpCb, Any], None]] = {
    "nodelay": lambda cb, v: setattr(cb, "nodelay", bool(v)),
    "noopt": lambda cb, v: setattr(cb, "noopt", bool(v)),
    "keepalive": lambda cb, v: setattr(cb, "keepalive", bool(v)),
    "maxseg": lambda cb, v: cb.set_maxseg(int(v)) if v else None,
    "sndbuf": lambda cb, v: cb.set_sndbuf(int(v)) if v else None,
    "rcvbuf": lambda cb, v: cb.set_rcvbuf(int(v)) if v else None,
    "linger": lambda cb, v: cb.set_linger(bool(v[0]), int(v[1])),
    "keepidle": lambda cb, v: setattr(cb, "t_keepidle", float(v)),
    "keepintvl": lambda cb, v: setattr(cb, "t_keepintvl", float(v)),
    "keepcnt": lambda cb, v: setattr(cb, "t_keepcnt", int(v)),
    "keepinit": lambda cb, v: setattr(cb, "t_keepinit", float(v)),
    "ip_tos": lambda cb, v: setattr(cb, "ip_tos", int(v)),
    "ip_ttl": lambda cb, v: setattr(cb, "ip_ttl", v),
    "congctl": _set_congctl,
}


def socket_opts(so: TcpSocket) -> dict[str, Any]:
    """What a connection made from ``so`` (connect) or accepted on it (listen) takes."""
    return {"nodelay": so.nodelay, "noopt": so.noopt, "keepalive": pysocket.SO_KEEPALIVE in so.so_options,
            # sizes the user set (0: TCP's default, autosized)
            "sndbuf": 0 if so.snd_auto else so.snd_hiwat,
            "rcvbuf": 0 if so.rcv_auto else so.rcv_hiwat,
            "linger": (bool(so.linger[0]), so.linger[1]), "maxseg": so.maxseg,
            "keepidle": so.keepidle, "keepintvl": so.keepintvl, "keepcnt": so.keepcnt,
            "keepinit": so.keepinit, "ip_tos": so.tos, "ip_ttl": so.ttl, "congctl": so.congctl}
