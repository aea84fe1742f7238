"""PF_ROUTE routing sockets and sysctl net.route (rumpnet/rtsock.py, rumpnet/route_msg.py).

Each request is written as NetBSD's route(8) writes it and the answer compared with the
exact message expected, nothing else queued: the smoltcp shape for a control protocol.
"""

from __future__ import annotations

import ast
import errno
import select
import socket
import struct
from pathlib import Path
from typing import Any

import pytest

from rumpnet.netinet.in_addr import aton
from rumpnet.netinet6 import in6
from rumpnet.route import RTF_DONE, RTF_GATEWAY, RTF_HOST, RTF_LLDATA, RTF_LOCAL, RTF_STATIC, RTF_UP
from rumpnet.route_msg import (
    AF_INET,
    AF_INET6,
    IFAM_HDRLEN,
    IFM_HDRLEN,
    NET_RT_DUMP,
    NET_RT_FLAGS,
    NET_RT_IFLIST,
    PF_ROUTE,
    RTA_DST,
    RTA_GATEWAY,
    RTA_IFA,
    RTA_IFP,
    RTA_NETMASK,
    RTM_ADD,
    RTM_CHANGE,
    RTM_DELADDR,
    RTM_DELETE,
    RTM_GET,
    RTM_HDRLEN,
    RTM_IFINFO,
    RTM_NEWADDR,
    RTM_VERSION,
    RTV_MTU,
    IfaMsghdr,
    IfData,
    IfMsghdr,
    RtMetrics,
    RtMsghdr,
    SockaddrDl,
    SockaddrIn,
    SockaddrIn6,
    decode_msg,
    iter_msgs,
    mask_sockaddr,
    rt_roundup,
)
from rumpnet.rtsock import SO_USELOOPBACK

ROOT = Path(__file__).resolve().parents[2]
IFT_ETHER, IFT_LOOP = 6, 0x18


# -- the codec ----------------------------------------------------------------------------------


def test_header_sizes_are_netbsds_amd64_ones() -> None:
    assert (RTM_HDRLEN, IFM_HDRLEN, IFAM_HDRLEN) == (120, 152, 32)
    assert [rt_roundup(n) for n in (0, 1, 8, 16, 17, 28, 32)] == [8, 8, 8, 16, 24, 32, 32]


def test_rt_msghdr_fields_sit_at_netbsds_offsets() -> None:
    msg = RtMsghdr(RTM_ADD, RTF_UP | RTF_GATEWAY, rtm_index=3, rtm_pid=7, rtm_seq=9, rtm_errno=17,
                   rtm_inits=RTV_MTU, rtm_rmx=RtMetrics(rmx_mtu=1400, rmx_expire=5),
                   addrs={RTA_DST: SockaddrIn(aton("10.1.0.0")), RTA_GATEWAY: SockaddrIn(aton("10.0.0.1")),
                          RTA_NETMASK: mask_sockaddr(AF_INET, 16)})
    raw = msg.encode()
    assert len(raw) == 120 + 3 * 16
    assert struct.unpack_from("<HBBH", raw) == (len(raw), RTM_VERSION, RTM_ADD, 3)
    assert struct.unpack_from("<iiiiiii", raw, 8) == (0x3, 0x7, 7, 9, 17, 0, RTV_MTU)
    assert struct.unpack_from("<Q", raw, 48)[0] == 1400          # rmx_mtu, the 2nd uint64
    assert struct.unpack_from("<q", raw, 40 + 64)[0] == 5        # rmx_expire
    # sockaddr_in: sin_len 16, AF_INET 2, port 0, address, in RTAX order after the header
    assert raw[120:128] == bytes([16, 2, 0, 0, 10, 1, 0, 0])
    assert raw[136:144] == bytes([16, 2, 0, 0, 10, 0, 0, 1])
    assert raw[152:160] == bytes([16, 2, 0, 0, 255, 255, 0, 0])
    assert decode_msg(raw) == msg


