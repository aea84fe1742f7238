"""PF_ROUTE: routing sockets and the ``net.route`` sysctl (NetBSD's ``net/rtsock.c``).

``socket(PF_ROUTE, SOCK_RAW, 0)`` (PF_ROUTE = 34, NetBSD's number) makes a routing socket.
A program writes a request (``struct rt_msghdr`` + sockaddrs, ``rumpnet.route_msg``):
RTM_ADD, RTM_DELETE, RTM_CHANGE or RTM_GET for AF_INET or AF_INET6. ``write`` returns the
length, or fails with the errno NetBSD's ``route_output`` gives (EEXIST, ESRCH,
ENETUNREACH, EINVAL...); the message, with ``rtm_errno`` set and for RTM_GET the route
found (RTA_DST, RTA_GATEWAY, RTA_NETMASK, RTA_IFP, RTA_IFA), then goes to every routing
socket, the writer included unless it cleared SO_USELOOPBACK. Every routing socket also
reads the kernel's own announcements: RTM_ADD/RTM_DELETE when a route comes or goes
(an address's connected route, an interface detached), RTM_NEWADDR/RTM_DELADDR and
RTM_IFINFO when an interface goes up or down. A socket made with a protocol (an address
family) reads only that family's messages, as NetBSD's ``raw_input`` filters them.

``__sysctl({CTL_NET, PF_ROUTE, 0, af, op, arg})`` dumps, as packed messages: NET_RT_DUMP
every route of ``af`` (0: all); NET_RT_FLAGS the routes with a flag of ``arg``, or with
RTF_LLINFO the ARP (AF_INET) or neighbour (AF_INET6) cache as LLINFO host entries with an
AF_LINK gateway; NET_RT_IFLIST each interface (RTM_IFINFO) and its addresses of ``af``
(RTM_NEWADDR). route(8), arp(8) and ndp(8) use only these (``rumpnet.commands``).

The kern core knows nothing of this: the net faction's ``net`` component adds the domain
to ``k.domains`` and the sysctl node to the tree (NetBSD builds rtsock.c into
librumpnet_net); netinet6 adds its route table to the watched ones.
"""

from __future__ import annotations

import errno
import socket as pysocket
from typing import TYPE_CHECKING, Any

from rumpkern.errno import kerr
from rumpkern.sched import SyscallCtx
from rumpnet.netinet6 import in6, scope6
from rumpnet.route import (
    RTF_ANNOUNCE,
    RTF_DONE,
    RTF_HOST,
    RTF_LLDATA,
    RTF_LOCAL,
    RTF_STATIC,
    RTF_UP,
    RouteTable,
    Rtentry,
)
from rumpnet.route_msg import (
    AF_INET,
    AF_INET6,
    IFT_ETHER,
    IFT_LOOP,
    NET_RT_DUMP,
    NET_RT_FLAGS,
    NET_RT_IFLIST,
    PF_ROUTE,
    RTA_BRD,
    RTA_DST,
    RTA_GATEWAY,
    RTA_IFA,
    RTA_IFP,
    RTA_NETMASK,
    RTF_LLINFO_ROUTER,
    RTM_ADD,
    RTM_CHANGE,
    RTM_DELADDR,
    RTM_DELETE,
    RTM_GET,
    RTM_IFINFO,
    RTM_NEWADDR,
    IfaMsghdr,
    IfData,
    IfMsghdr,
    RouteMessage,
    RtMetrics,
    RtMsghdr,
    Sockaddr,
    SockaddrDl,
    SockaddrIn,
    SockaddrIn6,
    decode_msg,
    mask_sockaddr,
)
from rumpnet.rtsock_request import RouteRequest
from rumpnet.uipc_socket import SOL_SOCKET, DgramSocket, Socket

if TYPE_CHECKING:
    from rumpnet.ifnet import Ifnet
    from rumpnet.net_kernel import NetKernel

SO_USELOOPBACK = 0x0040  # NetBSD's sys/socket.h
# Largest message a routing socket takes (rtm_msglen is a u_short).
_MAX_MSG = 0xFFFF


