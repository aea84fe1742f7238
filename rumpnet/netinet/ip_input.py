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
ICMP_UNREACH_SRCFAIL = 5
ICMP_PARAMPROB = 12

# IP options (RFC 791 section 3.1, NetBSD's ip.h)
IPOPT_EOL = 0
IPOPT_NOP = 1
IPOPT_RR = 7
IPOPT_TS = 68
IPOPT_LSRR = 131
IPOPT_SSRR = 137
IPOPT_MINOFF = 4  # the smallest pointer: the first address slot
IPOPT_TS_TSONLY = 0
IPOPT_TS_TSANDADDR = 1
IPOPT_TS_PRESPEC = 3


class OptionError(Exception):
    """A malformed option: ``pointer`` is the octet of the header in error, for the
    Parameter Problem message (RFC 792); or another ICMP error (``icmp``)."""

    def __init__(self, pointer: int, icmp: tuple[int, int] = (ICMP_PARAMPROB, 0)) -> None:
        super().__init__(pointer)
        self.pointer = pointer
        self.icmp = icmp


def ip_options(hdr: bytes | bytearray | memoryview, hlen: int) -> list[tuple[int, int, int]]:
    """The options of header ``hdr`` as (type, offset, length), up to end-of-list (RFC
    791 3.1); an OptionError (pointing at the length octet) for one whose length is under
    2 or runs past the header. Unknown options are listed and left alone (RFC 1122
    3.2.1.8 says they MUST be ignored)."""
    out = []
    i = IP_HDR_LEN
    while i < hlen:
        opt = hdr[i]
        if opt == IPOPT_EOL:
            break
        if opt == IPOPT_NOP:
            i += 1
            continue
        if i + 1 >= hlen or hdr[i + 1] < 2 or i + hdr[i + 1] > hlen:
            raise OptionError(i + 1)
        out.append((opt, i, hdr[i + 1]))
        i += hdr[i + 1]
    return out


def option_pointer(hdr: bytes | bytearray | memoryview, off: int, olen: int) -> int:
    """The pointer octet of a route or timestamp option (0-origin offset into the
    option of the next slot); OptionError if the option is too short for one or the
    pointer is below the first slot."""
    if olen < 3:
        raise OptionError(off + 1)
    ptr = hdr[off + 2]
    if ptr < IPOPT_MINOFF:
        raise OptionError(off + 2)
    return ptr - 1