def test_every_message_kind_round_trips() -> None:
    sdl = SockaddrDl(2, "shmif0", bytes.fromhex("b2a000000001"), IFT_ETHER)
    msgs: list[Any] = [
        RtMsghdr(RTM_GET, RTF_UP | RTF_HOST | RTF_LLDATA, 2,
                 addrs={RTA_DST: SockaddrIn6(in6.pton("fe80::1"), 2), RTA_GATEWAY: SockaddrDl(2, lladdr=b"\1" * 6),
                        RTA_IFP: sdl, RTA_IFA: SockaddrIn6(in6.pton("fc00::1"))}),
        IfMsghdr(RTM_IFINFO, 0x8843, 2, IfData(IFT_ETHER, 6, 0, 2, 1500), {RTA_IFP: sdl}),
        IfaMsghdr(RTM_NEWADDR, 2, 0x8843, addrs={RTA_IFA: SockaddrIn(aton("10.0.0.1")),
                                                  RTA_NETMASK: mask_sockaddr(AF_INET, 24), RTA_IFP: sdl}),
    ]
    raw = b"".join(m.encode() for m in msgs)
    assert list(iter_msgs(raw)) == msgs


def test_a_trimmed_family_less_netmask_takes_the_destinations_family() -> None:
    # route(8) writes masks cut after their last non-zero byte, sa_family 0 (rt_maskedcopy)
    head = RtMsghdr(RTM_ADD, addrs={RTA_DST: SockaddrIn(aton("10.1.0.0"))}).encode()
    mask = bytes([6, 0, 0, 0, 255, 255]).ljust(8, b"\0")
    raw = bytearray(head + mask)
    struct.pack_into("<H", raw, 0, len(raw))
    struct.pack_into("<i", raw, 12, RTA_DST | RTA_NETMASK)
    assert decode_msg(bytes(raw)).addrs[RTA_NETMASK] == SockaddrIn(aton("255.255.0.0"))


@pytest.mark.parametrize("mangle, code", [
    (lambda raw: raw[:3], errno.EINVAL),                                     # shorter than a header
    (lambda raw: struct.pack("<H", 200) + raw[2:], errno.EINVAL),            # msglen past the data
    (lambda raw: raw[:2] + bytes([3]) + raw[3:], errno.EPROTONOSUPPORT),      # another version
    (lambda raw: struct.pack("<H", 100) + raw[2:100], errno.EINVAL),          # shorter than rt_msghdr
])
def test_malformed_messages_are_refused_with_netbsds_errno(mangle: Any, code: int) -> None:
    raw = RtMsghdr(RTM_GET, addrs={RTA_DST: SockaddrIn(1)}).encode()
    with pytest.raises(OSError) as ei:
        decode_msg(mangle(raw))
    assert ei.value.errno == code


# -- a kernel -----------------------------------------------------------------------------------


@pytest.fixture
def k(vnet: Any) -> Any:
    kern = vnet.kernel(1)
    vnet.attach(kern, "wire0", "lan", "10.3.0.1/24")
    return kern


def _open(k: Any, quiet: bool = False) -> int:
    fd = k.rump_sys_socket(PF_ROUTE, socket.SOCK_RAW, 0)
    if quiet:
        k.rump_sys_setsockopt(fd, socket.SOL_SOCKET, SO_USELOOPBACK, 0)
    return int(fd)


def _drain(k: Any, fd: int) -> list[Any]:
    out = []
    while True:
        try:
            out.append(decode_msg(k.rump_sys_recv(fd, 4096, socket.MSG_DONTWAIT)))
        except BlockingIOError:
            return out


def _wire0(k: Any) -> SockaddrDl:
    ifp = k.ifnet.lookup("wire0")
    return SockaddrDl(ifp.index, "wire0", bytes(ifp.lladdr), IFT_ETHER)


def _add(seq: int = 1) -> RtMsghdr:
    return RtMsghdr(RTM_ADD, RTF_UP | RTF_GATEWAY | RTF_STATIC, rtm_seq=seq,
                    addrs={RTA_DST: SockaddrIn(aton("10.9.0.0")), RTA_GATEWAY: SockaddrIn(aton("10.3.0.254")),
                           RTA_NETMASK: mask_sockaddr(AF_INET, 16)})


def _route_10_9(k: Any, rtm_type: int, seq: int, gw: str = "10.3.0.254", mtu: int = 0) -> RtMsghdr:
    """The answer for 10.9/16 via ``gw``: the route as the table now holds it."""
    ifindex = k.ifnet.lookup("wire0").index
    return RtMsghdr(rtm_type, RTF_UP | RTF_GATEWAY | RTF_STATIC | RTF_DONE, ifindex, rtm_pid=k.curproc.pid,
                    rtm_seq=seq, rtm_rmx=RtMetrics(rmx_mtu=mtu),
                    addrs={RTA_DST: SockaddrIn(aton("10.9.0.0")), RTA_GATEWAY: SockaddrIn(aton(gw)),
                           RTA_NETMASK: mask_sockaddr(AF_INET, 16), RTA_IFP: _wire0(k),
                           RTA_IFA: SockaddrIn(aton("10.3.0.1"))})


