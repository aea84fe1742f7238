"""ICMP (NetBSD's ``ip_icmp.c``): echo, errors out, errors in (to the transports), PMTU.

Errors are rate limited (``net.inet.icmp.errppslimit`` per second) and never sent about
ICMP errors, broadcasts, non-first fragments or bad source addresses (RFC 1122 3.2.2).

Sans-IO in time: every routine that needs the time (input, ``error``'s rate limit,
``mtudisc``, redirects) takes ``now``. Host routes made by PMTU discovery and redirects
live a while (RFC 1191 6.3, RFC 1122 3.3.1.2); their end is a deadline of
:attr:`Icmp.timers` keyed by the host address, run by ``handle_timer(now)`` (NetBSD's
``rt_timer`` queues, ``ip_mtudisc_timeout_q`` and ``icmp_redirect_timeout_q``).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from rumpnet.netinet.in_cksum import in_cksum
from rumpnet.netinet.ip_input import (
    ICMP_PARAMPROB,
    ICMP_REDIRECT,
    ICMP_TIMXCEED,
    ICMP_UNREACH,
    ICMP_UNREACH_NEEDFRAG,
    IPOPT_LSRR,
    IPOPT_MINOFF,
    IPOPT_NOP,
    IPOPT_RR,
    IPOPT_SSRR,
    IPOPT_TS,
    ip_options,
    source_route_done,
)
from rumpnet.netinet.ip_var import IP_HDR, IP_HDR_LEN, IP_OFFMASK, IPPROTO_ICMP, CoreTimers
from rumpnet.route import RTF_DYNAMIC, RTF_GATEWAY, RTF_HOST, RTF_MODIFIED, RTF_UP, RTV_MTU, Rtentry

if TYPE_CHECKING:
    from rumpnet.ifnet import Ifnet
    from rumpnet.netinet.in_proto import Inet

ICMP_ECHOREPLY = 0
ICMP_SOURCEQUENCH = 4
ICMP_ECHO = 8
ICMP_ROUTERADVERT = 9
ICMP_TSTAMP = 13
ICMP_TSTAMPREPLY = 14
ICMP_MASKREQ = 17
ICMP_MASKREPLY = 18

ICMP_HDR = struct.Struct("!BBH")
ICMP_ERRORS = {ICMP_UNREACH, ICMP_SOURCEQUENCH, ICMP_REDIRECT, ICMP_TIMXCEED, ICMP_PARAMPROB}
ICMP_MINLEN = 8
ICMP_RETURN_DATABYTES = 8  # bytes of the offending datagram after its header (RFC 792)

# RFC 1191 section 7's table of MTU plateaus, for a "fragmentation needed" without a
# Next-Hop MTU (NetBSD's mtu_plateau).
MTU_PLATEAUS = (65535, 32000, 17914, 8166, 4352, 2002, 1492, 1280, 1006, 508, 296, 68)


def _error_kinds() -> dict[tuple[int, int], str]:
    """(type, code) of an ICMP error -> the kind the transports' ctlinput take (NetBSD's
    PRC_* as icmp_input maps them; FreeBSD's PRC_UNREACH_ADMIN_PROHIB for codes 9, 10 and
    13, and its split of time exceeded in transit from reassembly). Codes not here are
    NetBSD's "badcode" (``icps_badcode``)."""
    unreach = ("netunreach", "hostunreach", "protounreach", "portunreach", "needfrag", "srcfail",
               "netunreach", "hostunreach", "hostunreach", "adminprohib", "adminprohib", "netunreach",
               "hostunreach", "adminprohib", "hostunreach", "hostunreach")
    kinds = {(ICMP_UNREACH, code): kind for code, kind in enumerate(unreach)}
    kinds[(ICMP_TIMXCEED, 0)] = "timxceed"
    kinds[(ICMP_TIMXCEED, 1)] = "timxceed_reass"
    kinds[(ICMP_PARAMPROB, 0)] = kinds[(ICMP_PARAMPROB, 1)] = "paramprob"
    return kinds


ERROR_KINDS = _error_kinds()