def sdl_of(ifp: Ifnet, with_name: bool = True) -> SockaddrDl:
    """The interface's link-level sockaddr (``if_sadl``): index, name, Ethernet address."""
    lladdr = b"" if ifp.loopback else bytes(ifp.lladdr)
    return SockaddrDl(ifp.index, ifp.name if with_name else "", lladdr if with_name else b"",
                      IFT_LOOP if ifp.loopback else IFT_ETHER)


def _expire_left(expire: float | None, now: float) -> int:
    """rmx_expire as this kernel gives it: seconds left, -1 once past, 0 for never."""
    if not expire:
        return 0
    left = int(expire - now)
    return left if left > 0 else -1


class RouteSocket(DgramSocket):
    """A routing socket: a queue of whole messages (``rawcb``)."""

    so_type = pysocket.SOCK_RAW
    family = PF_ROUTE  # type: ignore[assignment]  # NetBSD's number, not the host's enum

    def __init__(self, domain: RouteDomain, proto: int) -> None:
        super().__init__(domain.kernel, proto)
        self.domain = domain
        self.so_options.add(SO_USELOOPBACK)  # route_attach: a writer hears its own messages
        self.drops = 0

    def is_connected(self) -> bool:
        return True  # a raw socket is connected from birth (soisconnected in raw_attach)

    def send(self, ctx: SyscallCtx, data: bytes | memoryview, flags: int, addr: Any) -> int:
        self.check_send(flags)
        if len(data) > _MAX_MSG:
            raise kerr(errno.EMSGSIZE)
        return self.domain.route_output(self, bytes(data))

    def setsockopt(self, level: int, opt: int, value: Any) -> None:
        if level == SOL_SOCKET and opt == SO_USELOOPBACK:
            on = bool(value if isinstance(value, int) else int.from_bytes(bytes(value)[:4], "little"))
            (self.so_options.add if on else self.so_options.discard)(SO_USELOOPBACK)
            return
        super().setsockopt(level, opt, value)

    def getsockopt(self, level: int, opt: int, buflen: int = 0) -> Any:
        if level == SOL_SOCKET and opt == SO_USELOOPBACK:
            v = 1 if SO_USELOOPBACK in self.so_options else 0
            return v.to_bytes(4, "little")[:buflen] if buflen else v
        return super().getsockopt(level, opt, buflen)

    def close(self) -> None:
        self.domain.detach(self)
        super().close()

    def deliver(self, raw: bytes) -> None:
        """``raw_input``: queue a message; a full buffer drops it (counted)."""
        if not self.sbappend(raw, None):
            self.drops += 1