def test_rtm_add_answers_with_the_route_made_and_nothing_else(k: Any) -> None:
    fd = _open(k)
    assert k.rump_sys_write(fd, _add().encode()) == len(_add().encode())
    assert _drain(k, fd) == [_route_10_9(k, RTM_ADD, 1)]
    assert "10.9/16            10.3.0.254         UGS" in k.route("-n", "show")


def test_rtm_get_answers_the_longest_match_with_ifp_and_ifa(k: Any) -> None:
    fd = _open(k)
    k.rump_sys_write(fd, _add().encode())
    _drain(k, fd)
    get = RtMsghdr(RTM_GET, rtm_seq=2, addrs={RTA_DST: SockaddrIn(aton("10.9.1.2")), RTA_IFP: SockaddrDl()})
    k.rump_sys_write(fd, get.encode())
    assert _drain(k, fd) == [_route_10_9(k, RTM_GET, 2)]


def test_rtm_change_then_delete(k: Any) -> None:
    fd = _open(k)
    k.rump_sys_write(fd, _add().encode())
    _drain(k, fd)
    change = _add(3)
    change.rtm_type = RTM_CHANGE
    change.addrs[RTA_GATEWAY] = SockaddrIn(aton("10.3.0.253"))
    change.rtm_inits, change.rtm_rmx.rmx_mtu = RTV_MTU, 1280
    k.rump_sys_write(fd, change.encode())
    assert _drain(k, fd) == [_route_10_9(k, RTM_CHANGE, 3, "10.3.0.253", 1280)]
    delete = RtMsghdr(RTM_DELETE, rtm_seq=4, addrs={RTA_DST: SockaddrIn(aton("10.9.0.0")),
                                                    RTA_NETMASK: mask_sockaddr(AF_INET, 16)})
    k.rump_sys_write(fd, delete.encode())
    assert _drain(k, fd) == [_route_10_9(k, RTM_DELETE, 4, "10.3.0.253", 1280)]
    assert "10.9/16" not in k.route("-n", "show")


@pytest.mark.parametrize("msg, code", [
    (_add(), errno.EEXIST),                                                          # twice
    (RtMsghdr(RTM_DELETE, addrs={RTA_DST: SockaddrIn(aton("10.77.0.0")),
                                 RTA_NETMASK: mask_sockaddr(AF_INET, 16)}), errno.ESRCH),
    (RtMsghdr(RTM_CHANGE, RTF_GATEWAY, addrs={RTA_DST: SockaddrIn(aton("10.77.0.0")),
                                              RTA_GATEWAY: SockaddrIn(aton("10.3.0.9"))}), errno.ESRCH),
    (RtMsghdr(RTM_GET, addrs={RTA_DST: SockaddrIn(aton("192.0.2.1"))}), errno.ESRCH),  # no default route
    (RtMsghdr(RTM_ADD, RTF_GATEWAY | RTF_STATIC,
              addrs={RTA_DST: SockaddrIn(aton("10.8.0.0")), RTA_GATEWAY: SockaddrIn(aton("192.0.2.1")),
                     RTA_NETMASK: mask_sockaddr(AF_INET, 16)}), errno.ENETUNREACH),   # gateway off-link
    (RtMsghdr(RTM_ADD, RTF_GATEWAY, addrs={RTA_DST: SockaddrIn(aton("10.8.0.0"))}), errno.EINVAL),  # no gateway
    (RtMsghdr(RTM_GET, addrs={RTA_GATEWAY: SockaddrIn(1)}), errno.EINVAL),           # no destination
    (RtMsghdr(RTM_IFINFO), errno.EOPNOTSUPP),                                        # not a request
])
def test_errors_are_write_errnos_and_rtm_errno_in_the_answer(k: Any, msg: RtMsghdr, code: int) -> None:
    fd = _open(k)
    k.rump_sys_write(fd, _add().encode())
    _drain(k, fd)
    msg.rtm_seq = 5
    with pytest.raises(OSError) as ei:
        k.rump_sys_write(fd, msg.encode())
    assert ei.value.errno == code
    answers = _drain(k, fd)
    if msg.rtm_type != RTM_IFINFO:  # a request at all: its answer goes out with rtm_errno
        assert [(m.rtm_type, m.rtm_seq, m.rtm_errno) for m in answers] == [(msg.rtm_type, 5, code)]
    else:
        assert answers == []


