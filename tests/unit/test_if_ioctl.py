"""Interface ioctls on sockets (NetBSD's ifioctl/in_control/in6_control), sysctl stats and
PCB lists, and ifconfig/netstat reaching the kernel through them only."""

from __future__ import annotations

import ast
import errno
import select
import socket
import struct
import tempfile
from pathlib import Path

import pytest

from rumpkern import rump_init
from rumpkern.sysctl import stats_values
from rumpnet.commands.ifaddrs import IfSock, getifaddrs
from rumpnet.commands.ifconfig import ifconfig
from rumpnet.commands.netstat import netstat, sysctl_stats
from rumpnet.if_ioctl import (
    IFDATAREQ_SIZE,
    IFLINKSTR_QUERYLEN,
    IFM_ACTIVE,
    IFM_AVALID,
    IFM_ETHER,
    IFM_NONE,
    IFREQ_SIZE,
    IFT_ETHER,
    SIOCALIFADDR,
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
    IfCloneReq,
    IfConf,
    IfData,
    IfDatareq,
    IfDrv,
    IfLaddrreq,
    IfMediareq,
    Ifreq,
    SockaddrDl,
    SockaddrIn,
    SockaddrIn6,
    iocparm_len,
    unpack_sockaddr,
)
from rumpnet.net_kernel import netinet, netinet6
from rumpnet.netinet.in_control import SIOCAIFADDR, SIOCDIFADDR, SIOCGIFADDR, SIOCGIFALIAS, InAliasreq
from rumpnet.netinet.in_pcblist import KinfoPcb, unpack_pcblist
from rumpnet.netinet.ip_var import IcmpStats, IpStats, UdpStats
from rumpnet.netinet.tcp_var import TcpStats
from rumpnet.netinet6 import in6
from rumpnet.netinet6.in6_control import (
    SIOCAIFADDR_IN6,
    SIOCDIFADDR_IN6,
    SIOCGIFAFLAG_IN6,
    SIOCGIFALIFETIME_IN6,
    SIOCGIFNETMASK_IN6,
    In6Addrlifetime,
    In6Aliasreq,
    In6Ifreq,
)
from rumpnet.netinet6.in6_var import IN6_IFF_TENTATIVE, ND6_INFINITE_LIFETIME
from rumpnet.netinet6.ip6_var import Ip6Stats

WIRE_ADDR = 0x0A000001  # 10.0.0.1


@pytest.fixture
def k():
    k = rump_init(clock="virtual")
    yield k
    k.halt()


@pytest.fixture
def s(k):
    with IfSock(k, socket.AF_INET) as s:
        yield s


@pytest.fixture
def s6(k):
    with IfSock(k, socket.AF_INET6) as s:
        yield s


def _errno(fn, *args):
    with pytest.raises(OSError) as ei:
        fn(*args)
    return ei.value.errno


# -- the codec ---------------------------------------------------------------------------------
def test_request_numbers_are_netbsd_amd64s():
    # Values from NetBSD's headers as compiled for amd64 (golang.org/x/sys zerrors_netbsd_amd64.go
    # and programs that hard-code them).
    assert SIOCGIFCONF == 0xC0106926
    assert SIOCGIFDATA == 0xC0986985
    assert SIOCGIFMEDIA == 0xC0306936
    assert SIOCGLINKSTR == 0xC0286987
    assert SIOCSLINKSTR == 0x80286988
    assert SIOCIFGCLONERS == 0xC0106978
    assert SIOCGIFAFLAG_IN6 == 0xC1206949
    assert SIOCAIFADDR_IN6 == 0x8080696B
    assert SIOCSIFFLAGS == 0x80906910 and SIOCGIFFLAGS == 0xC0906911
    assert SIOCAIFADDR == 0x8040691A and SIOCDIFADDR == 0x80906919
    assert iocparm_len(SIOCGIFFLAGS) == IFREQ_SIZE == 144 and iocparm_len(SIOCGIFDATA) == IFDATAREQ_SIZE


