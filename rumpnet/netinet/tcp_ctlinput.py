"""TCP's side of ICMP errors and path MTU (NetBSD's ``tcp_ctlinput``, ``tcp_notify``,
``tcp_mtudisc`` in tcp_subr.c; the MSS following the route as its ``tcp_segsize`` does).

Sans-IO: the protocol's callbacks reach the route table (``mtu_for``, ``route_gen``,
``pmtu_update``); nothing here touches I/O or the clock.

* An error is taken only if it quotes one of our connections and a sequence number in
  flight, ``SND.UNA =< SEG.SEQ < SND.MAX`` (RFC 5927 section 4.1, FreeBSD's check); the
  caller counts the others (``icps_noconn``).
* Hard errors (protocol or port unreachable, administratively prohibited, TTL exceeded
  in transit) abort a connection attempt in SYN-SENT when ``net.inet.tcp.icmp_may_rst``
  is set (RFC 1122 4.2.3.9, RFC 5461; FreeBSD's tcp_drop_syn_sent). Everything else, and
  every error in the synchronized states, is soft (RFC 5461 section 2.1, RFC 5927):
  remembered in ``t_softerror``, reported only if the connection then times out.
* "Fragmentation needed" lowers the route's path MTU (``pmtu_update``, IP's
  ``icmp_mtudisc``) and then the connection's MSS, and resends what is unacknowledged.
* ``t_maxseg`` follows the route: whenever the route table changed since the last
  segment (a learned MTU, one that aged out, an interface MTU, a route change),
  :func:`tcp_pmtu_sync` recomputes it from the path MTU, so TCP never builds a segment
  the route cannot carry, and grows again when an estimate expires (RFC 1191 6.3).
"""

from __future__ import annotations

import errno
import struct
from typing import TYPE_CHECKING

from rumpnet.netinet import tcp_output as _out
from rumpnet.netinet.ip_var import INETCTLERRMAP
from rumpnet.netinet.tcp_const import (
    EV_ERROR,
)
from rumpnet.netinet.tcp_fsm import TcpState
from rumpnet.netinet.tcp_seq import SEQ_LEQ, SEQ_LT

if TYPE_CHECKING:
    from rumpnet.netinet.tcp_subr import TcpProtocol
    from rumpnet.netinet.tcp_var import TcpCb

# FreeBSD's tcp_ctlinput: with icmp_may_rst these abort a connection in SYN-SENT.
HARD_ERRORS = frozenset({"protounreach", "portunreach", "adminprohib", "timxceed"})
MIN_MSS = 64
_PORTS_SEQ = struct.Struct("!HHI")


def tcp_ctlinput(proto: TcpProtocol, kind: str, inner: bytes | memoryview, mtu: int, now: float) -> bool:
    """An ICMP error quoting ``inner`` (our IP header and at least 8 bytes of our TCP
    header). True if it was about one of our connections and acted on."""
    try:
        if len(inner) < 20:
            return False
        ihl = (inner[0] & 0x0F) * 4
        if ihl < 20 or len(inner) < ihl + 8:
            return False
        qlen = (inner[2] << 8) | inner[3]
        laddr, faddr = struct.unpack_from("!II", inner, 12)
        lport, fport, seq = _PORTS_SEQ.unpack_from(inner, ihl)
    except (struct.error, IndexError, TypeError):
        return False
    return tcp_ctlnotify(proto, kind, (laddr, lport, faddr, fport), seq, qlen, mtu, now)


def tcp_ctlnotify(proto: TcpProtocol, kind: str, conn: tuple[int, int, int, int], seq: int, quoted_len: int,
                  mtu: int, now: float) -> bool:
    """What an ICMP (or ICMPv6) error does to the connection ``conn`` = (laddr, lport,
    faddr, fport) that sent the quoted segment (sequence number ``seq``, the quoted IP
    packet ``quoted_len`` bytes long): True if it was one of ours and acted on."""
    cb = proto.conns.get(conn)
    if cb is None or cb.freed:
        return False
    # RFC 5927 4.1: the quoted sequence number must be in flight.
    if not (SEQ_LEQ(cb.snd_una, seq) and SEQ_LT(seq, cb.snd_max)):
        return False
    if kind == "needfrag":
        tcp_mtudisc(cb, mtu, quoted_len, now)
        return True
    err = INETCTLERRMAP.get(kind, 0)
    if not err:
        return True
    if cb.state == TcpState.SYN_SENT and proto.params.icmp_may_rst and kind in HARD_ERRORS:
        proto.drop(cb, err, now, send_rst=False)
        return True
    tcp_notify(cb, err)
    return True


