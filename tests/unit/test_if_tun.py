"""tun(4): bare IP packets in and out of a kernel, no link layer, no ARP."""

from __future__ import annotations

import socket
import struct

import pytest

from rumpkern import rump_init
from rumpkern.sched import Scheduler
from rumpnet.if_tun import TunIfnet
from rumpnet.netinet import tcp
from rumpnet.netinet.in_addr import aton
from rumpnet.netinet.in_cksum import in_cksum


def _kernel() -> tuple[object, TunIfnet, list[bytes]]:
    k = rump_init(clock="virtual", scheduler=Scheduler(virtual=True), components=("net", "netinet", "tun"))
    tun = k.config.if_create("tun0")
    assert isinstance(tun, TunIfnet)
    out: list[bytes] = []
    tun.open(out.append)
    k.config.if_up("tun0")
    k.config.addr_add("tun0", "192.168.0.2/16")
    k.config.route_add("default", "192.168.0.2", interface=True)
    return k, tun, out


def _syn(src: str, dst: str, sport: int, dport: int) -> bytes:
    seg = tcp.emit(tcp.TcpRepr(sport, dport, 1000, 0, tcp.TH_SYN, 8192, mss=1460), aton(src), aton(dst))
    hdr = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(seg), 1, 0, 64, 6, 0,
                                socket.inet_aton(src), socket.inet_aton(dst)))
    c = in_cksum(memoryview(hdr))
    hdr[10:12] = c.to_bytes(2, "big")
    return bytes(hdr) + seg


def test_syn_in_syn_ack_out_as_bare_ip() -> None:
    k, tun, out = _kernel()
    s = k.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    k.rump_sys_bind(s, ("0.0.0.0", 8080))
    k.rump_sys_listen(s, 1)
    assert out == []            # no gratuitous ARP, nothing at all, on a tun
    k.sched.run(lambda: tun.write(_syn("192.0.2.1", "192.168.0.2", 40000, 8080)))
    assert len(out) == 1
    pkt = out[0]
    assert pkt[0] >> 4 == 4 and pkt[9] == 6                   # IPv4, TCP: no Ethernet header
    assert pkt[12:16] == socket.inet_aton("192.168.0.2") and pkt[16:20] == socket.inet_aton("192.0.2.1")
    seg = tcp.parse(pkt[20:])
    assert seg.flags == tcp.TH_SYN | tcp.TH_ACK and seg.ack == 1001
    assert (tun.stats.ipackets, tun.stats.opackets) == (1, 1)
    k.halt()


@pytest.mark.parametrize("packet, counter", [(b"\x10\x00\x00", "noproto"), (b"", "ierrors")])
def test_non_ip_is_dropped_and_counted(packet: bytes, counter: str) -> None:
    k, tun, out = _kernel()
    k.sched.run(lambda: tun.write(packet))
    assert getattr(tun.stats, counter) == 1
    assert tun.stats.ipackets == 0 and out == []
    k.halt()


def test_closed_device_drops_input_and_output() -> None:
    k, tun, out = _kernel()
    tun.close()
    k.sched.run(lambda: tun.write(_syn("192.0.2.1", "192.168.0.2", 40000, 8080)))
    assert tun.stats.iqdrops == 1
    with pytest.raises(OSError):
        k.rump_sys_sendto(k.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0), b"x", 0, ("192.0.2.1", 9))
    assert out == []
    k.halt()


def test_second_open_is_busy() -> None:
    k, tun, _ = _kernel()
    with pytest.raises(OSError) as e:
        tun.open(lambda pkt: None)
    assert e.value.errno == 16  # EBUSY
    k.halt()