@pytest.mark.parametrize("obj", [
    Ifreq("wire0", SockaddrIn(WIRE_ADDR, 7).pack()),
    IfDatareq("shmif3", IfData(IFT_ETHER, 6, 14, 2, 1500, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13)),
    IfMediareq("virt0", IFM_ETHER, 0, IFM_AVALID | IFM_ACTIVE, IFM_ETHER, 1),
    IfDrv("shmif0", 0, 9, b"bus.file\0"),
    IfCapreq("virt0", 0x3F00, 0x0F00),
    IfLaddrreq("wire0", 0x8000, 0, SockaddrDl(0, IFT_ETHER, "", b"\xb2\xa0\x00\x00\x00\x01")),
    InAliasreq("wire0", WIRE_ADDR, 0x0A0000FF, 0xFFFFFF00),
    In6Ifreq("wire0", SockaddrIn6(in6.pton("fe80::1"), scope_id=2).pack()),
    In6Aliasreq("wire0", SockaddrIn6(in6.pton("fc00::1")), in6.prefixlen2mask(64), IN6_IFF_TENTATIVE,
                In6Addrlifetime(100, 50, 30, 20)),
    KinfoPcb(socket.AF_INET, socket.SOCK_STREAM, 6, 4, 10, 20, WIRE_ADDR, 80, 0x0A000002, 5555),
])
def test_struct_round_trips(obj):
    raw = obj.pack()
    assert type(obj).unpack(raw) == obj
    assert type(obj).unpack(bytes(raw)).pack() == raw


def test_struct_sizes():
    assert len(Ifreq("lo0").pack()) == 144
    assert len(IfDatareq("lo0").pack()) == 152
    assert len(IfMediareq("lo0").pack()) == 48
    assert len(IfDrv("lo0").pack()) == 40
    assert len(IfCapreq("lo0").pack()) == 32
    assert len(IfLaddrreq("lo0").pack()) == 280
    assert len(InAliasreq("lo0").pack()) == 64
    assert len(In6Ifreq("lo0").pack()) == 288
    assert len(In6Aliasreq("lo0", SockaddrIn6(0)).pack()) == 128
    assert len(KinfoPcb(2, 1, 6).pack()) == 640


def test_sockaddrs_round_trip_and_unknown_family():
    for sa in (SockaddrIn(WIRE_ADDR, 80), SockaddrIn6(in6.pton("fe80::2"), 53, 7, 3),
               SockaddrDl(4, IFT_ETHER, "wire0", b"\x02\x00\x00\x00\x00\x09")):
        assert unpack_sockaddr(sa.pack()) == sa
    assert unpack_sockaddr(bytes(16)) is None
    assert unpack_sockaddr(b"\x10") is None
    conf = IfConf(0, [Ifreq("lo0", SockaddrIn(0x7F000001).pack()), Ifreq("wire0")])
    assert [e.name for e in IfConf.unpack(conf.pack()).entries] == ["lo0", "wire0"]


# -- generic interface requests ---------------------------------------------------------------------
def test_create_destroy_and_their_errnos(s):
    s.ioctl(SIOCIFCREATE, Ifreq("wire0").pack())
    assert _errno(s.ioctl, SIOCIFCREATE, Ifreq("wire0").pack()) == errno.EEXIST
    assert _errno(s.ioctl, SIOCIFCREATE, Ifreq("bogus0").pack()) == errno.EINVAL
    s.ioctl(SIOCIFDESTROY, Ifreq("wire0").pack())
    assert _errno(s.ioctl, SIOCIFDESTROY, Ifreq("wire0").pack()) == errno.ENXIO
    assert "wire" in IfCloneReq.unpack(s.ioctl(SIOCIFGCLONERS, IfCloneReq.request(8))).names


def test_no_such_interface_is_enxio(s):
    for req in (SIOCGIFFLAGS, SIOCSIFFLAGS, SIOCGIFMTU, SIOCSIFMTU, SIOCGIFDATA, SIOCGIFMEDIA):
        assert _errno(s.ioctl, req, Ifreq("wire9").pack()) == errno.ENXIO, hex(req)
    assert _errno(s.ioctl, SIOCAIFADDR, InAliasreq("wire9", WIRE_ADDR, None, 0xFFFFFF00).pack()) == errno.ENXIO


