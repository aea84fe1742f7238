"""ICMP (NetBSD's ``ip_icmp.c``): echo, errors out, errors in (to the transports), PMTU.

Errors are rate limited (``net.inet.icmp.errppslimit`` per second) and never sent about
ICMP errors, broadcasts, non-first fragments or bad source addresses (RFC 1122 3.2.2).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from rumpnet.netinet.in_cksum import in_cksum
from rumpnet.netinet.ip_input import (
    ICMP_REDIRECT,
    ICMP_TIMXCEED,
    ICMP_UNREACH,
    ICMP_UNREACH_NEEDFRAG,
    ICMP_UNREACH_PORT,
)
from rumpnet.netinet.ip_var import IP_HDR, IP_OFFMASK, IPPROTO_ICMP
from rumpnet.route import RTF_DYNAMIC, RTF_GATEWAY, RTF_HOST, RTF_MODIFIED, RTF_UP, Rtentry

if TYPE_CHECKING:
    from rumpnet.ifnet import Ifnet
    from rumpnet.netinet.in_proto import Inet

ICMP_ECHOREPLY = 0
ICMP_SOURCEQUENCH = 4
ICMP_ECHO = 8
ICMP_ROUTERADVERT = 9
ICMP_PARAMPROB = 12
ICMP_TSTAMP = 13
ICMP_TSTAMPREPLY = 14
ICMP_MASKREQ = 17
ICMP_MASKREPLY = 18

ICMP_HDR = struct.Struct("!BBH")
ICMP_ERRORS = {ICMP_UNREACH, ICMP_SOURCEQUENCH, ICMP_REDIRECT, ICMP_TIMXCEED, ICMP_PARAMPROB}
ICMP_MINLEN = 8
ICMP_RETURN_DATABYTES = 8  # bytes of the offending datagram after its header (RFC 792)


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

    # -- input -----------------------------------------------------------------------
    def input(self, ifp: Ifnet, pkt: memoryview, hlen: int, src: int, dst: int) -> None:
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
            self.reflect(ifp, reply, src, dst, ICMP_ECHOREPLY)
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
            self._error_input(ifp, icmp_type, code, msg, src)

    def _error_input(self, ifp: Ifnet, icmp_type: int, code: int, msg: memoryview, src: int) -> None:
        """An error about a datagram we sent: tell its transport (``pr_ctlinput``)."""
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
        if icmp_type == ICMP_UNREACH and code == ICMP_UNREACH_NEEDFRAG:
            nextmtu = struct.unpack_from("!H", msg, 6)[0]
            if self.inet.ip_params.mtudisc:
                self.update_pmtu(idst, nextmtu)
            inet.ctlinput(proto, "needfrag", isrc, idst, bytes(inner[:ihl + 8]), nextmtu)
            return
        if icmp_type == ICMP_REDIRECT:
            if self.params.rediraccept and not inet.ip_params.forwarding:
                gw = struct.unpack_from("!I", msg, 4)[0]
                self._redirect(idst, gw, src)
            return
        kind = "unreach"
        if icmp_type == ICMP_UNREACH and code == ICMP_UNREACH_PORT:
            kind = "portunreach"
        elif icmp_type == ICMP_TIMXCEED:
            kind = "timxceed"
        elif icmp_type == ICMP_SOURCEQUENCH:
            return  # RFC 6633: ignored
        inet.ctlinput(proto, kind, isrc, idst, bytes(inner[:ihl + 8]), 0)

    def update_pmtu(self, dst: int, nextmtu: int) -> None:
        """Path MTU discovery (RFC 1191): a host route to ``dst`` carrying the MTU."""
        inet = self.inet
        rt = inet.routes.lookup(dst)
        if rt is None:
            return
        if nextmtu < 68:
            # RFC 1191 section 5: old routers send 0; guess the next plateau down.
            cur = rt.path_mtu
            plateaus = (65535, 32000, 17914, 8166, 4352, 2002, 1492, 1280, 1006, 508, 296, 68)
            nextmtu = next((p for p in plateaus if p < cur), 68)
        if rt.flags & RTF_HOST and rt.dst == dst:
            if rt.mtu == 0 or nextmtu < rt.mtu:
                rt.mtu = nextmtu
                # NetBSD's icmp_mtudisc only lowers rmx_mtu of an existing host route; it
                # does not mark it RTF_MODIFIED (t_mtudisc.sh expects "UGHS ... 1280").
                # Before this fix the route showed up as UGHMS.
                inet.routes.invalidate()
            return
        host = Rtentry(dst, 32, rt.gateway, (rt.flags | RTF_HOST | RTF_DYNAMIC | RTF_MODIFIED | RTF_UP) & ~0x100,
                       rt.ifp, rt.ifa, mtu=nextmtu)
        host.expire = inet.now() + inet.ip_params.mtudisctimeout
        try:
            inet.routes.add(host)
        except OSError:
            return
        # The learned MTU lives net.inet.ip.mtudisctimeout seconds (NetBSD's
        # ip_mtudisc_timeout_q); before this fix the host route stayed for ever.
        self._expire_later(host)

    def _expire_later(self, rt: Rtentry) -> None:
        self.inet.kernel.sched.call_at(rt.expire, self._expire, rt)

    def _expire(self, rt: Rtentry) -> None:
        """Remove a dynamic host route (PMTU or redirect) when its time is up, unless it
        was replaced or its lifetime extended meanwhile."""
        routes = self.inet.routes
        if routes.exact(rt.dst, 32) is not rt:
            return
        if rt.expire > self.inet.now() + 1e-9:
            self._expire_later(rt)
            return
        try:
            routes.delete(rt.dst, 32)
        except OSError:
            pass

    def _redirect(self, dst: int, gw: int, from_router: int) -> None:
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
            host.expire = inet.now() + self.params.redirtimeout
            self._expire_later(host)

    # -- output ----------------------------------------------------------------------
    def reflect(self, ifp: Ifnet, msg: bytearray, orig_src: int, orig_dst: int, icmp_type: int) -> None:
        """Send ``msg`` back to ``orig_src`` (``icmp_reflect``)."""
        inet = self.inet
        src = orig_dst if orig_dst in inet.local_addrs else 0
        if src == 0:
            ifa = inet.ifa_for_ifp(ifp)
            src = ifa.addr if ifa is not None else 0
        self.stats.icps_reflect += 1
        if icmp_type < len(self.stats.icps_outhist):
            self.stats.icps_outhist[icmp_type] += 1
        try:
            inet.output.output(src, orig_src, IPPROTO_ICMP, msg)
        except OSError:
            pass

    def _rate_ok(self) -> bool:
        limit = self.params.errppslimit
        if limit <= 0:
            return True
        sec = int(self.inet.now())
        if sec != self._rate_sec:
            self._rate_sec = sec
            self._rate_count = 0
        self._rate_count += 1
        if self._rate_count > limit:
            self.stats.icps_toofreq += 1
            return False
        return True

    def error(self, pkt: memoryview, ifp: Ifnet, icmp_type: int, code: int, nextmtu: int = 0,
              gateway: int = 0) -> None:
        """``icmp_error``: report a problem with ``pkt`` (a received IP packet)."""
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
        if not self._rate_ok():
            return
        quote = bytes(pkt[:hlen + self.params.returndatabytes])
        msg = bytearray(8 + len(quote))
        if icmp_type == ICMP_UNREACH and code == ICMP_UNREACH_NEEDFRAG:
            struct.pack_into("!BBHHH", msg, 0, icmp_type, code, 0, 0, nextmtu)
        elif icmp_type == ICMP_REDIRECT:
            struct.pack_into("!BBHI", msg, 0, icmp_type, code, 0, gateway)
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