def test_ipv6_goes_out_bare_without_neighbour_discovery() -> None:
    """IPv6 output to a tun hands the packet over as it is: no Ethernet header and no
    Neighbor Solicitation first (the interface has no link-layer address)."""
    from rumpnet.netinet6 import icmp6, in6
    from rumpnet.netinet6.ip6 import IPPROTO_ICMPV6, ip6_build

    k = rump_init(clock="virtual", scheduler=Scheduler(virtual=True),
                  components=("net", "netinet", "netinet6", "tun"))
    tun = k.config.if_create("tun0")
    out: list[bytes] = []
    tun.open(out.append)
    k.ifconfig("tun0", "inet6", "fc00::2/64")    # set while down: no DAD (in6if_do_dad)
    k.config.if_up("tun0")
    k.run_for(5)
    # only MLD reports (hop-by-hop) and DAD probes for the link-local address (from ::)
    assert all(p[0] >> 4 == 6 and (p[6] == 0 or p[8:24] == bytes(16) and p[40] == 135) for p in out)
    out.clear()
    peer, me = in6.pton("fc00::1"), in6.pton("fc00::2")
    req = icmp6.emit(icmp6.echo_repr(icmp6.ICMP6_ECHO_REQUEST, 7, 1, b"ping"), peer, me)
    k.sched.run(lambda: tun.write(ip6_build(peer, me, IPPROTO_ICMPV6, req)))
    assert len(out) == 1
    pkt = out[0]
    assert pkt[0] >> 4 == 6 and pkt[6] == IPPROTO_ICMPV6 and pkt[40] == icmp6.ICMP6_ECHO_REPLY
    assert pkt[8:24] == me.to_bytes(16, "big") and pkt[24:40] == peer.to_bytes(16, "big")
    k.halt()


def _tun6_kernel(seed: int, virt: bool) -> tuple[object, TunIfnet, list[bytes]]:
    k = rump_init(clock="virtual", scheduler=Scheduler(virtual=True), seed=seed,
                  components=("net", "netinet", "netinet6", "tun", "shmif"))
    if virt:        # an Ethernet interface to borrow an identifier from (not on a link)
        k.ifconfig("shmif0", "create")
        k.ifconfig("shmif0", "up")
    tun = k.config.if_create("tun0")
    assert isinstance(tun, TunIfnet)
    out: list[bytes] = []
    tun.open(out.append)
    k.config.if_up("tun0")
    k.run_for(5)                       # DAD done
    return k, tun, out


def _tun_linklocal(k) -> str:
    line = next(ln for ln in k.ifconfig("tun0", "inet6").splitlines() if "fe80:" in ln)
    assert "tentative" not in line and "duplicated" not in line, line
    return line.split()[1]


def test_tun_gets_a_link_local_address_from_another_interface_or_rfc7217() -> None:
    """NetBSD's in6_ifattach gives a tun (no link-layer address) a link-local address:
    with the interface identifier of another interface's MAC when there is one, else a
    random one (here RFC 7217's, from a secret drawn from the kernel's generator: the
    same seed, the same address). DAD runs for it as for any address (RFC 4862 5.4)."""
    from rumpnet.netinet6 import in6

    k, tun, out = _tun6_kernel(7, virt=True)
    shmif = k.ifnet.lookup("shmif0")
    ll = _tun_linklocal(k)
    assert ll == in6.ntop(in6.linklocal(in6.ifid_eui64(shmif.lladdr))) + "%tun0", ll
    assert any(p[40] == 135 and p[8:24] == bytes(16) for p in out)   # its DAD probe went out bare
    k.halt()
    k1, _, _ = _tun6_kernel(7, virt=False)
    k2, _, _ = _tun6_kernel(7, virt=False)
    k3, _, _ = _tun6_kernel(8, virt=False)
    a1, a2, a3 = (_tun_linklocal(x) for x in (k1, k2, k3))
    assert a1 == a2 != a3 and a1.startswith("fe80::") and a1 != ll
    assert not in6.is_reserved_iid(in6.pton(a1.split("%")[0]) & ((1 << 64) - 1))
    for x in (k1, k2, k3):
        x.halt()


def test_tun_link_local_off_with_auto_linklocal_0() -> None:
    k = rump_init(clock="virtual", scheduler=Scheduler(virtual=True), components=("net", "netinet", "netinet6", "tun"))
    k.sysctl("-w", "net.inet6.ip6.auto_linklocal=0")
    tun = k.config.if_create("tun0")
    tun.open(lambda pkt: None)
    k.config.if_up("tun0")
    k.run_for(5)
    assert "fe80:" not in k.ifconfig("tun0", "inet6")
    k.halt()