class RouteDomain:
    """``routedomain``: makes routing sockets, answers their requests and announces."""

    def __init__(self, kernel: NetKernel) -> None:
        self.kernel = kernel
        self.sockets: list[RouteSocket] = []
        self._writing = 0  # inside route_output: the table's own announcements are the reply

    # -- sockets ----------------------------------------------------------------------------
    def socket(self, so_type: int, proto: int) -> Socket:
        if so_type != pysocket.SOCK_RAW:
            raise kerr(errno.EPROTONOSUPPORT if so_type in (pysocket.SOCK_STREAM, pysocket.SOCK_DGRAM)
                       else errno.ESOCKTNOSUPPORT)
        if proto not in (0, AF_INET, AF_INET6):
            raise kerr(errno.EPROTONOSUPPORT)
        so = RouteSocket(self, proto)
        self.sockets.append(so)
        return so

    def detach(self, so: RouteSocket) -> None:
        if so in self.sockets:
            self.sockets.remove(so)

    def announce(self, msg: RouteMessage, family: int = 0, origin: RouteSocket | None = None) -> None:
        """``raw_input`` to every routing socket that wants it: the writer only with
        SO_USELOOPBACK, a socket made for one family only that family's messages."""
        raw = msg.encode()
        for so in list(self.sockets):
            if so is origin and SO_USELOOPBACK not in so.so_options:
                continue
            if so.protocol and family and so.protocol != family:
                continue
            so.deliver(raw)

    # -- route_output ---------------------------------------------------------------------
    def route_output(self, so: RouteSocket, data: bytes) -> int:
        """A request: do it, send the answer to every socket, return the length or raise
        the errno (after the answer went out, with rtm_errno set, as NetBSD's)."""
        msg = decode_msg(data, request=True)
        if not isinstance(msg, RtMsghdr) or msg.rtm_type not in (RTM_ADD, RTM_DELETE, RTM_CHANGE, RTM_GET):
            raise kerr(errno.EOPNOTSUPP)
        msg.rtm_pid = self.kernel.curproc.pid
        family = 0
        error = 0
        self._writing += 1
        try:
            req = RouteRequest(self.kernel, self.kernel.config, msg)
            family = AF_INET6 if req.inet6 else AF_INET
            reply = self._do(req, msg)
        except OSError as e:
            error = e.errno or errno.EINVAL
            reply = msg
        finally:
            self._writing -= 1
        reply.rtm_errno = error
        reply.rtm_flags |= RTF_DONE if not error else 0
        self.announce(reply, family, so)
        if error:
            raise kerr(error)
        return len(data)

    def _do(self, req: RouteRequest, msg: RtMsghdr) -> RtMsghdr:
        if msg.rtm_type == RTM_GET:
            return self._reply(msg, req.get(), req.inet6)
        if msg.rtm_type == RTM_ADD:
            rt = req.add()
        elif msg.rtm_type == RTM_DELETE:
            rt = req.delete()
        else:
            rt = req.change()
        return msg if rt is None else self._reply(msg, rt, req.inet6)

    def _reply(self, msg: RtMsghdr, rt: Rtentry, inet6: bool) -> RtMsghdr:
        out = route_msg_of(self.kernel, rt, msg.rtm_type, inet6)
        out.rtm_pid, out.rtm_seq = msg.rtm_pid, msg.rtm_seq
        return out

    # -- the kernel's own announcements ---------------------------------------------------
    def route_changed(self, what: str, rt: Rtentry, inet6: bool) -> None:
        """A RouteTable listener: a route came or went outside route_output."""
        if self._writing or not self.sockets:
            return
        self.announce(route_msg_of(self.kernel, rt, RTM_ADD if what == "add" else RTM_DELETE, inet6),
                      AF_INET6 if inet6 else AF_INET)

    def if_updown(self, ifp: Ifnet, up: bool) -> None:
        """``rt_ifmsg``: an interface's flags changed."""
        if self.sockets:
            self.announce(ifinfo_msg(ifp))

    def if_detach(self, ifp: Ifnet) -> None:
        if self.sockets:
            self.announce(ifinfo_msg(ifp))

    def addr_changed(self, ifp: Ifnet, family: int, addr: int, plen: int, added: bool) -> None:
        """``rt_newaddrmsg``: an address was configured on or removed from ``ifp``."""
        if not self.sockets:
            return
        self.announce(ifa_msg(ifp, family, addr, plen, RTM_NEWADDR if added else RTM_DELADDR), family)

    # -- sysctl net.route -----------------------------------------------------------------
    def sysctl_rtable(self, args: list[int]) -> bytes:
        """``sysctl_rtable``: {af, op, arg} -> the packed messages."""
        if len(args) != 3:
            raise kerr(errno.EINVAL)
        af, op, arg = args
        if af not in (0, AF_INET, AF_INET6):
            raise kerr(errno.EAFNOSUPPORT)
        k = self.kernel
        if op == NET_RT_IFLIST:
            return b"".join(m.encode() for m in iflist(k, af, arg))
        if op not in (NET_RT_DUMP, NET_RT_FLAGS):
            raise kerr(errno.EOPNOTSUPP)
        if op == NET_RT_FLAGS and arg & RTF_LLDATA:
            if af == 0:
                raise kerr(errno.EINVAL)  # the caller must name a family (sysctl_rtable)
            return b"".join(m.encode() for m in lltable_dump(k, af))
        msgs = [route_msg_of(k, rt, RTM_GET, inet6)
                for inet6, routes in _tables(k, af) for rt in routes
                if op == NET_RT_DUMP or rt.flags & arg]
        return b"".join(m.encode() for m in msgs)


def _tables(k: NetKernel, af: int) -> list[tuple[bool, list[Rtentry]]]:
    out: list[tuple[bool, list[Rtentry]]] = []
    if af in (0, AF_INET) and k.inet is not None:
        out.append((False, list(k.net.routes)))
    if af in (0, AF_INET6) and k.inet6 is not None:
        out.append((True, list(k.inet6.routes)))
    return out


# -- messages of kernel objects --------------------------------------------------------------


