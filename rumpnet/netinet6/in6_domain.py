"""The inet6 domain of a kernel (NetBSD's ``inet6domain`` in ``in6_proto.c``, with
``ip6intr``'s input, ``nd6_output``'s link output, ``in6_ifattach`` on interface events and
the one glue timer): the sans-IO :class:`~rumpnet.netinet6.in6_proto.Inet6` node joined
to the kernel's interfaces, scheduler and AF_INET6 route table.

``k.inet6`` is an :class:`Inet6Domain`. Every entry into the node (a frame from a link,
a packet looped through lo0, a transport's output, a timer, a command) is followed by
:meth:`Inet6Domain.settle`: the node's frames go to their interfaces
(``ifp.ether_output(packet, lladdr, ETHERTYPE_IPV6)``, or back up through lo0), its
events go to the route table (``in6_rtable``), the transports (``Icmp6Ctl``) and raw
sockets, and the domain's one timer (``callout``, an
:class:`~rumpnet.netinet.in_proto.InetCallout` as IPv4's) is armed at the node's earliest
deadline (:meth:`Inet6Domain.get_timer`: ND, DAD, MLD, reassembly, ICMPv6 rate limits and
PMTU aging, learned routes); TCP over IPv6 arms the same timer with its own deadlines
(``deadline_out``). When it fires it runs ``handle_timer(now)`` of each core with a
deadline due. The cores never read the scheduler: ``now`` comes from the domain
(:attr:`Inet6Domain.now`).
Nothing here catches an exception from the node: one out of input or a timer fails the
test that caused it.

Interfaces: the node learns an interface when it first comes up or gets an address
(``in6_ifattach``), follows up/down (``in6_if_up``/``in6_if_down``: link-local address,
DAD, MLD), MTU and link-layer address changes, and forgets it at destroy. lo0 carries
``::1`` and ``fe80::1``.

Randomness: the node has its own generator, seeded from the kernel's seed and boot index
(so its draws do not move anything IPv4 draws from ``k.rng``).
"""

from __future__ import annotations

import errno
import functools
import random
import socket as pysocket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rumpkern.errno import kerr
from rumpnet.netinet.in_proto import InetCallout
from rumpnet.netinet6 import in6
from rumpnet.netinet6.icmp6 import Icmp6Ctl, Icmp6RawInput
from rumpnet.netinet6.in6_control import IN6_REQUESTS, in6_ifconf_addrs
from rumpnet.netinet6.in6_proto import In6AddrAdded, In6AddrRemoved, Inet6, Ip6Frame
from rumpnet.netinet6.in6_rtable import In6Routes, Route6Adapter
from rumpnet.netinet6.in6_sysctl import inet6_sysctl
from rumpnet.netinet6.in6_var import IN6_IFF_NODAD, ND6_INFINITE_LIFETIME, In6Ifaddr
from rumpnet.netinet6.ip6_gso import plain_packets6, wire_frames6
from rumpnet.netinet6.ip6_output import Ip6Pktopts
from rumpnet.netinet6.ip6_rtcache import Ip6RouteCaches
from rumpnet.netinet6.nd6_control import ICMPV6CTL_ND6_DRLIST, ICMPV6CTL_ND6_PRLIST, ND6_REQUESTS, nd6_list_sysctl
from rumpnet.netinet6.nd6_rtr import Nd6Redirect, PrefixOffLink, PrefixOnLink, RouterAdded, RouterRemoved
from rumpnet.netinet6.raw_ip6 import Raw6Socket, RawIp6
from rumpnet.netinet6.udp6_usrreq import IPPROTO_UDP, Udp6, Udp6Socket
from rumpnet.route import RouteTable6

if TYPE_CHECKING:
    from rumpnet.ifnet import Ifnet
    from rumpnet.net_kernel import NetKernel
    from rumpnet.netinet6.tcp6_usrreq import Tcp6
    from rumpnet.uipc_socket import Socket