def test_a_short_write_is_einval_and_nothing_is_announced(k: Any) -> None:
    fd, other = _open(k), _open(k)
    with pytest.raises(OSError) as ei:
        k.rump_sys_write(fd, _add().encode()[:60])
    assert ei.value.errno == errno.EINVAL
    assert _drain(k, fd) == [] and _drain(k, other) == []


def test_so_useloopback_off_keeps_the_writer_deaf_to_its_own_answer(k: Any) -> None:
    quiet, listener = _open(k, quiet=True), _open(k)
    assert k.rump_sys_getsockopt(quiet, socket.SOL_SOCKET, SO_USELOOPBACK) == 0
    assert k.rump_sys_getsockopt(listener, socket.SOL_SOCKET, SO_USELOOPBACK) == 1
    k.rump_sys_write(quiet, _add().encode())
    assert _drain(k, quiet) == []
    assert _drain(k, listener) == [_route_10_9(k, RTM_ADD, 1)]


def test_another_socket_hears_route_add_and_delete_by_the_route_command(k: Any) -> None:
    fd = _open(k)
    assert k.route("add", "-net", "10.9.0.0/16", "10.3.0.254") == "add net 10.9.0.0: gateway 10.3.0.254\n"
    k.route("delete", "-net", "10.9.0.0/16")
    got = _drain(k, fd)
    assert [(m.rtm_type, m.rtm_errno, m.addrs[RTA_DST]) for m in got] == [
        (RTM_ADD, 0, SockaddrIn(aton("10.9.0.0"))), (RTM_DELETE, 0, SockaddrIn(aton("10.9.0.0")))]


def test_ifconfig_up_down_and_addresses_are_announced(k: Any) -> None:
    fd = _open(k)
    ifindex = k.ifnet.lookup("wire0").index
    k.ifconfig("wire0", "down")
    k.ifconfig("wire0", "up")
    infos = [m for m in _drain(k, fd) if isinstance(m, IfMsghdr)]
    assert [(m.ifm_type, m.ifm_index, bool(m.ifm_flags & 1)) for m in infos] == [
        (RTM_IFINFO, ifindex, False), (RTM_IFINFO, ifindex, True)]
    k.ifconfig("wire0", "inet", "10.4.0.1/24", "alias")
    got = _drain(k, fd)
    assert IfaMsghdr(RTM_NEWADDR, ifindex, k.ifnet.lookup("wire0").flags, addrs={
        RTA_IFA: SockaddrIn(aton("10.4.0.1")), RTA_NETMASK: mask_sockaddr(AF_INET, 24),
        RTA_IFP: _wire0(k)}) in got
    assert {(m.rtm_type, m.addrs[RTA_DST]) for m in got if isinstance(m, RtMsghdr)} == {
        (RTM_ADD, SockaddrIn(aton("10.4.0.0"))), (RTM_ADD, SockaddrIn(aton("10.4.0.1")))}
    k.ifconfig("wire0", "inet", "10.4.0.1", "delete")
    assert [m.ifam_type for m in _drain(k, fd) if isinstance(m, IfaMsghdr)] == [RTM_DELADDR]


def test_inet6_routes_through_the_socket(k: Any) -> None:
    fd = _open(k)
    k.ifconfig("wire0", "inet6", "fc00:3::1/64")
    _drain(k, fd)
    add = RtMsghdr(RTM_ADD, RTF_UP | RTF_GATEWAY | RTF_STATIC, rtm_seq=1,
                   addrs={RTA_DST: SockaddrIn6(in6.pton("fc00:9::")), RTA_GATEWAY: SockaddrIn6(in6.pton("fc00:3::fe")),
                          RTA_NETMASK: mask_sockaddr(AF_INET6, 64)})
    k.rump_sys_write(fd, add.encode())
    (reply,) = _drain(k, fd)
    assert (reply.rtm_type, reply.rtm_errno, reply.addrs[RTA_GATEWAY]) == (
        RTM_ADD, 0, SockaddrIn6(in6.pton("fc00:3::fe")))
    get = RtMsghdr(RTM_GET, rtm_seq=2, addrs={RTA_DST: SockaddrIn6(in6.pton("fc00:9::5"))})
    k.rump_sys_write(fd, get.encode())
    (reply,) = _drain(k, fd)
    assert (reply.rtm_type, reply.rtm_seq, reply.addrs[RTA_DST]) == (RTM_GET, 2, SockaddrIn6(in6.pton("fc00:9::")))
    assert reply.addrs[RTA_IFP].name == "wire0" and reply.rtm_flags & RTF_GATEWAY
    with pytest.raises(OSError) as ei:
        k.rump_sys_write(fd, add.encode())
    assert ei.value.errno == errno.EEXIST