def gateway_sockaddr4(rt: Rtentry) -> Sockaddr | None:
    if rt.gateway is not None:
        return SockaddrIn(rt.gateway)
    if rt.flags & RTF_LOCAL and rt.ifa is not None:
        owner = rt.ifa.ifp
        # The owning interface's empty link address: netstat prints link#N, or for a
        # loopback owner its name (NetBSD's t_ipaddress.sh).
        return SockaddrDl(owner.index, owner.name if owner.loopback else "")
    return SockaddrDl(rt.ifp.index) if rt.ifp is not None else None


def gateway_sockaddr6(k: NetKernel, rt: Rtentry) -> Sockaddr | None:
    if rt.gateway is not None:
        zone = rt.ifp.index if rt.ifp is not None and in6.is_scoped(rt.gateway) else 0
        return SockaddrIn6(rt.gateway, zone)
    ia6 = getattr(rt, "ia6", None)
    if rt.flags & RTF_LOCAL and ia6 is not None:
        owner = k.ifnet.by_index(ia6.ifindex)
        if owner is not None:
            return SockaddrDl(owner.index, owner.name if owner.loopback else "")
    return SockaddrDl(rt.ifp.index) if rt.ifp is not None else None


def route_msg_of(k: NetKernel, rt: Rtentry, rtm_type: int, inet6: bool) -> RtMsghdr:
    """``sysctl_dumpentry`` / the RTM_GET answer: a route as a message."""
    addrs: dict[int, Sockaddr] = {}
    if inet6:
        addrs[RTA_DST] = SockaddrIn6(rt.dst, int(getattr(rt, "zone", 0)))
        gw = gateway_sockaddr6(k, rt)
        ia6 = getattr(rt, "ia6", None)
        if ia6 is not None:
            addrs[RTA_IFA] = SockaddrIn6(ia6.addr, scope6.zone_of(ia6.addr, ia6.ifindex))
        bits = 128
    else:
        addrs[RTA_DST] = SockaddrIn(rt.dst)
        gw = gateway_sockaddr4(rt)
        if rt.ifa is not None:
            addrs[RTA_IFA] = SockaddrIn(rt.ifa.addr)
        bits = 32
    if gw is not None:
        addrs[RTA_GATEWAY] = gw
    if not rt.flags & RTF_HOST and rt.plen < bits:
        addrs[RTA_NETMASK] = mask_sockaddr(AF_INET6 if inet6 else AF_INET, rt.plen)
    if rt.ifp is not None:
        addrs[RTA_IFP] = sdl_of(rt.ifp)
    rmx = RtMetrics(rmx_mtu=rt.mtu, rmx_expire=_expire_left(rt.expire, k.sched.now()), rmx_locks=rt.locks)
    return RtMsghdr(rtm_type, rt.flags, rt.ifp.index if rt.ifp is not None else 0, rtm_use=rt.use,
                    rtm_rmx=rmx, addrs=addrs)


def ifinfo_msg(ifp: Ifnet) -> IfMsghdr:
    """RTM_IFINFO: the interface's flags, index, MTU, and its sockaddr_dl."""
    data = IfData(IFT_LOOP if ifp.loopback else IFT_ETHER, 0 if ifp.loopback else 6, 0,
                  int(ifp.link_state), ifp.mtu)
    return IfMsghdr(RTM_IFINFO, ifp.flags, ifp.index, data, {RTA_IFP: sdl_of(ifp)})


def ifa_msg(ifp: Ifnet, family: int, addr: int, plen: int, msg_type: int, brd: int | None = None) -> IfaMsghdr:
    """RTM_NEWADDR / RTM_DELADDR: the address, its netmask, its interface."""
    sa: Sockaddr = SockaddrIn(addr) if family == AF_INET else SockaddrIn6(addr, scope6.zone_of(addr, ifp.index))
    addrs: dict[int, Sockaddr] = {RTA_IFA: sa, RTA_NETMASK: mask_sockaddr(family, plen), RTA_IFP: sdl_of(ifp)}
    if brd is not None:
        addrs[RTA_BRD] = SockaddrIn(brd)
    return IfaMsghdr(msg_type, ifp.index, ifp.flags, addrs=addrs)