def test_flags_mtu_media(k, s):
    s.ioctl(SIOCIFCREATE, Ifreq("wire0").pack())
    flags = Ifreq.unpack(s.ioctl(SIOCGIFFLAGS, Ifreq("wire0").pack())).flags
    assert not flags & 1
    s.ioctl(SIOCSIFFLAGS, Ifreq.with_short("wire0", flags | 1 | 0x100).pack())
    assert "<UP,BROADCAST,PROMISC,SIMPLEX,MULTICAST>" in k.ifconfig("wire0")
    s.ioctl(SIOCSIFMTU, Ifreq.with_int("wire0", 9000).pack())
    assert Ifreq.unpack(s.ioctl(SIOCGIFMTU, Ifreq("wire0").pack())).value == 9000
    assert _errno(s.ioctl, SIOCSIFMTU, Ifreq.with_int("wire0", 20).pack()) == errno.EINVAL
    s.ioctl(SIOCSIFMEDIA, Ifreq.with_int("wire0", IFM_ETHER | IFM_NONE).pack())
    med = IfMediareq.unpack(s.ioctl(SIOCGIFMEDIA, IfMediareq("wire0").pack()))
    assert med.current == IFM_ETHER | IFM_NONE and med.status == IFM_AVALID
    assert _errno(s.ioctl, SIOCSIFMEDIA, Ifreq.with_int("wire0", IFM_ETHER | 7).pack()) == errno.EINVAL
    assert _errno(s.ioctl, SIOCGIFMEDIA, IfMediareq("lo0").pack()) == errno.EINVAL  # loopback: no media


def test_linkstr_and_link_address(k, s):
    s.ioctl(SIOCIFCREATE, Ifreq("wire0").pack())
    assert _errno(s.ioctl, SIOCGLINKSTR, IfDrv("wire0", IFLINKSTR_QUERYLEN).pack()) == errno.ENOENT
    s.ioctl(SIOCSLINKSTR, IfDrv("wire0", 0, 5, b"lan1\0").pack())
    q = IfDrv.unpack(s.ioctl(SIOCGLINKSTR, IfDrv("wire0", IFLINKSTR_QUERYLEN).pack()))
    assert q.length == 5
    got = IfDrv.unpack(s.ioctl(SIOCGLINKSTR, IfDrv("wire0", 0, 5, bytes(5)).pack()))
    assert got.data == b"lan1\0"
    assert _errno(s.ioctl, SIOCGLINKSTR, IfDrv("wire0", 0, 2, bytes(2)).pack()) == errno.ENAMETOOLONG
    assert _errno(s.ioctl, SIOCSLINKSTR, IfDrv("lo0", 0, 2, b"x\0").pack()) == errno.ENOTTY
    mac = b"\x02\x11\x22\x33\x44\x55"
    s.ioctl(SIOCALIFADDR, IfLaddrreq("wire0", 0x8000, 0, SockaddrDl(0, IFT_ETHER, "", mac)).pack())
    assert "address: 02:11:22:33:44:55" in k.ifconfig("wire0")
    bad = IfLaddrreq("wire0", 0x8000, 0, SockaddrDl(0, IFT_ETHER, "", b"\x01" * 6))  # multicast
    assert _errno(s.ioctl, SIOCALIFADDR, bad.pack()) == errno.EINVAL


def test_bad_buffers_are_efault(k, s):
    fd = s.fd
    assert _errno(k.rump_sys_ioctl, fd, SIOCGIFFLAGS, bytes(Ifreq("lo0").pack())) == errno.EFAULT
    assert _errno(k.rump_sys_ioctl, fd, SIOCGIFFLAGS, bytearray(20)) == errno.EFAULT
    assert _errno(k.rump_sys_ioctl, fd, 0xC0906900 | 250, Ifreq("lo0").pack()) == errno.EOPNOTSUPP