def test_poll_wakes_a_reader_on_an_announcement(k: Any) -> None:
    fd = _open(k)
    fds = [[fd, select.POLLIN, 0]]
    assert k.rump_sys_poll(fds, None, 0) == 0
    k.ifconfig("wire0", "down")
    assert k.rump_sys_poll(fds, None, 0) == 1 and fds[0][2] & select.POLLIN
    assert isinstance(decode_msg(k.rump_sys_read(fd, 4096)), IfMsghdr)


def test_a_socket_for_one_family_hears_only_that_family(k: Any) -> None:
    fd = int(k.rump_sys_socket(PF_ROUTE, socket.SOCK_RAW, AF_INET6))
    k.route("add", "-net", "10.9.0.0/16", "10.3.0.254")
    assert _drain(k, fd) == []
    k.ifconfig("wire0", "inet6", "fc00:3::1/64")
    assert {m.ifam_type for m in _drain(k, fd) if isinstance(m, IfaMsghdr)} == {RTM_NEWADDR}


def test_only_raw_route_sockets_are_made(k: Any) -> None:
    for so_type, code in ((socket.SOCK_DGRAM, errno.EPROTONOSUPPORT), (socket.SOCK_STREAM, errno.EPROTONOSUPPORT)):
        with pytest.raises(OSError) as ei:
            k.rump_sys_socket(PF_ROUTE, so_type, 0)
        assert ei.value.errno == code
    with pytest.raises(OSError) as ei:
        k.rump_sys_socket(PF_ROUTE, socket.SOCK_RAW, 99)
    assert ei.value.errno == errno.EPROTONOSUPPORT


# -- sysctl net.route ---------------------------------------------------------------------------


def _sysctl(k: Any, *mib: int, oldp: bytearray | None = None) -> list[Any]:
    return list(iter_msgs(k.rump_sys___sysctl([4, PF_ROUTE, 0, *mib], None, oldp)))


def test_net_rt_dump_lists_the_table(k: Any) -> None:
    k.route("add", "-net", "10.9.0.0/16", "10.3.0.254")
    inet = [m.addrs[RTA_DST] for m in _sysctl(k, AF_INET, NET_RT_DUMP, 0)]
    assert inet == [SockaddrIn(aton(a)) for a in ("10.3.0.0", "10.3.0.1", "10.9.0.0", "127.0.0.0", "127.0.0.1")]
    both = _sysctl(k, 0, NET_RT_DUMP, 0)
    assert {type(m.addrs[RTA_DST]) for m in both} == {SockaddrIn, SockaddrIn6}
    gw = [m for m in _sysctl(k, AF_INET, NET_RT_FLAGS, RTF_GATEWAY)]
    assert {m.addrs[RTA_DST] for m in gw} == {SockaddrIn(aton("10.9.0.0")), SockaddrIn(aton("127.0.0.0"))}
    local = next(m for m in inet_msgs(k) if m.addrs[RTA_DST] == SockaddrIn(aton("10.3.0.1")))
    assert local.rtm_flags & RTF_LOCAL and local.addrs[RTA_GATEWAY] == SockaddrDl(k.ifnet.lookup("wire0").index)


def inet_msgs(k: Any) -> list[Any]:
    return _sysctl(k, AF_INET, NET_RT_DUMP, 0)


def test_net_rt_flags_llinfo_dumps_the_arp_cache(k: Any) -> None:
    k.arp("-s", "10.3.0.7", "b2:a0:00:00:00:07")
    (lle,) = _sysctl(k, AF_INET, NET_RT_FLAGS, RTF_LLDATA)
    assert lle.rtm_flags == RTF_UP | RTF_HOST | RTF_LLDATA | RTF_STATIC
    assert lle.addrs[RTA_DST] == SockaddrIn(aton("10.3.0.7"))
    assert lle.addrs[RTA_GATEWAY] == SockaddrDl(k.ifnet.lookup("wire0").index, lladdr=bytes.fromhex("b2a000000007"))
    nd = _sysctl(k, AF_INET6, NET_RT_FLAGS, RTF_LLDATA)
    assert nd and all(m.rtm_flags & RTF_LLDATA for m in nd)  # our own addresses: permanent local entries