def iflist(k: NetKernel, af: int, index: int) -> list[RouteMessage]:
    """NET_RT_IFLIST: each interface (all, or the one ``index`` names) and its addresses."""
    out: list[RouteMessage] = []
    for ifp in k.ifnet.all():
        if index and ifp.index != index:
            continue
        out.append(ifinfo_msg(ifp))
        if af in (0, AF_INET):
            out.extend(ifa_msg(ifp, AF_INET, ifa.addr, ifa.plen, RTM_NEWADDR, ifa.broadaddr) for ifa in ifp.addrs)
        if af in (0, AF_INET6) and k.inet6 is not None:
            out.extend(ifa_msg(ifp, AF_INET6, ia.addr, ia.plen, RTM_NEWADDR) for ia in k.inet6.addresses(ifp))
    return out


def lltable_dump(k: NetKernel, af: int) -> list[RtMsghdr]:
    """NET_RT_FLAGS with RTF_LLINFO: the ARP or neighbour cache as LLINFO host entries
    (``lltable_dump_entry``): gateway a sockaddr_dl with the link address (none while
    incomplete), RTF_STATIC for a permanent entry, RTF_ANNOUNCE for a published one."""
    now = k.sched.now()
    out: list[RtMsghdr] = []
    if af == AF_INET and k.inet is not None:
        from rumpnet.netinet.if_arp import LLE_VALID

        for lle in k.inet.arp.entries():
            mac = bytes(lle.mac) if lle.mac is not None and lle.state == LLE_VALID else b""
            flags = RTF_UP | RTF_HOST | RTF_LLDATA | (RTF_STATIC if lle.static else 0) | \
                (RTF_ANNOUNCE if lle.published else 0)
            out.append(RtMsghdr(RTM_GET, flags, lle.ifp.index, rtm_rmx=RtMetrics(rmx_expire=_expire_left(lle.expire, now)),
                                addrs={RTA_DST: SockaddrIn(lle.ip), RTA_GATEWAY: SockaddrDl(lle.ifp.index, lladdr=mac),
                                       RTA_IFP: sdl_of(lle.ifp)}))
    elif af == AF_INET6 and k.inet6 is not None:
        for e in k.config.ndp_entries():
            flags = RTF_UP | RTF_HOST | RTF_LLDATA | (RTF_STATIC if e.static or e.local else 0) | \
                (RTF_LOCAL if e.local else 0) | (RTF_LLINFO_ROUTER if e.isrouter else 0)
            # The ND state (ND6_LLINFO_*) rides in rtm_use: NetBSD's ndp asks it with
            # SIOCGNBRINFO_IN6 instead.
            out.append(RtMsghdr(RTM_GET, flags, e.ifp.index, rtm_use=e.state,
                                rtm_rmx=RtMetrics(rmx_expire=_expire_left(e.expire, now)),
                                addrs={RTA_DST: SockaddrIn6(e.addr, scope6.zone_of(e.addr, e.ifp.index)),
                                       RTA_GATEWAY: SockaddrDl(e.ifp.index, lladdr=bytes(e.lladdr or b"")),
                                       RTA_IFP: sdl_of(e.ifp)}))
    return out


def rtsock_attach(k: NetKernel) -> RouteDomain:
    """PF_ROUTE in ``k.domains``, the net.route sysctl node, and the domain listening to
    the interfaces and the inet route table (netinet6 adds its table: ``rtsock_watch``)."""
    dom = RouteDomain(k)
    k.domains[PF_ROUTE] = dom
    k.net.listeners.append(dom)
    rtsock_watch(k, k.net.routes, inet6=False)
    k.sysctl_tree.add_node("net.route", num=PF_ROUTE)
    k.sysctl_tree.add_handler("net.route.rtable", dom.sysctl_rtable, num=0,
                              desc="Routing table dumps (NET_RT_DUMP, NET_RT_FLAGS, NET_RT_IFLIST)")
    return dom


def rtsock_watch(k: NetKernel, table: RouteTable, inet6: bool) -> None:
    """Routing sockets announce the routes ``table`` gains and loses (``rt_missmsg`` and
    ``rt_newaddrmsg``'s route part)."""
    dom = k.domains.get(PF_ROUTE)
    if isinstance(dom, RouteDomain):
        table.listeners.append(lambda what, rt: dom.route_changed(what, rt, inet6))