def source_route_done(hdr: bytes | bytearray | memoryview, off: int, olen: int) -> bool:
    """A loose or strict source route whose addresses are all used up (RFC 791): the
    datagram is at its final destination."""
    return hdr[off + 2] - 1 + 4 > olen


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
        if _martian(ifp, src, dst):
            st.ips_badaddr += 1
            return
        if hlen > IP_HDR_LEN:
            done = self.dooptions(ifp, pkt, hlen, dst)
            if done is None:
                return
            pkt, dst = done

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
            whole = inet.reass.insert(pkt, hlen, src, dst, ip_id, proto, ip_off, ifp, inet.now())
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
                    inet.icmp.error(pkt, ifp, ICMP_UNREACH, ICMP_UNREACH_PROTOCOL, now=inet.now())
            else:
                st.ips_delivered += 1
            return
        st.ips_delivered += 1
        handler(ifp, pkt, hlen, src, dst)

    def dooptions(self, ifp: Ifnet, pkt: memoryview, hlen: int, dst: int) -> tuple[memoryview, int] | None:
        """``ip_dooptions``: check and act on the options of a datagram to us or to be
        forwarded. Returns the datagram (a copy where options were updated, with its
        header checksum) and its destination (a source route moves it), or None when
        it was dropped: a malformed option draws Parameter Problem (RFC 1122 3.2.2.5,
        ``ips_badoptions``); a source route not used up is not answered here but dropped
        (RFC 7126 4.3/4.4, RFC 1122 3.2.1.8; ``ips_srcrtdrop``) unless
        ``net.inet.ip.forwsrcrt`` and forwarding are on, when it goes to its next hop."""
        buf = bytearray(pkt)
        try:
            for opt, off, olen in ip_options(buf, hlen):
                handler = _OPTIONS.get(opt)
                if handler is not None and not handler(self, ifp, buf, off, olen, dst):
                    return None
                if opt in (IPOPT_LSRR, IPOPT_SSRR):
                    dst = int.from_bytes(buf[16:20], "big")
        except OptionError as e:
            self.stats.ips_badoptions += 1
            icmp_type, code = e.icmp
            self.inet.icmp.error(pkt, ifp, icmp_type, code, pointer=e.pointer, now=self.inet.now())
            return None
        buf[10] = buf[11] = 0
        c = in_cksum(memoryview(buf)[:hlen])
        buf[10], buf[11] = c >> 8, c & 0xFF
        return memoryview(buf), dst

    def _record_addr(self, ifp: Ifnet, dst: int) -> int:
        """The address a route or timestamp option records here: the destination if it
        is ours, else that of the interface toward it (NetBSD's ip_dooptions)."""
        inet = self.inet
        if dst in inet.local_addrs or dst == 0xFFFFFFFF or dst in inet.bcast_addrs:
            ifa = inet.local_addrs.get(dst) or inet.ifa_for_ifp(ifp)
        else:
            rt = inet.routes.lookup(dst)
            ifa = rt.ifa if rt is not None else None
            if ifa is None:
                raise OptionError(0, (ICMP_UNREACH, ICMP_UNREACH_HOST))
        return ifa.addr if ifa is not None else 0

    def _opt_rr(self, ifp: Ifnet, buf: bytearray, off: int, olen: int, dst: int) -> bool:
        """Record Route: our address in the next slot, if one is left (RFC 791)."""
        slot = option_pointer(buf, off, olen)
        if slot + 4 <= olen:
            buf[off + slot:off + slot + 4] = self._record_addr(ifp, dst).to_bytes(4, "big")
            buf[off + 2] += 4
        return True

    def _opt_ts(self, ifp: Ifnet, buf: bytearray, off: int, olen: int, dst: int) -> bool:
        """Internet Timestamp (RFC 791): our time (the kernel clock in milliseconds with
        the high bit set: not milliseconds since midnight UT), with our address for flag
        1, or where our address is prespecified (flag 3); the overflow count when full."""
        if olen < 4 or olen > 40:
            raise OptionError(off + 1)
        slot = option_pointer(buf, off, olen)
        if slot < 4:
            raise OptionError(off + 2)
        flag = buf[off + 3] & 0x0F
        if slot + 4 > olen:
            oflw = (buf[off + 3] >> 4) + 1
            if oflw > 15:
                raise OptionError(off + 2)
            buf[off + 3] = (oflw << 4) | flag
            return True
        if flag in (IPOPT_TS_TSANDADDR, IPOPT_TS_PRESPEC):
            if slot + 8 > olen:
                raise OptionError(off + 2)
            if flag == IPOPT_TS_PRESPEC:
                if int.from_bytes(buf[off + slot:off + slot + 4], "big") not in self.inet.local_addrs:
                    return True
            else:
                buf[off + slot:off + slot + 4] = self._record_addr(ifp, dst).to_bytes(4, "big")
            slot += 4
        elif flag != IPOPT_TS_TSONLY:
            raise OptionError(off + 3)
        ms = (int(self.inet.now() * 1000) % 86_400_000) | 0x80000000
        buf[off + slot:off + slot + 4] = ms.to_bytes(4, "big")
        buf[off + 2] = slot + 5
        return True

    def _opt_srr(self, ifp: Ifnet, buf: bytearray, off: int, olen: int, dst: int) -> bool:
        """Loose or strict source route (RFC 791; NetBSD's ip_dooptions). Used up at our
        address: delivered (RFC 1122 3.2.1.8(c)). Otherwise (more hops to go, here or at
        a router it passes) dropped unless forwarding source routes is on; then at our
        address the next hop becomes the destination and our address is recorded."""
        slot = option_pointer(buf, off, olen)
        inet = self.inet
        ours = dst in inet.local_addrs
        if ours and source_route_done(buf, off, olen):
            return True
        p = self.params
        if not (p.forwsrcrt and p.forwarding):
            self.stats.ips_srcrtdrop += 1
            return False
        if not ours:
            if buf[off] == IPOPT_SSRR:
                raise OptionError(0, (ICMP_UNREACH, ICMP_UNREACH_SRCFAIL))
            return True  # loose: not at the next listed hop yet, forward as usual
        nexthop = int.from_bytes(buf[off + slot:off + slot + 4], "big")
        if buf[off] == IPOPT_SSRR and inet.ifa_on_link(nexthop) is None:
            raise OptionError(0, (ICMP_UNREACH, ICMP_UNREACH_SRCFAIL))
        buf[16:20] = nexthop.to_bytes(4, "big")
        buf[off + slot:off + slot + 4] = self._record_addr(ifp, nexthop).to_bytes(4, "big")
        buf[off + 2] += 4
        return True

    def forward(self, ifp: Ifnet, pkt: memoryview, hlen: int, ttl: int, ip_off: int, src: int, dst: int) -> None:
        """``ip_forward``: TTL, route, ICMP errors, redirects, fragmentation."""
        st = self.stats
        inet = self.inet
        if src == 0 or src in inet.bcast_addrs or (src >> 24) == 0:
            st.ips_cantforward += 1
            return
        if ttl <= 1:
            inet.icmp.error(pkt, ifp, ICMP_TIMXCEED, ICMP_TIMXCEED_INTRANS, now=inet.now())
            st.ips_cantforward += 1
            return
        rt = inet.routes.lookup(dst)
        if rt is None:
            st.ips_noroute += 1
            st.ips_cantforward += 1
            inet.icmp.error(pkt, ifp, ICMP_UNREACH, ICMP_UNREACH_HOST, now=inet.now())
            return
        if rt.flags & RTF_BLACKHOLE:
            rt.use += 1  # swallowed; NetBSD counts it in the route's Use too (rt_use)
            return
        if rt.flags & RTF_REJECT:
            st.ips_cantforward += 1
            inet.icmp.error(pkt, ifp, ICMP_UNREACH, ICMP_UNREACH_HOST if rt.flags & RTF_HOST else ICMP_UNREACH_NET, now=inet.now())
            return
        out_ifp = rt.ifp
        if out_ifp is None or not out_ifp.running:
            st.ips_cantforward += 1
            inet.icmp.error(pkt, ifp, ICMP_UNREACH, ICMP_UNREACH_HOST, now=inet.now())
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
                    inet.icmp.error(pkt, ifp, ICMP_REDIRECT, ICMP_REDIRECT_HOST, gateway=nexthop, now=inet.now())
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
            inet.icmp.error(pkt, ifp, ICMP_UNREACH, ICMP_UNREACH_NEEDFRAG, nextmtu=mtu, now=inet.now())
            return
        # ip_output's errors become ICMP errors to the sender, as NetBSD's ip_forward
        # maps them; before this fix an OSError (EHOSTDOWN from ARP after maxtries)
        # escaped packet input into the driver's callback.
        try:
            inet.output.send_packet(buf, hlen, rt, dst, IP_FORWARDING)
        except OSError as e:
            st.ips_cantforward += 1
            if e.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN):
                inet.icmp.error(pkt, ifp, ICMP_UNREACH, ICMP_UNREACH_HOST, now=inet.now())
            elif e.errno == errno.EMSGSIZE:
                inet.icmp.error(pkt, ifp, ICMP_UNREACH, ICMP_UNREACH_NEEDFRAG, nextmtu=mtu, now=inet.now())
            return
        st.ips_forward += 1


def _martian(ifp: Ifnet, src: int, dst: int) -> bool:
    """A source that can never be a sender (RFC 1122 3.2.1.3), or loopback addresses
    arriving from a wire."""
    if (src >> 28) == 0xE or src == 0xFFFFFFFF:
        return True
    return not ifp.loopback and ((src >> 24) == 127 or (dst >> 24) == 127)


# Option type -> its action in ip_dooptions (False: the datagram was dropped).
_OPTIONS = {
    IPOPT_RR: IpInput._opt_rr,
    IPOPT_TS: IpInput._opt_ts,
    IPOPT_LSRR: IpInput._opt_srr,
    IPOPT_SSRR: IpInput._opt_srr,
}