class IcmpParams:
    def __init__(self) -> None:
        self.maskrepl = 0
        self.errppslimit = 100
        self.rediraccept = 1
        self.redirtimeout = 600
        self.bmcastecho = 0
        self.returndatabytes = ICMP_RETURN_DATABYTES


class Icmp:
    def __init__(self, inet: Inet) -> None:
        self.inet = inet
        self.stats = inet.icmpstat
        self.params = inet.icmp_params
        self._rate_sec = -1
        self._rate_count = 0
        # The end of each host route's learned MTU or redirect, by host address.
        self.timers: CoreTimers[int] = CoreTimers()

    # -- timers ----------------------------------------------------------------------
    def get_timer(self) -> float | None:
        """The earliest end of a host route's lifetime, or None."""
        return self.timers.earliest()

    def handle_timer(self, now: float) -> None:
        """End every host route lifetime due at ``now`` (:meth:`_expire`)."""
        while (dst := self.timers.pop_due(now)) is not None:
            self._expire(dst, now)

    # -- input -----------------------------------------------------------------------
    def input(self, ifp: Ifnet, pkt: memoryview, hlen: int, src: int, dst: int, now: float) -> None:
        """An ICMP message received at ``now`` (``icmp_input``)."""
        st = self.stats
        msg = pkt[hlen:]
        if len(msg) < ICMP_MINLEN:
            st.icps_tooshort += 1
            return
        if in_cksum(msg) != 0:
            st.icps_checksum += 1
            return
        icmp_type, code = msg[0], msg[1]
        if icmp_type < len(st.icps_inhist):
            st.icps_inhist[icmp_type] += 1
        inet = self.inet
        if icmp_type == ICMP_ECHO:
            if (dst == 0xFFFFFFFF or dst in inet.bcast_addrs) and not self.params.bmcastecho:
                st.icps_bmcastecho += 1
                return
            reply = bytearray(msg)
            reply[0] = ICMP_ECHOREPLY
            reply[2] = reply[3] = 0
            c = in_cksum(reply)
            reply[2] = c >> 8
            reply[3] = c & 0xFF
            self.reflect(ifp, reply, src, dst, ICMP_ECHOREPLY, pkt[:hlen] if hlen > IP_HDR_LEN else None)
            return
        if icmp_type == ICMP_MASKREQ and self.params.maskrepl and len(msg) >= 12:
            ifa = inet.ifa_for_ifp(ifp)
            if ifa is not None:
                reply = bytearray(msg[:12])
                reply[0] = ICMP_MASKREPLY
                reply[2] = reply[3] = 0
                struct.pack_into("!I", reply, 8, ifa.mask)
                c = in_cksum(reply)
                reply[2:4] = bytes((c >> 8, c & 0xFF))
                self.reflect(ifp, reply, src, dst, ICMP_MASKREPLY)
            return
        if icmp_type in ICMP_ERRORS:
            self._error_input(ifp, icmp_type, code, msg, src, now)

    def _error_input(self, ifp: Ifnet, icmp_type: int, code: int, msg: memoryview, src: int,
                     now: float) -> None:
        """An error about a datagram we sent: tell its transport (``pr_ctlinput``).

        The transport checks the error against its connection (TCP: the quoted sequence
        number, RFC 5927 section 4.1) and only then acts on it; "fragmentation needed"
        changes the route's MTU only through that check (:meth:`mtudisc`, called by
        the transport as NetBSD's tcp_ctlinput calls icmp_mtudisc). Before this fix the
        route was lowered first, whatever the transport said: forged messages quoting
        no connection at all walked a route's MTU down to 68."""
        st = self.stats
        inner = msg[8:]
        if len(inner) < 20 + 8 or inner[0] >> 4 != 4:
            st.icps_badlen += 1
            return
        ihl = (inner[0] & 0xF) << 2
        if ihl < 20 or len(inner) < ihl + 8:
            st.icps_badlen += 1
            return
        _, _, _, _, _, _, proto, _, isrc, idst = IP_HDR.unpack_from(inner)
        inet = self.inet
        if icmp_type == ICMP_REDIRECT:
            if code > 3:
                st.icps_badcode += 1
            elif self.params.rediraccept and not inet.ip_params.forwarding:
                gw = struct.unpack_from("!I", msg, 4)[0]
                self._redirect(idst, gw, src, now)
            return
        if icmp_type == ICMP_SOURCEQUENCH:
            return  # RFC 6633: ignored
        kind = ERROR_KINDS.get((icmp_type, code))
        if kind is None or (idst >> 28) == 0xE:
            st.icps_badcode += 1  # NetBSD icmp_input's badcode (also: quoted multicast)
            return
        nextmtu = struct.unpack_from("!H", msg, 6)[0] if kind == "needfrag" else 0
        if not inet.ctlinput(proto, kind, isrc, idst, bytes(inner[:ihl + 8]), nextmtu):
            st.icps_noconn += 1

    def mtudisc(self, dst: int, nextmtu: int, quoted_len: int, now: float) -> int:
        """Path MTU discovery (RFC 1191, NetBSD's ``icmp_mtudisc``): a "fragmentation
        needed" message a transport has checked lowers the path MTU toward ``dst``, on a
        host route made for it. Returns the path MTU toward ``dst`` afterwards.

        * A Next-Hop MTU of 0 (old routers, RFC 1191 section 5): the plateau below the
          quoted datagram's length.
        * Never raised by such a message (RFC 1191 section 3): an MTU not below the
          current one is ignored (``icps_pmtuignored``), as is one not below the quoted
          datagram's length (``quoted_len``, when given): that datagram fit.
        * A floor, ``net.inet.ip.min_pmtu`` (552, Linux's ``net.ipv4.route.min_pmtu``):
          an MTU below it sets the route to the floor and locks it (NetBSD's RTV_MTU
          lock, which its icmp_mtudisc sets for an MTU below 296): TCP stops setting DF
          toward ``dst``, so a router on a path narrower than the floor fragments
          instead of dropping. Eight forged messages can no longer walk it to 68.
        * The estimate ages (RFC 1191 section 6.3): after ``net.inet.ip.mtudisctimeout``
          seconds a learned host route is deleted, a static host route forgets its MTU,
          and TCP's segments grow again (NetBSD's ``icmp_mtudisc_timeout``)."""
        inet = self.inet
        p = inet.ip_params
        rt = inet.routes.lookup(dst)
        if rt is None or rt.ifp is None:
            return 0
        cur = rt.path_mtu
        if not p.mtudisc:
            return cur
        if nextmtu < 68:
            base = quoted_len if 68 <= quoted_len <= cur else cur
            nextmtu = next((m for m in MTU_PLATEAUS if m < base), 68)
        elif quoted_len and nextmtu >= quoted_len:
            # The quoted datagram fit the MTU claimed: forged or confused (NetBSD's
            # tcp_ctlinput ignores an MTU not below the largest packet the connection
            # sent; RFC 5927 7, the blind attack that lowers a path's MTU).
            self.stats.icps_pmtuignored += 1
            return cur
        lock = nextmtu < p.min_pmtu
        if lock:
            nextmtu = min(cur, p.min_pmtu)
        if nextmtu >= cur and not (lock and not rt.locks & RTV_MTU):
            self.stats.icps_pmtuignored += 1
            return cur
        if rt.flags & RTF_HOST and rt.dst == dst:
            # NetBSD's icmp_mtudisc only lowers rmx_mtu of an existing host route; it
            # does not mark it RTF_MODIFIED (t_mtudisc.sh expects "UGHS ... 1280").
            rt.mtu = nextmtu
            if lock:
                rt.locks |= RTV_MTU
            inet.routes.invalidate()
            rt.expire = now + p.mtudisctimeout
            self._expire_later(rt)
            return rt.path_mtu
        host = Rtentry(dst, 32, rt.gateway, (rt.flags | RTF_HOST | RTF_DYNAMIC | RTF_MODIFIED | RTF_UP) & ~0x100,
                       rt.ifp, rt.ifa, mtu=nextmtu)
        host.locks = RTV_MTU if lock else 0
        host.expire = now + p.mtudisctimeout
        try:
            inet.routes.add(host)
        except OSError:
            return cur
        # The learned MTU lives net.inet.ip.mtudisctimeout seconds (NetBSD's
        # ip_mtudisc_timeout_q); before this fix the host route stayed for ever.
        self._expire_later(host)
        return host.path_mtu

    def _expire_later(self, rt: Rtentry) -> None:
        self.timers.set(rt.dst, rt.expire)

    def _expire(self, dst: int, now: float) -> None:
        """The end of the host route to ``dst``'s lifetime (NetBSD's rt_timer queues): a
        dynamic host route (learned MTU or redirect) is removed; a static host route
        forgets the MTU it learned. Unless the route went or its lifetime was extended
        meanwhile."""
        routes = self.inet.routes
        rt = routes.exact(dst, 32)
        if rt is None or not rt.expire:
            return
        if rt.expire > now + 1e-9:
            self._expire_later(rt)
            return
        rt.expire = 0.0
        if not rt.flags & RTF_DYNAMIC:
            rt.mtu = 0
            rt.locks &= ~RTV_MTU
            routes.invalidate()
            return
        try:
            routes.delete(rt.dst, 32)
        except OSError:
            pass

    def _redirect(self, dst: int, gw: int, from_router: int, now: float) -> None:
        inet = self.inet
        rt = inet.routes.lookup(dst)
        if rt is None or inet.ifa_on_link(gw) is None or gw in inet.local_addrs:
            return
        # RFC 1122 3.2.2.2: only from the current first-hop gateway for dst. A
        # destination reached without a gateway (a connected route) has no first-hop
        # router, so nobody may redirect it (NetBSD's rtredirect compares the sender with
        # rt_gateway, a link address then, and refuses). Before this fix any host on the
        # link could redirect traffic for its neighbours.
        if rt.gateway is None or rt.gateway != from_router:
            return
        host = Rtentry(dst, 32, gw, RTF_UP | RTF_GATEWAY | RTF_HOST | RTF_DYNAMIC, rt.ifp, rt.ifa)
        existing = inet.routes.exact(dst, 32)
        if existing is not None:
            if existing.flags & RTF_DYNAMIC:
                existing.gateway = gw
                existing.flags |= RTF_MODIFIED
                inet.routes.invalidate()
            return
        try:
            inet.routes.add(host)
        except OSError:
            return
        # Redirected routes time out after net.inet.icmp.redirtimeout seconds (NetBSD's
        # icmp_redirect_timeout_q; 0 means never); before this fix they never did.
        if self.params.redirtimeout > 0:
            host.expire = now + self.params.redirtimeout
            self._expire_later(host)

    # -- output ----------------------------------------------------------------------
    def reflect(self, ifp: Ifnet, msg: bytearray, orig_src: int, orig_dst: int, icmp_type: int,
                hdr: memoryview | None = None) -> None:
        """Send ``msg`` back to ``orig_src`` (``icmp_reflect``). With the request's
        header ``hdr`` (options checked and updated by ip_dooptions), its Record Route
        and Timestamp options go back in the reply and a used-up source route is
        reversed for it (RFC 1122 3.2.2.6, RFC 791; NetBSD's icmp_reflect)."""
        inet = self.inet
        opts = b""
        dst = orig_src
        if hdr is not None:
            opts, dst = reply_options(hdr, orig_src)
        src = orig_dst if orig_dst in inet.local_addrs else 0
        if src == 0:
            ifa = inet.ifa_for_ifp(ifp)
            src = ifa.addr if ifa is not None else 0
        self.stats.icps_reflect += 1
        if icmp_type < len(self.stats.icps_outhist):
            self.stats.icps_outhist[icmp_type] += 1
        try:
            inet.output.output(src, dst, IPPROTO_ICMP, msg, opts=opts)
        except OSError:
            pass

    def _rate_ok(self, now: float) -> bool:
        """At most ``errppslimit`` errors in each second of the clock (NetBSD's
        ``ppsratecheck`` on ``icmperrppslim``, RFC 1812 4.3.2.8); ``icps_toofreq`` counts
        the ones held back."""
        limit = self.params.errppslimit
        if limit <= 0:
            return True
        sec = int(now)
        if sec != self._rate_sec:
            self._rate_sec = sec
            self._rate_count = 0
        self._rate_count += 1
        if self._rate_count > limit:
            self.stats.icps_toofreq += 1
            return False
        return True

    def error(self, pkt: memoryview, ifp: Ifnet, icmp_type: int, code: int, nextmtu: int = 0,
              gateway: int = 0, pointer: int = 0, *, now: float) -> None:
        """``icmp_error``: report a problem with ``pkt`` (a received IP packet) at ``now``;
        ``pointer``: the octet in error, for Parameter Problem (RFC 792)."""
        st = self.stats
        st.icps_error += 1
        if len(pkt) < 20:
            return
        hlen = (pkt[0] & 0xF) << 2
        _, _, _, _, off, _, proto, _, src, dst = IP_HDR.unpack_from(pkt)
        inet = self.inet
        if off & IP_OFFMASK:
            return  # only about first fragments
        if proto == IPPROTO_ICMP and icmp_type != ICMP_REDIRECT and len(pkt) >= hlen + 1:
            if pkt[hlen] in ICMP_ERRORS or pkt[hlen] > ICMP_MASKREPLY:
                st.icps_oldicmp += 1
                return
        if (src == 0 or src == 0xFFFFFFFF or src in inet.bcast_addrs or (src >> 28) == 0xE
                or dst == 0xFFFFFFFF or dst in inet.bcast_addrs or (dst >> 28) == 0xE):
            return
        if not self._rate_ok(now):
            return
        quote = bytes(pkt[:hlen + self.params.returndatabytes])
        msg = bytearray(8 + len(quote))
        if icmp_type == ICMP_UNREACH and code == ICMP_UNREACH_NEEDFRAG:
            struct.pack_into("!BBHHH", msg, 0, icmp_type, code, 0, 0, nextmtu)
        elif icmp_type == ICMP_REDIRECT:
            struct.pack_into("!BBHI", msg, 0, icmp_type, code, 0, gateway)
        elif icmp_type == ICMP_PARAMPROB:
            struct.pack_into("!BBHB3x", msg, 0, icmp_type, code, 0, pointer)
        else:
            struct.pack_into("!BBHI", msg, 0, icmp_type, code, 0, 0)
        msg[8:] = quote
        c = in_cksum(msg)
        msg[2] = c >> 8
        msg[3] = c & 0xFF
        if icmp_type < len(st.icps_outhist):
            st.icps_outhist[icmp_type] += 1
        # Source: the address the offending packet was sent to if it is ours, else the
        # address of the interface it arrived on (what traceroute shows per hop).
        my = dst if dst in inet.local_addrs else 0
        if my == 0:
            ifa = inet.ifa_for_ifp(ifp)
            my = ifa.addr if ifa is not None else 0
        try:
            inet.output.output(my, src, IPPROTO_ICMP, msg)
        except OSError:
            pass