def test_gifconf_lists_link_inet_and_inet6_addresses(k, s):
    k.ifconfig("wire0", "create")
    k.ifconfig("wire0", "inet", "10.0.0.1/24")
    k.ifconfig("wire0", "inet6", "fc00::1/64")
    ifas = {i.name: i for i in getifaddrs(s)}
    assert list(ifas) == ["lo0", "wire0"]
    assert ifas["wire0"].ipv4 == [WIRE_ADDR] and ifas["wire0"].type == IFT_ETHER
    assert in6.pton("fc00::1") in [sa.addr for sa in ifas["wire0"].ipv6]
    lla = [sa for sa in ifas["wire0"].ipv6 if in6.is_linklocal(sa.addr)]
    assert lla and lla[0].scope_id == ifas["wire0"].index
    # A buffer with room for one entry gets one, and says so in ifc_len.
    one = IfConf.unpack(s.ioctl(SIOCGIFCONF, IfConf.request(1)))
    assert one.length == IFREQ_SIZE and len(one.entries) == 1


def test_gifdata_counts(k, s):
    k.ifconfig("wire0", "create")
    k.ifconfig("wire0", "linkstr", "lanx")
    k.ifconfig("wire0", "inet", "10.0.0.1/24")
    st = IfDatareq.unpack(s.ioctl(SIOCGIFDATA, IfDatareq("wire0").pack())).data
    ifp = k.ifnet.lookup("wire0")
    assert (st.mtu, st.opackets, st.obytes, st.omcasts) == (1500, ifp.stats.opackets, ifp.stats.obytes,
                                                             ifp.stats.omcasts)
    assert st.opackets >= 1  # the gratuitous ARP


# -- in_control ---------------------------------------------------------------------------------------
def test_inet_address_requests(k, s):
    k.ifconfig("wire0", "create")
    assert _errno(s.ioctl, SIOCGIFADDR, Ifreq("wire0").pack()) == errno.EADDRNOTAVAIL
    s.ioctl(SIOCAIFADDR, InAliasreq("wire0", WIRE_ADDR, None, 0xFFFFFF00).pack())
    assert Ifreq.unpack(s.ioctl(SIOCGIFADDR, Ifreq("wire0").pack())).addr == SockaddrIn(WIRE_ADDR)
    alias = InAliasreq.unpack(s.ioctl(SIOCGIFALIAS, InAliasreq("wire0", WIRE_ADDR).pack()))
    assert (alias.mask, alias.dstaddr) == (0xFFFFFF00, 0x0A0000FF)
    assert "inet 10.0.0.1/24 broadcast 10.0.0.255 flags 0x0" in k.ifconfig("wire0")
    assert _errno(s.ioctl, SIOCAIFADDR, InAliasreq("wire0", 0x0A000002, None, 0xFF00FF00).pack()) == errno.EINVAL
    assert _errno(s.ioctl, SIOCAIFADDR, InAliasreq("wire0", 0, None, 0xFFFFFF00).pack()) == errno.EINVAL
    gone = Ifreq.with_addr("wire0", SockaddrIn(0x0A000009)).pack()
    assert _errno(s.ioctl, SIOCDIFADDR, gone) == errno.EADDRNOTAVAIL
    s.ioctl(SIOCDIFADDR, Ifreq.with_addr("wire0", SockaddrIn(WIRE_ADDR)).pack())
    assert netinet(k).local_addrs.get(WIRE_ADDR) is None


def test_inet6_requests_answer_on_inet6_sockets_only(k, s, s6):
    k.ifconfig("wire0", "create")
    req = In6Aliasreq("wire0", SockaddrIn6(in6.pton("fc00::5")), in6.prefixlen2mask(48), 0,
                      In6Addrlifetime(0, 0, 3600, 1800))
    assert _errno(s.ioctl, SIOCAIFADDR_IN6, req.pack()) == errno.EOPNOTSUPP   # an AF_INET socket
    s6.ioctl(SIOCAIFADDR_IN6, req.pack())
    target = In6Ifreq.with_addr("wire0", SockaddrIn6(in6.pton("fc00::5"))).pack()
    mask = In6Ifreq.unpack(s6.ioctl(SIOCGIFNETMASK_IN6, bytearray(target))).addr
    assert mask is not None and in6.mask2len(mask.addr) == 48
    flags = In6Ifreq.unpack(s6.ioctl(SIOCGIFAFLAG_IN6, bytearray(target))).flags6
    ia = next(a for a in netinet6(k).addresses(k.ifnet.lookup("wire0")) if a.addr == in6.pton("fc00::5"))
    assert flags == ia.flags
    lt = In6Ifreq.unpack(s6.ioctl(SIOCGIFALIFETIME_IN6, bytearray(target))).lifetime
    assert (lt.vltime, lt.pltime) == (3600, 1800) and lt.expire > 0
    s6.ioctl(SIOCDIFADDR_IN6, bytearray(target))
    assert _errno(s6.ioctl, SIOCDIFADDR_IN6, bytearray(target)) == errno.EADDRNOTAVAIL
    assert _errno(s6.ioctl, SIOCGIFAFLAG_IN6, bytearray(target)) == errno.EADDRNOTAVAIL
    other_zone = In6Aliasreq("wire0", SockaddrIn6(in6.pton("fe80::9"), scope_id=1), in6.prefixlen2mask(64))
    assert _errno(s6.ioctl, SIOCAIFADDR_IN6, other_zone.pack()) == errno.EINVAL


