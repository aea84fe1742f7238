"""``ioctl(2)`` on a socket for interfaces: NetBSD's ``ifioctl`` (``net/if.c``).

``sys_ioctl`` hands every request of group ``'i'`` here with the socket it came on. As in
NetBSD, the socket's domain answers: a domain that configures interfaces has an
``ioctl_requests`` table (netinet's ``in_control``, netinet6's ``in6_control``: each
registers its own requests); the generic interface requests below are answered for any
such domain. A domain without one (sockin's host sockets) answers EOPNOTSUPP, as
NetBSD's sockin does: it has no interfaces.

The argument is a ``bytearray`` holding the C struct (``rumpnet.if_ioctl``), at least
``IOCPARM_LEN(request)`` bytes (EFAULT otherwise, as a short user buffer is in NetBSD);
the answer is written into it. An interface that does not exist is ENXIO.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, cast

from rumpkern.errno import kerr
from rumpnet.if_ioctl import (
    IF_LADDRREQ_SIZE,
    IFCLONEREQ_SIZE,
    IFCONF_SIZE,
    IFDRV_SIZE,
    IFLINKSTR_QUERYLEN,
    IFLINKSTR_UNSET,
    IFM_ACTIVE,
    IFM_AUTO,
    IFM_AVALID,
    IFM_ETHER,
    IFM_NONE,
    IFNAMSIZ,
    IFREQ_SIZE,
    IFT_ETHER,
    IFT_LOOP,
    SIOCALIFADDR,
    SIOCGIFCAP,
    SIOCGIFCONF,
    SIOCGIFDATA,
    SIOCGIFFLAGS,
    SIOCGIFMEDIA,
    SIOCGIFMTU,
    SIOCGLINKSTR,
    SIOCIFCREATE,
    SIOCIFDESTROY,
    SIOCIFGCLONERS,
    SIOCSIFFLAGS,
    SIOCSIFMEDIA,
    SIOCSIFMTU,
    SIOCSLINKSTR,
    IfCapreq,
    IfData,
    IfDatareq,
    IfDrv,
    IfLaddrreq,
    IfMediareq,
    Ifreq,
    SockaddrDl,
    iocparm_len,
    pack_name,
    unpack_name,
)
from rumpnet.ifnet import IFF_PROMISC, IFF_UP, LINK_STATE_UP, Ifnet

if TYPE_CHECKING:
    from rumpnet.net_kernel import NetKernel

# A request's handler: the kernel and the caller's buffer, answered in place.
IoctlHandler = Callable[["NetKernel", bytearray], None]


class ControlDomain(Protocol):
    """A domain that configures interfaces (NetBSD's ``pr_ioctl``): its own requests,
    and the sockaddrs of its addresses on an interface for SIOCGIFCONF."""

    ioctl_requests: dict[int, IoctlHandler]

    def ifconf_addrs(self, ifp: Ifnet) -> list[bytes]: ...


def ifioctl(k: NetKernel, so: Any, request: int, arg: Any) -> int:
    """Answer interface request ``request`` on socket ``so`` into ``arg`` (0 on success)."""
    dom = k.domains.get(int(getattr(so, "family", 0)))
    own: dict[int, IoctlHandler] | None = getattr(dom, "ioctl_requests", None)
    if own is None:
        raise kerr(errno.EOPNOTSUPP, "Operation not supported (no interfaces in this domain)")
    handler = IF_REQUESTS.get(request) or own.get(request)
    if handler is None:
        raise kerr(errno.EOPNOTSUPP)
    if not isinstance(arg, bytearray) or len(arg) < iocparm_len(request):
        raise kerr(errno.EFAULT, "Bad address (the argument must be a bytearray of the request's struct)")
    handler(k, arg)
    return 0


def ifp_of(k: NetKernel, data: bytearray) -> Ifnet:
    """The interface the struct's leading ``ifr_name`` names (ENXIO when none)."""
    return k.ifnet.lookup(unpack_name(data))


def _put(data: bytearray, raw: bytes | bytearray) -> None:
    data[: len(raw)] = raw


# -- flags, MTU, media, capabilities, statistics ----------------------------------------------
def _gifflags(k: NetKernel, data: bytearray) -> None:
    ifp = ifp_of(k, data)
    _put(data, Ifreq.with_short(ifp.name, ifp.flags & 0xFFFF).pack())


def _sifflags(k: NetKernel, data: bytearray) -> None:
    """Only IFF_UP and IFF_PROMISC are the caller's to change (NetBSD's IFF_CANTCHANGE
    keeps the rest: RUNNING, LOOPBACK, ...)."""
    ifp = ifp_of(k, data)
    want = Ifreq.unpack(data).flags
    if bool(want & IFF_PROMISC) != bool(ifp.flags & IFF_PROMISC):
        ifp.set_promisc(bool(want & IFF_PROMISC))
    if bool(want & IFF_UP) != ifp.is_up:
        ifp.set_up(bool(want & IFF_UP))


def _gifmtu(k: NetKernel, data: bytearray) -> None:
    ifp = ifp_of(k, data)
    _put(data, Ifreq.with_int(ifp.name, ifp.mtu).pack())


def _sifmtu(k: NetKernel, data: bytearray) -> None:
    ifp_of(k, data).set_mtu(Ifreq.unpack(data).value)  # EINVAL out of range


def _gifmedia(k: NetKernel, data: bytearray) -> None:
    """Ethernet autoselect or none; IFM_ACTIVE when frames move and the link is up.
    Loopback has no media: EINVAL, as NetBSD's if_loop answers."""
    ifp = ifp_of(k, data)
    if ifp.loopback:
        raise kerr(errno.EINVAL)
    word = IFM_ETHER | (IFM_NONE if ifp.media == "none" else IFM_AUTO)
    active = ifp.media != "none" and ifp.running and ifp.link_state == LINK_STATE_UP
    _put(data, IfMediareq(ifp.name, word, 0, IFM_AVALID | (IFM_ACTIVE if active else 0), word, 1).pack())


def _sifmedia(k: NetKernel, data: bytearray) -> None:
    ifp = ifp_of(k, data)
    if ifp.loopback:
        raise kerr(errno.EINVAL)
    word = Ifreq.unpack(data).value
    sub = word & 0x1F
    if word & 0xE0 != IFM_ETHER or sub not in (IFM_AUTO, IFM_NONE):
        raise kerr(errno.EINVAL, "unknown media subtype")
    ifp.set_media("none" if sub == IFM_NONE else "auto")


def _gifcap(k: NetKernel, data: bytearray) -> None:
    ifp = ifp_of(k, data)
    # Every capability a driver reports is in use (ifconfig(8) prints enabled= too).
    _put(data, IfCapreq(ifp.name, ifp.capabilities, ifp.capabilities).pack())


def if_data(ifp: Ifnet) -> IfData:
    st = ifp.stats
    return IfData(type=IFT_LOOP if ifp.loopback else IFT_ETHER, addrlen=0 if ifp.loopback else 6,
                  hdrlen=0 if ifp.loopback else 14, link_state=ifp.link_state, mtu=ifp.mtu,
                  ipackets=st.ipackets, ierrors=st.ierrors, opackets=st.opackets, oerrors=st.oerrors,
                  collisions=st.collisions, ibytes=st.ibytes, obytes=st.obytes, imcasts=st.imcasts,
                  omcasts=st.omcasts, iqdrops=st.iqdrops, noproto=st.noproto)


def _gifdata(k: NetKernel, data: bytearray) -> None:
    ifp = ifp_of(k, data)
    _put(data, IfDatareq(ifp.name, if_data(ifp)).pack())


# -- cloning, link strings, link-level addresses ----------------------------------------------
def _ifcreate(k: NetKernel, data: bytearray) -> None:
    k.ifnet.create(unpack_name(data))   # EEXIST, EINVAL for an unknown cloner


def _ifdestroy(k: NetKernel, data: bytearray) -> None:
    k.ifnet.destroy(unpack_name(data))  # ENXIO, EINVAL for lo0


def _ifgcloners(k: NetKernel, data: bytearray) -> None:
    """``ifcr_total`` is set; up to ``ifcr_count`` names are written after the struct."""
    names = list(k.ifnet.cloners)
    count = int.from_bytes(data[4:8], "little", signed=True)
    if count < 0:
        raise kerr(errno.EINVAL)
    data[0:4] = len(names).to_bytes(4, "little")
    room = min(count, (len(data) - IFCLONEREQ_SIZE) // IFNAMSIZ)
    for i, name in enumerate(names[:room]):
        off = IFCLONEREQ_SIZE + i * IFNAMSIZ
        data[off: off + IFNAMSIZ] = pack_name(name)


def _glinkstr(k: NetKernel, data: bytearray) -> None:
    """The link string and its length (with the NUL); ENOENT when there is none, as
    shmif's answers. IFLINKSTR_QUERYLEN asks for the length only."""
    ifp = ifp_of(k, data)
    req = IfDrv.unpack(data)
    if ifp.linkstr is None:
        raise kerr(errno.ENOENT)
    raw = ifp.linkstr.encode() + b"\0"
    if req.cmd & IFLINKSTR_QUERYLEN:
        _put(data, IfDrv(ifp.name, req.cmd, len(raw)).pack())
        return
    if req.length < len(raw) or len(data) < IFDRV_SIZE + len(raw):
        raise kerr(errno.ENAMETOOLONG)
    _put(data, IfDrv(ifp.name, req.cmd, len(raw), raw).pack())


def _slinkstr(k: NetKernel, data: bytearray) -> None:
    ifp = ifp_of(k, data)
    req = IfDrv.unpack(data)
    if req.cmd & IFLINKSTR_UNSET:
        k.net.set_linkstr(ifp, None)
        return
    text = req.data.split(b"\0", 1)[0].decode(errors="replace")
    k.net.set_linkstr(ifp, text)        # ENOTTY for a cloner without links, EBUSY while up


def _alifaddr(k: NetKernel, data: bytearray) -> None:
    """A new Ethernet address (``ifconfig IF link MAC``): an AF_LINK sockaddr of 6 bytes."""
    if len(data) < IF_LADDRREQ_SIZE:
        raise kerr(errno.EFAULT)
    req = IfLaddrreq.unpack(data)
    ifp = ifp_of(k, data)
    if req.addr is None or len(req.addr.lladdr) != 6 or ifp.loopback:
        raise kerr(errno.EINVAL)
    ifp.set_lladdr(req.addr.lladdr)


# -- SIOCGIFCONF ---------------------------------------------------------------------------------
def link_sockaddr(ifp: Ifnet) -> SockaddrDl:
    return SockaddrDl(ifp.index, IFT_LOOP if ifp.loopback else IFT_ETHER, ifp.name,
                      b"" if ifp.loopback else bytes(ifp.lladdr))


def _gifconf(k: NetKernel, data: bytearray) -> None:
    """One ``struct ifreq`` per address of every interface, its AF_LINK address first
    (NetBSD's ``ifconf``); ``ifc_len`` becomes the bytes written (ENOMEM never: what does
    not fit is left out, and a caller that filled the buffer asks again with more)."""
    room = min(int.from_bytes(data[0:4], "little", signed=True), len(data) - IFCONF_SIZE)
    if room < 0:
        raise kerr(errno.EINVAL)
    domains = [cast("ControlDomain", d) for d in k.domains.values() if hasattr(d, "ifconf_addrs")]
    out = bytearray()
    for ifp in k.ifnet.all():
        entries = [link_sockaddr(ifp).pack()]
        for dom in domains:
            entries += dom.ifconf_addrs(ifp)
        for sa in entries:
            if len(out) + IFREQ_SIZE > room:
                break
            out += Ifreq(ifp.name, sa).pack()
    data[0:4] = len(out).to_bytes(4, "little")
    data[IFCONF_SIZE: IFCONF_SIZE + len(out)] = out


# The generic requests every interface-configuring domain answers (ifioctl's own switch).
IF_REQUESTS: dict[int, IoctlHandler] = {
    SIOCGIFFLAGS: _gifflags, SIOCSIFFLAGS: _sifflags,
    SIOCGIFMTU: _gifmtu, SIOCSIFMTU: _sifmtu,
    SIOCGIFMEDIA: _gifmedia, SIOCSIFMEDIA: _sifmedia,
    SIOCGIFCAP: _gifcap, SIOCGIFDATA: _gifdata,
    SIOCIFCREATE: _ifcreate, SIOCIFDESTROY: _ifdestroy, SIOCIFGCLONERS: _ifgcloners,
    SIOCGLINKSTR: _glinkstr, SIOCSLINKSTR: _slinkstr,
    SIOCALIFADDR: _alifaddr, SIOCGIFCONF: _gifconf,
}