def reply_options(hdr: bytes | bytearray | memoryview, orig_src: int) -> tuple[bytes, int]:
    """The options of a reply to the datagram whose header is ``hdr`` and its first
    destination (NetBSD's icmp_reflect with ip_srcroute): Record Route and Timestamp as
    they arrived (updated with our entry), and a source route used up on the way here
    reversed (RFC 1122 3.2.1.8(c), 3.2.2.6): the reply goes to the last hop recorded,
    then back along the others to ``orig_src``."""
    hlen = (hdr[0] & 0xF) << 2
    out = bytearray()
    dst = orig_src
    for opt, off, olen in ip_options(hdr, hlen):
        if opt in (IPOPT_RR, IPOPT_TS):
            out += hdr[off:off + olen]
        elif opt in (IPOPT_LSRR, IPOPT_SSRR) and source_route_done(hdr, off, olen):
            hops = [bytes(hdr[i:i + 4]) for i in range(off + 3, off + olen - 3, 4)]
            if not hops:
                continue
            dst = int.from_bytes(hops[-1], "big")
            route = b"".join(reversed(hops[:-1])) + orig_src.to_bytes(4, "big")
            out += bytes((IPOPT_NOP, opt, 3 + len(route), IPOPT_MINOFF)) + route
    out += bytes(-len(out) % 4)
    if len(out) > 40:
        return b"", orig_src  # more than an IP header holds: reply without options
    return bytes(out), dst
