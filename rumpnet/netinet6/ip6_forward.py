"""IPv6 forwarding (NetBSD's ``ip6_forward.c``; RFC 8200, RFC 4443, RFC 4861 8.2).

:meth:`Ip6Forward.forward` decides what becomes of a packet for someone else that
``ip6_input`` handed over (``net.inet6.ip6.forwarding`` is on): the packet goes on with
its hop limit one lower, or an ICMPv6 error goes back (hop limit exhausted: Time Exceeded;
no route: Destination Unreachable; source's zone left: beyond scope; larger than the next
link: Packet Too Big, since routers never fragment IPv6), and a router that sends a packet
back out of the interface it came in on tells an on-link source about the better first
hop with a Redirect. Everything dropped is counted.
"""

from __future__ import annotations

from dataclasses import dataclass

from rumpnet.netinet6 import in6, scope6
from rumpnet.netinet6.icmp6 import (
    ICMP6_DST_UNREACH,
    ICMP6_DST_UNREACH_BEYONDSCOPE,
    ICMP6_DST_UNREACH_NOROUTE,
    ICMP6_DST_UNREACH_REJECT,
    ICMP6_PACKET_TOO_BIG,
    ICMP6_TIME_EXCEED_TRANSIT,
    ICMP6_TIME_EXCEEDED,
)
from rumpnet.netinet6.in6_var import In6Ifaddrs
from rumpnet.netinet6.ip6_input import Ip6ForwardRequest
from rumpnet.netinet6.ip6_output import Route6Lookup, rewrite_hlim
from rumpnet.netinet6.ip6_var import Icmp6ErrorRequest, Ip6Params, Ip6Stats, Outbox

IPV6_HLIMDEC = 1


@dataclass(frozen=True, slots=True)
class Icmp6RedirectRequest:
    """The router asks for a Redirect (RFC 4861 8.2) telling ``packet``'s source that
    ``target`` (the gateway, or the destination itself when on-link) is the better first
    hop to ``dst``; ``nd6_rtr.redirect_output`` builds it."""

    packet: bytes
    ifindex: int
    target: int
    dst: int


class Ip6Forward:
    """``ip6_forward`` of one node: results go to ``out`` (packets and error requests)."""

    def __init__(self, params: Ip6Params, stats: Ip6Stats, ifaddrs: In6Ifaddrs, routes: Route6Lookup,
                 out: Outbox) -> None:
        self.params = params
        self.stats = stats
        self.ifaddrs = ifaddrs
        self.routes = routes
        self.out = out

    def _error(self, req: Ip6ForwardRequest, icmp6_type: int, code: int, param: int = 0) -> bool:
        self.out.event(Icmp6ErrorRequest(req.packet, req.ifindex, icmp6_type, code, param, req.l2mcast))
        return False

    def forward(self, req: Ip6ForwardRequest, now: float) -> bool:
        """True when the packet went on (queued in ``out``)."""
        st, h = self.stats, req.hdr
        if req.l2mcast or in6.is_multicast(h.dst) or h.src == in6.IN6ADDR_ANY or in6.is_scoped(h.dst):
            # No multicast routing; :: never leaves its link; nor does a link-local
            # destination (RFC 4291 2.5.6).
            st.ip6s_cantforward += 1
            return False
        if h.hlim <= IPV6_HLIMDEC:
            st.ip6s_cantforward += 1
            return self._error(req, ICMP6_TIME_EXCEEDED, ICMP6_TIME_EXCEED_TRANSIT)
        rt = self.routes.lookup6(h.dst, 0)
        if rt is None or rt.reject:
            st.ip6s_noroute += 1
            st.ip6s_cantforward += 1
            code = ICMP6_DST_UNREACH_REJECT if rt is not None else ICMP6_DST_UNREACH_NOROUTE
            return self._error(req, ICMP6_DST_UNREACH, code)
        if rt.blackhole:
            st.ip6s_cantforward += 1
            return False
        if scope6.crosses_zone(h.src, req.ifindex, rt.ifindex):
            # RFC 4443 3.1 code 2: the source (link-local) cannot be answered from there.
            st.ip6s_cantforward += 1
            st.ip6s_badscope += 1
            return self._error(req, ICMP6_DST_UNREACH, ICMP6_DST_UNREACH_BEYONDSCOPE)
        ext = self.ifaddrs.ifs.get(rt.ifindex)
        if ext is None or ext.disabled:
            st.ip6s_cantforward += 1
            return False
        mtu = min(ext.linkmtu, rt.mtu) if rt.mtu else ext.linkmtu
        if len(req.packet) > mtu:
            # RFC 8200 5: routers do not fragment; Packet Too Big with the MTU.
            st.ip6s_cantfrag += 1
            return self._error(req, ICMP6_PACKET_TOO_BIG, 0, mtu)
        if rt.ifindex == req.ifindex and self.params.redirect and not rt.dynamic:
            self._maybe_redirect(req, rt.gateway or h.dst)
        self.out.send(rewrite_hlim(req.packet, h.hlim - IPV6_HLIMDEC), rt.ifindex, None, rt.gateway or h.dst)
        st.ip6s_forward += 1
        return True

    def _maybe_redirect(self, req: Ip6ForwardRequest, target: int) -> None:
        """RFC 4861 8.2: only to a source that is a neighbour on this link, and only
        about a target on the same link."""
        src = req.hdr.src
        if not (in6.is_linklocal(src) or self.ifaddrs.on_link(src, req.ifindex) is not None):
            return
        self.out.event(Icmp6RedirectRequest(req.packet, req.ifindex, target, req.hdr.dst))
