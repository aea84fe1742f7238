"""IPv4 input and forwarding (NetBSD's ``ip_input.c``, ``ip_forward``).

Every malformed packet is counted in ``IpStats`` and dropped; nothing raises out of here.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from rumpnet.ifnet import M_CSUM_PARTIAL, M_CSUM_TSOv4, Mbuf
from rumpnet.netinet.in_cksum import in_cksum
from rumpnet.netinet.ip_var import (
    IP_DF,
    IP_FORWARDING,
    IP_HDR,
    IP_HDR_LEN,
    IP_MF,
    IP_OFFMASK,
    IPVERSION,
)
from rumpnet.route import RTF_BLACKHOLE, RTF_GATEWAY, RTF_HOST, RTF_REJECT

if TYPE_CHECKING:
    from rumpnet.ifnet import Ifnet
    from rumpnet.netinet.in_proto import Inet

# ICMP types and codes used on the input/forwarding path (ip_icmp.h)
ICMP_UNREACH = 3
ICMP_UNREACH_NET = 0
ICMP_UNREACH_HOST = 1
ICMP_UNREACH_PROTOCOL = 2
ICMP_UNREACH_PORT = 3
ICMP_UNREACH_NEEDFRAG = 4
ICMP_UNREACH_HOST_PROHIB = 10
ICMP_REDIRECT = 5
ICMP_REDIRECT_HOST = 1
ICMP_TIMXCEED = 11
ICMP_TIMXCEED_INTRANS = 0
ICMP_TIMXCEED_REASS = 1


class IpInput:
    def __init__(self, inet: Inet) -> None:
        self.inet = inet
        self.stats = inet.ipstat
        self.params = inet.ip_params

    def input(self, ifp: Ifnet, pkt: memoryview, mcast: int = 0) -> None:
        """``ip_input``: check the header, then deliver, reassemble or forward."""
        st = self.stats
        st.ips_total += 1
        n = len(pkt)
        if n < IP_HDR_LEN:
            st.ips_toosmall += 1
            return
        vhl = pkt[0]
        if vhl >> 4 != IPVERSION:
            st.ips_badvers += 1
            return
        hlen = (vhl & 0xF) << 2
        if hlen < IP_HDR_LEN:
            st.ips_badhlen += 1
            return
        if hlen > n:
            st.ips_badhlen += 1
            return
        hdr = pkt[:hlen]
        if in_cksum(hdr) != 0:
            st.ips_badsum += 1
            return
        _, tos, ip_len, ip_id, ip_off, ttl, proto, _, src, dst = IP_HDR.unpack_from(pkt)
        if ip_len < hlen:
            st.ips_badlen += 1
            return
        if n < ip_len:
            st.ips_tooshort += 1
            return
        if n > ip_len:
            pkt = pkt[:ip_len]  # link-layer padding (Ethernet minimum frame)
        inet = self.inet
        # Source addresses that can never be a sender (RFC 1122 3.2.1.3).
        if (src >> 28) == 0xE or src == 0xFFFFFFFF or (src >> 24) == 127 and not ifp.loopback:
            st.ips_badaddr += 1
            return
        if (dst >> 24) == 127 and not ifp.loopback:
            st.ips_badaddr += 1  # martian: loopback addresses arriving from a wire
            return

        ours = dst in inet.local_addrs
        if not ours:
            if dst == 0xFFFFFFFF or dst in inet.bcast_addrs or dst == 0:
                ours = True
            elif (dst >> 28) == 0xE:
                st.ips_notmember += 1
                return
        if not ours:
            if not self.params.forwarding or mcast:
                st.ips_cantforward += 1
                return
            self.forward(ifp, pkt, hlen, ttl, ip_off, src, dst)
            return

        if ip_off & (IP_MF | IP_OFFMASK):
            st.ips_fragments += 1
            whole = inet.reass.insert(pkt, hlen, src, dst, ip_id, proto, ip_off, ifp)
            if whole is None:
                return
            st.ips_reassembled += 1
            pkt = memoryview(whole)
            hlen = (pkt[0] & 0xF) << 2
            ifp.rx_csum_flags = 0  # a driver's checksum state is about one frame
        handler = inet.inetsw.get(proto)
        if inet.raw_listeners:
            inet.raw.input(ifp, pkt, hlen, proto, src, dst)
        if handler is None:
            if not inet.raw_wants(proto):
                st.ips_noproto += 1
                if dst != 0xFFFFFFFF and dst not in inet.bcast_addrs:
                    inet.icmp.error(pkt, ifp, ICMP_UNREACH, ICMP_UNREACH_PROTOCOL)
            else:
                st.ips_delivered += 1
            return
        st.ips_delivered += 1
        handler(ifp, pkt, hlen, src, dst)

    def forward(self, ifp: Ifnet, pkt: memoryview, hlen: int, ttl: int, ip_off: int, src: int, dst: int) -> None:
        """``ip_forward``: TTL, route, ICMP errors, redirects, fragmentation."""
        st = self.stats
        inet = self.inet
        if src == 0 or src in inet.bcast_addrs or (src >> 24) == 0:
            st.ips_cantforward += 1
            return
        if ttl <= 1:
            inet.icmp.error(pkt, ifp, ICMP_TIMXCEED, ICMP_TIMXCEED_INTRANS)
            st.ips_cantforward += 1
            return
        rt = inet.routes.lookup(dst)
        if rt is None:
            st.ips_noroute += 1
            st.ips_cantforward += 1
            inet.icmp.error(pkt, ifp, ICMP_UNREACH, ICMP_UNREACH_HOST)
            return
        if rt.flags & RTF_BLACKHOLE:
            rt.use += 1  # swallowed; NetBSD counts it in the route's Use too (rt_use)
            return
        if rt.flags & RTF_REJECT:
            st.ips_cantforward += 1
            inet.icmp.error(pkt, ifp, ICMP_UNREACH, ICMP_UNREACH_HOST if rt.flags & RTF_HOST else ICMP_UNREACH_NET)
            return
        out_ifp = rt.ifp
        if out_ifp is None or not out_ifp.running:
            st.ips_cantforward += 1
            inet.icmp.error(pkt, ifp, ICMP_UNREACH, ICMP_UNREACH_HOST)
            return
        if out_ifp.loopback:
            st.ips_cantforward += 1
            return
        # Decrement TTL, fix the checksum incrementally (RFC 1624 eqn. 3).
        buf = bytearray(pkt)
        buf[8] = ttl - 1
        csum = (buf[10] << 8) | buf[11]
        csum += 0x0100
        csum = (csum & 0xFFFF) + (csum >> 16)
        buf[10] = (csum >> 8) & 0xFF
        buf[11] = csum & 0xFF
        # ICMP redirect when the packet leaves by the interface it came in on, toward a
        # host on that same subnet (RFC 1812 5.2.7.2); only for unsourcerouted packets.
        if out_ifp is ifp and self.params.sendredirects and hlen == 20:
            ifa = inet.ifa_for_ifp(ifp)
            if ifa is not None and (src & ifa.mask) == ifa.net:
                nexthop = rt.gateway if rt.flags & RTF_GATEWAY and rt.gateway is not None else dst
                if (nexthop & ifa.mask) == ifa.net:
                    st.ips_redirectsent += 1
                    inet.icmp.error(pkt, ifp, ICMP_REDIRECT, ICMP_REDIRECT_HOST, gateway=nexthop)
        mtu = rt.path_mtu
        csum_flags = ifp.rx_csum_flags
        gso_fits = False
        if csum_flags:
            # Offload state from the driver travels on (a GRO superframe of rx_segsz-byte
            # segments, a partial TCP checksum): ip_output lets the out-interface finish
            # the packet or does it in software (ip_gso).
            segsz = ifp.rx_segsz
            flags = (csum_flags & M_CSUM_PARTIAL) | (M_CSUM_TSOv4 if segsz else 0)
            if flags:
                buf = Mbuf(buf, flags, segsz, hlen)
                if segsz and len(buf) > mtu:
                    # Linux's ip_exceeds_mtu for GSO packets: each segment must fit.
                    thl = (buf[hlen + 12] >> 4) << 2 if len(buf) >= hlen + 20 else 20
                    gso_fits = segsz + hlen + thl <= mtu
        if len(buf) > mtu and ip_off & IP_DF and not gso_fits:
            st.ips_cantfrag += 1
            st.ips_cantforward += 1
            inet.icmp.error(pkt, ifp, ICMP_UNREACH, ICMP_UNREACH_NEEDFRAG, nextmtu=mtu)
            return
        # ip_output's errors become ICMP errors to the sender, as NetBSD's ip_forward
        # maps them; before this fix an OSError (EHOSTDOWN from ARP after maxtries)
        # escaped packet input into the driver's callback.
        try:
            inet.output.send_packet(buf, hlen, rt, dst, IP_FORWARDING)
        except OSError as e:
            st.ips_cantforward += 1
            if e.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN):
                inet.icmp.error(pkt, ifp, ICMP_UNREACH, ICMP_UNREACH_HOST)
            elif e.errno == errno.EMSGSIZE:
                inet.icmp.error(pkt, ifp, ICMP_UNREACH, ICMP_UNREACH_NEEDFRAG, nextmtu=mtu)
            return
        st.ips_forward += 1