def test_net_rt_iflist_gives_interfaces_and_their_addresses(k: Any) -> None:
    msgs = _sysctl(k, AF_INET, NET_RT_IFLIST, 0)
    infos = [m for m in msgs if isinstance(m, IfMsghdr)]
    assert [m.addrs[RTA_IFP].name for m in infos] == ["lo0", "wire0"]
    assert infos[0].ifm_data.ifi_type == IFT_LOOP and infos[1].ifm_data.ifi_mtu == 1500
    addrs = [m.addrs[RTA_IFA] for m in msgs if isinstance(m, IfaMsghdr)]
    assert addrs == [SockaddrIn(aton("127.0.0.1")), SockaddrIn(aton("10.3.0.1"))]
    one = _sysctl(k, AF_INET, NET_RT_IFLIST, k.ifnet.lookup("wire0").index)
    assert [type(m) for m in one] == [IfMsghdr, IfaMsghdr]


@pytest.mark.parametrize("mib, code", [
    ((AF_INET, NET_RT_DUMP), errno.EINVAL),           # the arg is missing
    ((0, NET_RT_FLAGS, RTF_LLDATA), errno.EINVAL),    # LLINFO needs a family
    ((AF_INET, 99, 0), errno.EOPNOTSUPP),
    ((7, NET_RT_DUMP, 0), errno.EAFNOSUPPORT),
])
def test_net_route_sysctl_errors(k: Any, mib: tuple[int, ...], code: int) -> None:
    with pytest.raises(OSError) as ei:
        _sysctl(k, *mib)
    assert ei.value.errno == code


def test_net_route_sysctl_fills_oldp_or_says_enomem(k: Any) -> None:
    raw = k.rump_sys___sysctl([4, PF_ROUTE, 0, AF_INET, NET_RT_DUMP, 0])
    buf = bytearray(len(raw))
    assert k.rump_sys___sysctl([4, PF_ROUTE, 0, AF_INET, NET_RT_DUMP, 0], None, buf) == raw and bytes(buf) == raw
    with pytest.raises(OSError) as ei:
        k.rump_sys___sysctl([4, PF_ROUTE, 0, AF_INET, NET_RT_DUMP, 0], None, bytearray(10))
    assert ei.value.errno == errno.ENOMEM
    with pytest.raises(OSError) as ei:
        k.rump_sys___sysctl([4, PF_ROUTE, 0, AF_INET, NET_RT_DUMP, 0], None, None, None, b"x")
    assert ei.value.errno == errno.EPERM
    assert "net.route" not in k.sysctl("-a")  # sysctl -a skips the dump node


def test_commands_work_from_a_coroutine_on_the_kernels_cpu(k: Any) -> None:
    async def show() -> str:
        return str(k.route("-n", "show"))

    assert "10.3.0/24" in k.sched.loop.run_until_complete(show())


# -- the commands reach the kernel only through system calls -----------------------------------

_COMMANDS = ("route", "route6", "arp", "ndp")
_KERNEL_MODULES = ("rumpnet.net_kernel", "rumpnet.netconfig6", "rumpnet.netinet.if_arp", "rumpnet.netinet.in_proto",
                   "rumpnet.netinet6.in6_domain", "rumpnet.net", "rumpnet.ifnet", "rumpnet.rtsock")


def _kernel_reaches(name: str) -> list[str]:
    tree = ast.parse((ROOT / "rumpnet" / "commands" / f"{name}.py").read_text())
    found = []
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "k":
                found.append(f"{fn.name}: k.{node.attr}")
            if isinstance(node, ast.Attribute) and node.attr in ("config", "inet", "inet6", "ifnet", "routes"):
                found.append(f"{fn.name}: .{node.attr}")
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in _KERNEL_MODULES:
            found.append(f"imports {node.module}")
    return found


@pytest.mark.parametrize("name", _COMMANDS)
def test_commands_touch_no_kernel_object(name: str) -> None:
    assert _kernel_reaches(name) == []


def test_the_client_calls_only_system_calls() -> None:
    tree = ast.parse((ROOT / "rumpnet" / "commands" / "rtsock_client.py").read_text())
    used = {node.attr for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in ("k", "kern")}
    assert used <= {"sysent", "curproc", "check_up"}, used