def test_inet6_lifetime_infinite(k, s6):
    k.ifconfig("wire0", "create")
    k.ifconfig("wire0", "inet6", "fc00::7/64")
    target = In6Ifreq.with_addr("wire0", SockaddrIn6(in6.pton("fc00::7"))).pack()
    lt = In6Ifreq.unpack(s6.ioctl(SIOCGIFALIFETIME_IN6, target)).lifetime
    assert lt == In6Addrlifetime(0, 0, ND6_INFINITE_LIFETIME, ND6_INFINITE_LIFETIME)


def test_sockin_answers_eopnotsupp():
    k = rump_init(clock="real", sockin=True)
    try:
        with IfSock(k) as s:
            assert _errno(s.ioctl, SIOCGIFCONF, IfConf.request(4)) == errno.EOPNOTSUPP
            assert _errno(s.ioctl, SIOCIFCREATE, Ifreq("wire0").pack()) == errno.EOPNOTSUPP
        assert _errno(k.ifconfig, "-a") == errno.EOPNOTSUPP
        assert _errno(k.netstat, "-s") == errno.EAFNOSUPPORT
    finally:
        k.halt()


# -- sysctl stats and PCB lists ------------------------------------------------------------------------
def test_netstat_s_counters_are_the_kernels(vnet):
    a, b = vnet.kernel(1), vnet.kernel(2)
    for kk, addr in ((a, "10.0.0.1/24"), (b, "10.0.0.2/24")):
        kk.ifconfig("wire0", "create")
        kk.ifconfig("wire0", "linkstr", vnet.seg("lan"))
        kk.ifconfig("wire0", "inet", addr)
    a.ping("-c", "2", "10.0.0.2")
    srv = b.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    b.rump_sys_bind(srv, ("0.0.0.0", 7))
    b.rump_sys_listen(srv, 1)
    c = a.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    a.rump_sys_connect(c, ("10.0.0.2", 7))
    a.rump_sys_send(c, b"x" * 3000, 0)
    inet = netinet(a)
    for node, cls, live in (("net.inet.ip.stats", IpStats, inet.ipstat), ("net.inet.icmp.stats", IcmpStats,
                                                                          inet.icmpstat),
                            ("net.inet.udp.stats", UdpStats, inet.udpstat), ("net.inet.tcp.stats", TcpStats,
                                                                             inet.tcp.stats),
                            ("net.inet6.ip6.stats", Ip6Stats, netinet6(a).node.ip6stat)):
        got = sysctl_stats(a, node, cls)
        assert got is not None and stats_values(got) == stats_values(live), node
    assert inet.tcp.stats.tcps_sndbyte >= 3000 and inet.icmpstat.icps_inhist[0] == 2
    out = netstat(a, ["-s", "-p", "tcp"])
    assert f"\t\t{inet.tcp.stats.tcps_sndpack} data packets ({inet.tcp.stats.tcps_sndbyte} bytes)\n" in out
    assert "\t\techo reply: 2\n" in a.netstat("-s", "-p", "icmp")