def tcp_notify(cb: TcpCb, err: int) -> None:
    """A soft error (NetBSD's tcp_notify): ignored for host or net unreachable on an
    established connection; made the socket's error in a connection attempt that has
    retransmitted more than 3 times after an earlier error; else remembered."""
    if cb.state == TcpState.ESTABLISHED and err in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN):
        return
    if cb.state < TcpState.ESTABLISHED and cb.t_rxtshift > 3 and cb.t_softerror:
        cb.error = err
        cb.notify(EV_ERROR)
    else:
        cb.t_softerror = err


def tcp_mtudisc(cb: TcpCb, mtu: int, quoted_len: int, now: float) -> None:
    """"Fragmentation needed" about one of our segments: lower the path MTU (the
    route, through the protocol's ``pmtu_update``; without one, this connection only),
    then the MSS, and resend from SND.UNA (NetBSD's tcp_mtudisc)."""
    proto = cb.proto
    if proto.pmtu_update is not None:
        proto.pmtu_update(cb.faddr, mtu, quoted_len)
        shrank = tcp_pmtu_sync(cb)
    else:
        mss = max(MIN_MSS, (mtu if mtu >= 68 else 576) - proto.hdrs)
        shrank = mss < cb.t_maxseg
        if shrank:
            cb.t_maxseg = mss
    if shrank:
        cb.snd_nxt = cb.snd_una
        _out.tcp_output(cb, now)


def tcp_pmtu_sync(cb: TcpCb) -> bool:
    """``t_maxseg`` from the path MTU toward the peer, capped by the peer's MSS and
    TCP_MAXSEG (NetBSD's tcp_segsize, Linux's tcp_sync_mss). True if it shrank."""
    proto = cb.proto
    cb.t_pmtu_gen = proto.route_gen()
    mss = min(cb.t_peermss, proto.mtu_for(cb.faddr) - proto.hdrs)
    if cb.user_maxseg:
        mss = min(mss, cb.user_maxseg)
    mss = max(mss, MIN_MSS)
    old = cb.t_maxseg
    cb.t_maxseg = mss
    return mss < old


def tcp_emsgsize(proto: TcpProtocol, src: int, dst: int, segment: bytes | bytearray | memoryview,
                 now: float) -> None:
    """IP refused ``segment`` as larger than the path MTU (DF, EMSGSIZE): the route's MTU
    went down under a segment already built (a retransmission). Resize and resend it
    once TCP has returned (FreeBSD's tcp_output on EMSGSIZE: tcp_mss_update, again)."""
    if len(segment) < 8:
        return
    sport, dport, seq = _PORTS_SEQ.unpack_from(segment, 0)
    cb = proto.conns.get((src, sport, dst, dport))
    if cb is None or cb.freed or cb.state < TcpState.ESTABLISHED or not tcp_pmtu_sync(cb):
        return
    if SEQ_LT(seq, cb.snd_nxt) and SEQ_LEQ(cb.snd_una, seq):
        cb.snd_nxt = seq
    proto.timer_push(now, Resend(cb, now))


class Resend:
    """A one-shot owner in the protocol's timer heap: run tcp_output for ``cb`` at
    ``when`` (the caller runs due timers after the work at hand)."""

    __slots__ = ("cb", "_hdl", "freed")

    def __init__(self, cb: TcpCb, when: float) -> None:
        self.cb = cb
        self._hdl: float | None = when
        self.freed = False

    def next_deadline(self) -> float | None:
        return None if self.freed else self._hdl

    def on_timer(self, now: float) -> None:
        self.freed = True
        if not self.cb.freed:
            _out.tcp_output(self.cb, now)
