"""What a routing socket's RTM_ADD, RTM_DELETE, RTM_CHANGE and RTM_GET do to the tables
(NetBSD's ``route_output`` cases and the ``rtrequest`` / ``lla_rt_output`` they call).

The request arrives decoded (``rumpnet.route_msg.RtMsghdr``); this module turns it into
the kernel's configuration calls (``NetConfig``: ``route_add``, ``route6_add``,
``arp_add``, ``ndp_add``...), which keep the rules route(8) users rely on (a gateway must be
on a connected network: ENETUNREACH; a route that exists: EEXIST; none: ESRCH). An
RTM_* with RTF_LLDATA (RTF_LLINFO) and an AF_LINK gateway edits the ARP or neighbour cache,
as NetBSD's ``lla_rt_output``.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from rumpkern.errno import kerr
from rumpnet.netconfig import format_mac
from rumpnet.netinet.in_addr import ntoa
from rumpnet.netinet6 import in6
from rumpnet.route import (
    RTF_ANNOUNCE,
    RTF_BLACKHOLE,
    RTF_CONNECTED,
    RTF_GATEWAY,
    RTF_LLDATA,
    RTF_REJECT,
    RTF_STATIC,
    Rtentry,
)
from rumpnet.route_msg import (
    RTA_DST,
    RTA_GATEWAY,
    RTA_IFA,
    RTA_IFP,
    RTA_NETMASK,
    RTV_MTU,
    RtMsghdr,
    Sockaddr,
    SockaddrDl,
    SockaddrIn,
    SockaddrIn6,
    netmask_of,
)

if TYPE_CHECKING:
    from rumpnet.net_kernel import NetKernel
    from rumpnet.netconfig import NetConfig

# Flags route(8) may set on RTM_ADD that the table keeps as they come (NetBSD's rtm_flags
# copied into rt_flags): RTF_ANNOUNCE (-proxy) and RTF_CONNECTED (-connected).
_KEPT_FLAGS = RTF_ANNOUNCE | RTF_CONNECTED


def _ifname(k: NetKernel, sa: Sockaddr | None) -> str | None:
    """The interface an AF_LINK sockaddr names (by name, else by index); ENXIO for none."""
    if not isinstance(sa, SockaddrDl):
        return None
    if sa.name:
        return k.ifnet.lookup(sa.name).name
    ifp = k.ifnet.by_index(sa.index)
    if ifp is None:
        raise kerr(errno.ENXIO, "Device not configured")
    return ifp.name


def _text6(sa: SockaddrIn6) -> str:
    return in6.ntop(sa.addr) + (f"%{sa.scope_id}" if sa.scope_id else "")


class RouteRequest:
    """One request written to a routing socket, on kernel ``k``."""

    def __init__(self, k: NetKernel, cfg: NetConfig, rtm: RtMsghdr) -> None:
        self.k = k
        self.cfg = cfg
        self.rtm = rtm
        dst = rtm.addrs.get(RTA_DST)
        if dst is None or isinstance(dst, SockaddrDl):
            raise kerr(errno.EINVAL, "RTA_DST missing or not an address")
        self.dst: SockaddrIn | SockaddrIn6 = dst
        self.inet6 = isinstance(dst, SockaddrIn6)
        self.gateway = rtm.addrs.get(RTA_GATEWAY)
        plen = netmask_of(rtm.addrs.get(RTA_NETMASK), 128 if self.inet6 else 32)
        self.plen: int = (128 if self.inet6 else 32) if plen is None else plen  # none: a host route
        self.flags = rtm.rtm_flags
        self.mtu_given = bool(rtm.rtm_inits & RTV_MTU)
        self.mtu = rtm.rtm_rmx.rmx_mtu if self.mtu_given else 0

    @property
    def lldata(self) -> bool:
        return bool(self.flags & RTF_LLDATA)

    def dest_text(self) -> str:
        if self.inet6:
            assert isinstance(self.dst, SockaddrIn6)
            return _text6(self.dst) + f"/{self.plen}"
        return f"{ntoa(self.dst.addr)}/{self.plen}"

    # -- RTM_ADD -----------------------------------------------------------------------------
    def add(self) -> Rtentry | None:
        if self.lldata:
            self._lla_add()
            return None
        if self.gateway is None and not self.flags & (RTF_REJECT | RTF_BLACKHOLE) and RTA_IFP not in self.rtm.addrs:
            raise kerr(errno.EINVAL, "RTM_ADD without RTA_GATEWAY")
        if self.inet6:
            return self._add6()
        return self._add4()

    def _gateway_args(self) -> tuple[str | None, bool, str | None]:
        """(gateway text, straight out of an interface, interface name) as NetConfig takes them."""
        ifp = _ifname(self.k, self.rtm.addrs.get(RTA_IFP))
        gw = self.gateway
        if isinstance(gw, SockaddrDl):
            return None, True, _ifname(self.k, gw)
        if isinstance(gw, SockaddrIn):
            return ntoa(gw.addr), not self.flags & RTF_GATEWAY, ifp
        if isinstance(gw, SockaddrIn6):
            return _text6(gw), not self.flags & RTF_GATEWAY, ifp
        return None, False, ifp

    def _add4(self) -> Rtentry:
        gateway, iface, ifp = self._gateway_args()
        rt = self.cfg.route_add(self.dest_text(), gateway, host=self.plen == 32, net=self.plen != 32,
                                interface=iface, ifp=ifp, reject=bool(self.flags & RTF_REJECT),
                                blackhole=bool(self.flags & RTF_BLACKHOLE), mtu=self.mtu,
                                static=bool(self.flags & RTF_STATIC))
        if isinstance(self.gateway, SockaddrIn) and rt.gateway is None and not iface:
            # A reject/blackhole route through a local address keeps its gateway (UGHR).
            rt.gateway = self.gateway.addr
            rt.flags |= RTF_GATEWAY
        rt.flags |= self.flags & _KEPT_FLAGS
        ifa = self.rtm.addrs.get(RTA_IFA)
        if isinstance(ifa, SockaddrIn):
            self._set_ifa(rt, ifa.addr)
        self.k.net.routes.invalidate()
        return rt

    def _set_ifa(self, rt: Rtentry, addr: int) -> None:
        inet = self.k.inet
        assert inet is not None
        ifa = inet.local_addrs.get(addr) or inet.ifa_on_link(addr)
        if ifa is None:
            raise kerr(errno.ENETUNREACH, "Network is unreachable")
        rt.ifa = ifa
        if rt.ifp is None or not rt.ifp.loopback:
            rt.ifp = ifa.ifp

    def _add6(self) -> Rtentry:
        gateway, iface, ifp = self._gateway_args()
        return self.cfg.route6_add(self.dest_text(), gateway, host=self.plen == 128, net=self.plen != 128,
                                   prefixlen=self.plen, interface=iface, ifp=ifp,
                                   reject=bool(self.flags & RTF_REJECT), blackhole=bool(self.flags & RTF_BLACKHOLE),
                                   mtu=self.mtu, static=bool(self.flags & RTF_STATIC))

    def _lla_add(self) -> None:
        """``arp -s`` / ``ndp -s``: RTF_LLDATA with the link-layer address in a sockaddr_dl
        gateway; without RTF_STATIC the entry expires (``temp``)."""
        gw = self.gateway
        if not isinstance(gw, SockaddrDl) or len(gw.lladdr) != 6:
            raise kerr(errno.EINVAL, "RTF_LLDATA needs an Ethernet address in an AF_LINK gateway")
        temp = not self.flags & RTF_STATIC
        if self.inet6:
            assert isinstance(self.dst, SockaddrIn6)
            self.cfg.ndp_add(_text6(self.dst), format_mac(gw.lladdr), temp=temp)
        else:
            self.cfg.arp_add(ntoa(self.dst.addr), format_mac(gw.lladdr), temp=temp,
                             pub=bool(self.flags & RTF_ANNOUNCE))

    # -- RTM_DELETE ----------------------------------------------------------------------------
    def delete(self) -> Rtentry | None:
        if self.inet6:
            assert isinstance(self.dst, SockaddrIn6)
            if self.flags & RTF_LLDATA:
                self.cfg.ndp_delete(_text6(self.dst))
                return None
            return self.cfg.route6_delete(self.dest_text(), host=self.plen == 128, prefixlen=self.plen)
        if self.flags & RTF_LLDATA:
            self._lla_delete4(errno.ESRCH)
            return None
        try:
            return self.cfg.route_delete(self.dest_text(), host=self.plen == 32)
        except OSError as e:
            # An ARP entry is an LLINFO host route in NetBSD's table (netstat -r lists it),
            # so "route delete 10.0.1.1" removes it (t_forwarding.sh test_ping_success).
            if e.errno != errno.ESRCH or self.plen != 32:
                raise
            self._lla_delete4(errno.ESRCH, keep_published=True)
            return None

    def _lla_delete4(self, missing: int, keep_published: bool = False) -> None:
        inet = self.k.inet
        lle = inet.arp.lookup(self.dst.addr) if inet is not None else None   # sockin: no ARP
        if lle is None or (keep_published and lle.published):
            raise kerr(missing, "No such process")
        self.cfg.arp_delete(ntoa(lle.ip))

    # -- RTM_CHANGE ----------------------------------------------------------------------------
    def change(self) -> Rtentry:
        if self.inet6:
            self.delete()
            rt = self.add()
            assert rt is not None
            return rt
        rt = self.k.net.routes.exact(self.dst.addr, self.plen)
        if rt is None:
            raise kerr(errno.ESRCH, "No such process")
        gateway, iface, ifp = self._gateway_args()
        if isinstance(self.gateway, SockaddrIn) and not iface:
            self._change_gateway(rt, self.gateway.addr, ifp)
        elif ifp is not None:
            out = self.k.ifnet.lookup(ifp)
            rt.ifp = out
            if out.addrs:
                rt.ifa = out.addrs[0]
        ifa = self.rtm.addrs.get(RTA_IFA)
        if isinstance(ifa, SockaddrIn):
            self._change_ifa(rt, ifa.addr, ifp)
        # RTM_CHANGE carries REJECT and BLACKHOLE as the command states them (NetBSD's
        # rtm_fmask): "change ... -blackhole" on a reject route leaves a blackhole route.
        sticky = RTF_REJECT | RTF_BLACKHOLE
        rt.flags = (rt.flags & ~(sticky | RTF_STATIC)) | (self.flags & (sticky | RTF_STATIC | _KEPT_FLAGS))
        if self.mtu_given:
            rt.mtu = self.mtu
        self.k.net.routes.invalidate()
        return rt

    def _change_gateway(self, rt: Rtentry, gw: int, ifp: str | None) -> None:
        inet = self.k.inet
        assert inet is not None
        if ifp is not None:
            out = self.k.ifnet.lookup(ifp)
            ifa = out.addrs[0] if out.addrs else None
        elif RTA_IFA in self.rtm.addrs:
            ifa = None
        else:
            ifa = inet.ifa_on_link(gw)
            if ifa is None and gw not in inet.local_addrs:
                raise kerr(errno.ENETUNREACH, "Network is unreachable")
        rt.gateway = gw
        rt.flags |= RTF_GATEWAY
        if ifa is not None:
            rt.ifa, rt.ifp = ifa, ifa.ifp

    def _change_ifa(self, rt: Rtentry, addr: int, ifp: str | None) -> None:
        self._set_ifa(rt, addr)
        if ifp is not None:
            rt.ifp = self.k.ifnet.lookup(ifp)
            for ifa2 in rt.ifp.addrs:
                if (ifa2.addr & ifa2.mask) == ((rt.gateway or 0) & ifa2.mask):
                    rt.ifa = ifa2
                    break

    # -- RTM_GET -------------------------------------------------------------------------------
    def get(self) -> Rtentry:
        """The route a packet to RTA_DST takes (longest prefix match; ESRCH for none)."""
        if self.inet6:
            assert isinstance(self.dst, SockaddrIn6)
            return self.cfg.route6_get(_text6(self.dst) if self.dst.addr else "default")
        rt = self.k.net.routes.lookup(self.dst.addr)
        if rt is None:
            raise kerr(errno.ESRCH, "No such process")
        return rt