def test_pcblist_matches_the_sockets(k):
    srv = k.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    k.rump_sys_bind(srv, ("127.0.0.1", 80))
    k.rump_sys_listen(srv, 1)
    c = k.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    k.rump_sys_connect(c, ("127.0.0.1", 80))
    k.rump_sys_send(c, b"hello", 0)
    a, _ = k.rump_sys_accept(srv)
    assert k.rump_sys_poll([[a, select.POLLIN, 0]], 1, 1000) == 1  # the data is there
    u = k.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    k.rump_sys_bind(u, ("0.0.0.0", 53))
    tcp = unpack_pcblist(k.rump_sys___sysctl("net.inet.tcp.pcblist"))
    states = sorted((p.lport, p.fport, p.tstate) for p in tcp)
    cport = k.rump_sys_getsockname(c)[1]
    assert states == sorted([(80, 0, 1), (cport, 80, 4), (80, cport, 4)])
    conn = next(p for p in tcp if p.lport == 80 and p.fport == cport)
    assert conn.rcvq == 5 and conn.laddr == 0x7F000001
    udp = unpack_pcblist(k.rump_sys___sysctl("net.inet.udp.pcblist"))
    assert [(p.lport, p.protocol) for p in udp] == [(53, socket.IPPROTO_UDP)]
    assert _errno(k.rump_sys___sysctl, "net.inet.tcp.pcblist", None, None, None, b"x") == errno.EPERM


# -- the commands reach the kernel only through system calls -----------------------------------------------
COMMAND_MODULES = ("ifconfig.py", "ifconfig6.py", "netstat.py", "netstat6.py", "ifaddrs.py")
# Kernel internals a command must not import (it would read kernel objects through them).
FORBIDDEN_IMPORTS = {"net_kernel", "netinet", "netinet6", "on_cpu", "Ifnet", "NetConfig", "Kernel", "Sleep",
                     "SyscallCtx"}
# netstat -r prints route(8)'s table, which the rtsock branch moves onto PF_ROUTE/sysctl net.route.
ALLOWED_KERNEL_CALLS = {"kernel_rttable"}


_OWN = {"rumpnet.commands", "rumpnet.commands.ifaddrs", "rumpnet.commands.ifconfig", "rumpnet.commands.ifconfig6",
        "rumpnet.commands.netstat", "rumpnet.commands.netstat6"}


def _passes_kernel(call: ast.Call) -> bool:
    """Does the call hand the kernel (``k``/``sys``, or ``cast(..., k)``) to its callee?"""
    for arg in call.args:
        if isinstance(arg, ast.Call) and isinstance(arg.func, ast.Name) and arg.func.id == "cast":
            arg = arg.args[-1]
        if isinstance(arg, ast.Name) and arg.id in ("k", "sys"):
            return True
    return False


def _kernel_uses(tree: ast.AST) -> list[str]:
    bad = []
    foreign = {alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
               and node.module not in _OWN for alias in node.names}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in ("k", "sys"):
            if not node.attr.startswith("rump_sys_"):
                bad.append(f"{node.value.id}.{node.attr} (line {node.lineno})")
        if isinstance(node, ast.Attribute) and node.attr in ("ifnet", "inet", "inet6", "net", "config", "sched",
                                                              "sysctl_tree", "domains"):
            bad.append(f".{node.attr} (line {node.lineno})")
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.name in FORBIDDEN_IMPORTS and node.module != "typing":
                    bad.append(f"import {alias.name} from {node.module} (line {node.lineno})")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in foreign \
                and node.func.id not in ALLOWED_KERNEL_CALLS | {"cast"} and _passes_kernel(node):
            bad.append(f"{node.func.id}(k) (line {node.lineno})")
    return bad


def test_commands_touch_the_kernel_only_through_system_calls():
    root = Path(__file__).resolve().parents[2] / "rumpnet" / "commands"
    problems = {}
    for name in COMMAND_MODULES:
        tree = ast.parse((root / name).read_text(), name)
        # TYPE_CHECKING blocks name types only.
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
                node.body = []
        bad = _kernel_uses(tree)
        if bad:
            problems[name] = bad
    assert problems == {}