ETHERTYPE_IPV6 = 0x86DD

# Icmp6Ctl -> the transport of the quoted packet: ctlinput(ev, now).
CtlInput = Callable[[Icmp6Ctl, float], None]


class Inet6Domain:
    """``k.inet6`` (see the module docstring)."""

    def __init__(self, kernel: NetKernel) -> None:
        self.kernel = kernel
        self.sched = kernel.sched
        # The domain's clock: the only read of the scheduler's; entry points pass ``now`` on.
        self.now: Callable[[], float] = kernel.sched.now
        self.routes = RouteTable6()
        self.rng = random.Random(f"rumpnet:{kernel.seed}:{kernel.boot_index}:inet6")
        self.node = Inet6(Route6Adapter(self.routes), self.rng)
        self.rt = In6Routes(self.routes, self.node, kernel.ifnet.by_index, lambda: kernel.net.lo0)
        self.udp6 = Udp6(self)
        self.raw6 = RawIp6(self)
        self.node.protosw[IPPROTO_UDP] = self.udp6.input
        self.ctlinputs: dict[int, CtlInput] = {IPPROTO_UDP: self.udp6.ctlinput}
        self.raw_input: Callable[[Icmp6RawInput, float], None] | None = self.raw6.icmp6_input
        # Socket types -> socket class (inet6sw[]: pr_type, pr_protocol; 0 the default).
        self.socket_types: dict[tuple[int, int], Callable[[NetKernel, int], Socket]] = {
            (pysocket.SOCK_DGRAM, 0): Udp6Socket, (pysocket.SOCK_DGRAM, IPPROTO_UDP): Udp6Socket,
        }
        # The domain's one timer (as IPv4's Inet.callout): the node's and route table's
        # deadlines (this domain, a TimerCore: get_timer/handle_timer) and TCP's.
        self.callout = InetCallout(self.sched)
        self.rtcache = Ip6RouteCaches(self)     # transports' per-flow output path
        self._settling = False
        self._timer_epoch = -1   # node.timer_epoch() when the callout was last re-armed
        self._events: dict[type, Callable[[Any, float], None]] = {
            In6AddrAdded: self.rt.addr_added, In6AddrRemoved: self.rt.addr_removed,
            RouterAdded: self.rt.router_changed, RouterRemoved: self.rt.router_changed,
            PrefixOnLink: self.rt.prefix_onlink, PrefixOffLink: self.rt.prefix_offlink,
            Nd6Redirect: self.rt.redirect, Icmp6Ctl: self._ctlinput, Icmp6RawInput: self._raw_input,
        }
        net = kernel.net
        net.ether_dispatch[ETHERTYPE_IPV6] = self.ether_input
        net.ether_segment[ETHERTYPE_IPV6] = wire_frames6
        # Offload state of the packet being input (the driver checked its TCP checksum,
        # or left it partial: M_CSUM_TCPv6), for TCP on the synchronous input path.
        self.rx_csum_flags = 0
        net.listeners.append(self)
        kernel.domains[pysocket.AF_INET6] = self
        from rumpnet.netinet6.tcp6_usrreq import tcp6_attach

        self.callout.add(self)
        self.tcp6: Tcp6 | None = tcp6_attach(kernel, self)
        inet6_sysctl(kernel.sysctl_tree, self.node, self.set_forwarding, lambda: self.udp6.stats,
                     lambda: self.raw6.stats)
        kernel.sysctl_tree.add_handler("net.inet6.icmp6.nd6_drlist", functools.partial(nd6_list_sysctl, self, ICMPV6CTL_ND6_DRLIST),
                                       num=ICMPV6CTL_ND6_DRLIST)
        kernel.sysctl_tree.add_handler("net.inet6.icmp6.nd6_prlist", functools.partial(nd6_list_sysctl, self, ICMPV6CTL_ND6_PRLIST),
                                       num=ICMPV6CTL_ND6_PRLIST)
        for ifp in kernel.ifnet.all():
            if ifp.is_up:
                self.if_updown(ifp, True)

    # -- sockets (socreate) --------------------------------------------------------------
    def socket(self, so_type: int, proto: int) -> Socket:
        """An AF_INET6 socket: EPROTONOSUPPORT / EPROTOTYPE / ESOCKTNOSUPPORT as NetBSD."""
        if so_type == pysocket.SOCK_RAW:
            if not 0 <= proto <= 255:
                raise kerr(errno.EPROTONOSUPPORT)
            return Raw6Socket(self.kernel, proto)
        cls = self.socket_types.get((so_type, proto))
        if cls is None:
            if any(t == so_type for t, _ in self.socket_types):
                raise kerr(errno.EPROTONOSUPPORT)
            raise kerr(errno.EPROTOTYPE if so_type in (pysocket.SOCK_STREAM, pysocket.SOCK_DGRAM)
                       else errno.ESOCKTNOSUPPORT)
        return cls(self.kernel, proto)

    # -- interfaces ----------------------------------------------------------------------
    def attach(self, ifp: Ifnet) -> None:
        """``in6_ifattach``: IPv6 state for ``ifp`` (down until :meth:`if_updown`)."""
        if ifp.index in self.node.ifaddrs.ifs:
            return
        self.node.if_attach(ifp.index, ifp.name, self._lladdr(ifp), ifp.mtu, self.now(), loopback=ifp.loopback, up=False)

    @staticmethod
    def _lladdr(ifp: Ifnet) -> bytes:
        """The link-layer address the node sees: none on lo0 and on interfaces that take
        bare IP packets (``l3_output``, tun), so it sends there without ND or MLD reports."""
        return b"" if ifp.loopback or ifp.l3_output is not None else ifp.lladdr

    def if_updown(self, ifp: Ifnet, up: bool) -> None:
        now = self.now()
        if up:
            self.attach(ifp)
            self.node.if_up(ifp.index, now)
        elif ifp.index in self.node.ifaddrs.ifs:
            self.node.if_down(ifp.index, now)
        self.settle(now)

    def if_changed(self, ifp: Ifnet) -> None:
        """The MTU or the link-layer address changed (SIOCSIFMTU, SIOCALIFADDR)."""
        ext = self.node.ifaddrs.ifs.get(ifp.index)
        if ext is not None:
            ext.mtu = ifp.mtu
            ext.lladdr = self._lladdr(ifp)
            self.routes.invalidate()

    def halt(self) -> None:
        """The kernel halts: no timer of this domain fires any more."""
        self.callout.callout.stop()

    def if_detach(self, ifp: Ifnet) -> None:
        now = self.now()
        self.node.if_detach(ifp.index, now)
        self.settle(now)
        self.rt.if_gone(ifp)

    def set_forwarding(self, value: int) -> None:
        """``net.inet6.ip6.forwarding``: a router joins all-routers (ff02::2) on its
        links (RFC 4291 2.7.1) and stops taking RAs (RFC 4861 6.3.4)."""
        p = self.node.ip6_params
        value = int(value)
        if value == p.forwarding:
            return
        p.forwarding = value
        now = self.now()
        for ext in self.node.ifaddrs.ifs.values():
            if ext.up and not ext.loopback:
                if value:
                    self.node.mld6.join(ext.ifindex, in6.IN6ADDR_LINKLOCAL_ALLROUTERS, now)
                else:
                    self.node.mld6.leave(ext.ifindex, in6.IN6ADDR_LINKLOCAL_ALLROUTERS, now)
        self.settle(now)

    # -- addresses (SIOCAIFADDR_IN6, SIOCDIFADDR_IN6) ----------------------------------------
    def add_address(self, ifp: Ifnet, addr: int, plen: int, flags: int = 0,
                    vltime: int = ND6_INFINITE_LIFETIME, pltime: int = ND6_INFINITE_LIFETIME) -> In6Ifaddr:
        """``ifconfig IF inet6 ADDR/PLEN``: an address again replaces itself (new prefix
        length, flags, lifetimes); the interface comes up as NetBSD's SIOCINITIFADDR
        brings it up. Raises what ``Inet6.add_address`` raises (EINVAL, ...)."""
        now = self.now()
        self.attach(ifp)
        if not ifp.running:
            # NetBSD's in6if_do_dad: no DAD for an address set while the interface is
            # not up and running (it comes up with the address usable at once).
            flags |= IN6_IFF_NODAD
        old = self.node.ifaddrs.lookup(addr, ifp.index)
        if old is not None and old.ifindex == ifp.index:
            self.node.remove_address(old, now)
        try:
            ia = self.node.add_address(ifp.index, addr, plen, flags, now, vltime, pltime)
        finally:
            self.settle(now)
        if not ifp.is_up:
            ifp.set_up(True)   # runs in6_if_up: DAD starts
        self.kernel.net.addr_changed(ifp, 24, addr, plen, True)  # rt_newaddrmsg (AF_INET6)
        return ia

    def remove_address(self, ifp: Ifnet, addr: int) -> None:
        """``ifconfig IF inet6 ADDR -alias``: EADDRNOTAVAIL when it is not there."""
        ext = self.node.ifaddrs.ifs.get(ifp.index)
        ia = next((a for a in ext.addrs if a.addr == addr), None) if ext is not None else None
        if ia is None:
            raise kerr(errno.EADDRNOTAVAIL, "Can't assign requested address")
        now = self.now()
        self.node.remove_address(ia, now)
        self.settle(now)
        self.kernel.net.addr_changed(ifp, 24, addr, ia.plen, False)

    # ioctl(2) on PF_INET6 sockets (rumpnet.if_control asks the socket's domain).
    ioctl_requests = {**IN6_REQUESTS, **ND6_REQUESTS}

    def ifconf_addrs(self, ifp: Ifnet) -> list[bytes]:
        return in6_ifconf_addrs(self.kernel, ifp)

    def addresses(self, ifp: Ifnet) -> list[In6Ifaddr]:
        ext = self.node.ifaddrs.ifs.get(ifp.index)
        return list(ext.addrs) if ext is not None else []

    def ifname(self, index: int) -> str | None:
        ifp = self.kernel.ifnet.by_index(index)
        return ifp.name if ifp is not None else None

    def lo0_zone(self) -> int:
        lo0 = self.kernel.net.lo0
        return lo0.index if lo0 is not None else 0

    def default_zone(self, addr: int, zone: int) -> int:
        """``::1`` lives on lo0 only, so it needs no zone from the user (FreeBSD's
        ``sa6_checkzone`` does the same); any other zone is the caller's."""
        return self.lo0_zone() if zone == 0 and addr == in6.IN6ADDR_LOOPBACK else zone

    # -- input -------------------------------------------------------------------------
    def ether_input(self, ifp: Ifnet, pkt: memoryview, mcast: int) -> None:
        """Ethertype 0x86DD from a link (``ether_input`` -> ``ip6_input``); what comes
        back through lo0 arrives on the interface of its zone (:meth:`loop_ifindex`)."""
        now = self.now()
        if ifp.rx_csum_flags:
            self._offload_input(ifp, pkt, mcast, now)
        else:
            self.node.input(self.loop_ifindex(pkt) if ifp.loopback else ifp.index, pkt, now, bool(mcast))
        self.settle(now)

    def _offload_input(self, ifp: Ifnet, pkt: memoryview, mcast: int, now: float) -> None:
        """A packet whose TCP checksum the driver checked or left partial, maybe a GRO
        superframe (``rx_segsz``). One for us goes up whole (TCP takes one input call
        per superframe and skips the checksum); one to forward leaves as the plain
        packets it stands for, cut and summed here (``ip6_gso``), so that forwarding
        sees wire-sized packets and sends no Packet Too Big for a superframe."""
        if not self.node.ip6_params.forwarding or self._for_us(pkt, ifp.index):
            # A host forwards nothing: whatever is not ours, ip6_input drops, so no
            # per-packet look at the destination before it.
            self.rx_csum_flags = ifp.rx_csum_flags
            try:
                self.node.input(ifp.index, pkt, now, bool(mcast))
            finally:
                self.rx_csum_flags = 0
            return
        packets = plain_packets6(pkt, ifp.rx_csum_flags, ifp.rx_segsz)
        if packets is None:
            ifp.stats.ierrors += 1      # not the IPv6/TCP packet its offload flags say
            return
        for p in packets:
            self.node.input(ifp.index, p, now, bool(mcast))

    def _for_us(self, pkt: memoryview, ifindex: int) -> bool:
        dst = in6.unpack(pkt, 24) if len(pkt) >= 40 else 0
        return not in6.is_multicast(dst) and self.node.ifaddrs.lookup(dst, ifindex) is not None

    def loop_ifindex(self, pkt: bytes | bytearray | memoryview) -> int:
        """The interface a packet looped through lo0 arrives on: the one that owns a
        scoped destination (its zone, as NetBSD keeps the zone inside the address), lo0
        for everything else."""
        lo0 = self.kernel.net.lo0
        lo_index = lo0.index if lo0 is not None else 0
        dst = in6.unpack(pkt, 24)
        if in6.is_scoped(dst) and not in6.is_multicast(dst):
            for ext in self.node.ifaddrs.ifs.values():
                if any(ia.addr == dst for ia in ext.addrs):
                    return ext.ifindex
        return lo_index

    # -- output --------------------------------------------------------------------------
    def transmit(self, f: Ip6Frame) -> None:
        """One frame of the node to its interface (``nd6_output`` -> ``ether_output``)."""
        ifp = self.kernel.ifnet.by_index(f.ifindex)
        if ifp is None:
            self.node.ip6stat.ip6s_odropped += 1
            return
        if ifp.loopback:
            self.loop_output(ifp, f.packet)
            return
        if ifp.l3_output is not None:   # tun: the bare packet
            ifp.l3_output(f.packet)
            return
        ifp.ether_output(f.packet, f.lladdr, ETHERTYPE_IPV6)

    def loop_output(self, lo0: Ifnet, pkt: bytes) -> None:
        """``looutput``: the packet comes back up as lo0's input on a later turn of the
        scheduler, so the sender's call stack unwinds first (as IPv4's
        ``Inet.loop_output``; lo0 counts it both ways)."""
        if not lo0.is_up:
            self.node.ip6stat.ip6s_odropped += 1
            return
        if lo0.driver is not None:
            # A loopback driver (looutput as a link): through bpf, counters and qdiscs.
            lo0.ether_output(pkt, bytes(6), ETHERTYPE_IPV6)
            return
        n, st = len(pkt), lo0.stats
        st.opackets += 1
        st.obytes += n
        st.ipackets += 1
        st.ibytes += n
        self.sched.call_soon(self.ether_input, lo0, memoryview(bytes(pkt)), 0)

    def output(self, src: int, dst: int, nxt: int, payload: bytes | bytearray | memoryview,
               opts: Ip6Pktopts | None = None, zone: int = 0, loop: bool = False) -> None:
        """``ip6_output`` for a transport; raises its errno (EHOSTUNREACH, ...). With
        ``loop`` (IPV6_MULTICAST_LOOP), a multicast packet to a group this node listens
        to on the interface also comes back up here (``ip6_mloopback``)."""
        now = self.now()
        try:
            self.node.output(src, dst, nxt, payload, now, opts, self.default_zone(dst, zone))
            if loop and in6.is_multicast(dst):
                self._mloopback(dst)
        finally:
            self.settle(now)

    def _mloopback(self, group: int) -> None:
        for f in self.node.frames_to_send():
            self.transmit(f)
            ext = self.node.ifaddrs.ifs.get(f.ifindex)
            if ext is not None and ext.joined(group) and in6.unpack(f.packet, 24) == group:
                self.sched.call_soon(self._mloop_input, f.ifindex, f.packet)

    def _mloop_input(self, ifindex: int, pkt: bytes) -> None:
        now = self.now()
        self.node.input(ifindex, pkt, now, True)
        self.settle(now)

    # -- after every entry ---------------------------------------------------------------
    def settle(self, now: float | None = None) -> None:
        """Send the node's frames, act on its events, re-arm the timer. The cores are
        asked for their earliest deadline (and path MTUs mirrored into the routes) only
        when something may have moved it (an event acted on, a deadline armed or a path
        MTU learned: ``timer_epoch``; the callout fired), not after every packet nor
        every frame sent."""
        if self._settling:
            return   # an event handler entered the node again: the outer loop drains it
        self._settling = True
        node = self.node
        if now is None:
            now = self.now()
        acted = False
        try:
            while node.has_output():
                for f in node.frames_to_send():
                    self.transmit(f)   # a frame sent moves no deadline (an ND timer armed moves the epoch)
                ev = node.next_event()
                while ev is not None:
                    acted = True
                    handler = self._events.get(type(ev))
                    if handler is not None:
                        handler(ev, now)
                    ev = node.next_event()
        finally:
            self._settling = False
        if acted or node.timer_epoch() != self._timer_epoch:
            # Path MTUs are learned (icp6s_pmtuchg, in the epoch) or age out (at a node
            # deadline, when the callout fires): the routes follow them then. Only then
            # can the domain's deadline have moved, so only then are the cores asked.
            self.rt.pmtu_sync(now)
            self._timer_epoch = node.timer_epoch()
            self.callout.callout.schedule(self.get_timer())   # as InetCallout.deadline

    # -- the domain's deadlines (a TimerCore of its callout, beside TCP's) ---------------
    def get_timer(self) -> float | None:
        """The earliest deadline of the node (ND, DAD, MLD, reassembly, ICMPv6 rate
        limits, PMTU aging) and of the route table's learned routes."""
        when = self.node.get_timer()
        exp = self.rt.next_expiry()
        if exp is not None and (when is None or exp < when):
            when = exp
        return when

    def handle_timer(self, now: float) -> None:
        self._timer_epoch = -1   # what fired is gone: the next deadline is asked for
        self.node.handle_timer(now)
        self.rt.expire(now)
        self.settle(now)

    # -- events for the transports ---------------------------------------------------------
    def _ctlinput(self, ev: Icmp6Ctl, now: float) -> None:
        """An ICMPv6 error about our traffic to the transport that sent the quoted packet
        (``pr_ctlinput``). A Packet Too Big no transport vouches for lowers the path MTU
        only within ``mtudisc_lowat`` entries (unvalidated, RFC 8201 5.2)."""
        handler = self.ctlinputs.get(ev.nxt)
        if handler is not None:
            handler(ev, now)
        elif ev.kind == "needfrag":
            self.pmtu_update(ev, now, validated=False)

    def pmtu_update(self, ev: Icmp6Ctl, now: float, validated: bool) -> bool:
        ext = self.node.ifaddrs.ifs.get(self._out_ifindex(ev.inner_dst))
        return self.node.icmp6.pmtu.update(ev.inner_dst, ev.mtu, now, validated, ext.linkmtu if ext else 0)

    def _out_ifindex(self, dst: int) -> int:
        rt = self.routes.lookup(dst)
        return rt.ifp.index if rt is not None and rt.ifp is not None else 0

    def _raw_input(self, ev: Icmp6RawInput, now: float) -> None:
        if self.raw_input is not None:
            self.raw_input(ev, now)