def test_the_ast_check_sees_a_kernel_object():
    tree = ast.parse("def f(k):\n    return k.ifnet.all()\n")
    assert _kernel_uses(tree)
    tree = ast.parse("from rumpnet.net_kernel import netinet\n")
    assert _kernel_uses(tree)
    tree = ast.parse("from rumpnet.netconfig import describe\ndef f(k):\n    return describe(k)\n")
    assert _kernel_uses(tree)
    tree = ast.parse("from rumpnet.commands.route import kernel_rttable\ndef f(k):\n    return kernel_rttable(k)\n")
    assert not _kernel_uses(tree)


# -- over rumpclient ---------------------------------------------------------------------------------------
def test_commands_over_rumpclient():
    from rumpnet.rumpclient import RumpClient
    from rumpnet.server.rump_server import serve_kernel

    k = rump_init(clock="real")
    d = tempfile.mkdtemp(prefix="rsio", dir="/tmp")
    srv = serve_kernel(k, f"unix://{d}/s")
    c = RumpClient(f"unix://{d}/s")
    try:
        # The commands' code runs here, in the client; each ioctl and sysctl goes over the wire.
        assert ifconfig(c, ["wire0", "create"]) == ""
        ifconfig(c, ["wire0", "inet", "10.0.0.1/24"])
        ifconfig(c, ["wire0", "inet6", "fc00::1/64"])
        assert ifconfig(c, ["wire0"]) == k.ifconfig("wire0")
        assert ifconfig(c, ["-a"]) == k.ifconfig("-a")
        assert netstat(c, ["-s"]) == k.netstat("-s")
        assert netstat(c, ["-i"]) == k.netstat("-i")
        with pytest.raises(OSError) as ei:
            ifconfig(c, ["wire0", "inet", "10.0.0.9", "delete"])
        assert ei.value.errno == errno.EADDRNOTAVAIL
        assert str(ei.value) == "[Errno 49] ifconfig: SIOCDIFADDR: Can't assign requested address" or \
            "SIOCDIFADDR: Can't assign requested address" in str(ei.value)
    finally:
        c.close() if hasattr(c, "close") else None
        srv.close()
        k.halt()
        import shutil

        shutil.rmtree(d, ignore_errors=True)


def test_sysctl_struct_bytes_fill_oldp(k):
    raw = k.rump_sys___sysctl("net.inet.ip.stats")
    buf = bytearray(len(raw))
    k.rump_sys___sysctl("net.inet.ip.stats", None, buf)
    assert bytes(buf) == raw
    assert struct.unpack_from("Q", raw)[0] == netinet(k).ipstat.ips_total


def test_commands_from_a_coroutine_on_the_kernels_loop(vnet):
    """On the loop k.rump_sys_* are awaitables: ifconfig and netstat run their calls on the
    CPU they are on, and ``ifconfig -w`` becomes an awaitable (as ping is there)."""
    k = vnet.kernel(1)
    k.ifconfig("wire0", "create")
    k.ifconfig("wire0", "linkstr", vnet.seg("lan"))

    async def main():
        k.ifconfig("wire0", "inet6", "fc00::1/64")
        tentative = "tentative" in k.ifconfig("wire0")
        waited = k.run_command("ifconfig", ["-w", "5"])   # k.ifconfig wants text: only ping waits
        assert not isinstance(waited, str)
        await waited
        return tentative, k.ifconfig("wire0"), k.netstat("-i")

    tentative, shown, stats = vnet.sched.run_coroutine(main())
    assert tentative and "inet6 fc00::1 prefixlen 64\n" in shown and "tentative" not in shown
    assert stats.startswith("Name  Mtu")
    assert shown == k.ifconfig("wire0")


def test_sndq_drops_sysctl_follows_the_interface(k):
    k.ifconfig("wire0", "create")
    k.ifnet.lookup("wire0").stats.oqdrops = 3   # as a full output queue counts them
    assert k.rump_sys___sysctl("net.interfaces.wire0.sndq.drops") == 3
    assert "\toutput: 0 packets, 0 bytes, 3 queue drops\n" in k.ifconfig("-v", "wire0")
    k.ifconfig("wire0", "destroy")
    assert _errno(k.rump_sys___sysctl, "net.interfaces.wire0.sndq.drops") == errno.ENOENT
    assert k.rump_sys___sysctl("net.interfaces.lo0.sndq.drops") == 0
