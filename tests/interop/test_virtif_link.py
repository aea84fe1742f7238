"""virtif against a real Linux peer: a tap opened by VirtifDriver, moved into a fresh
network namespace where Linux owns 10.99.7.1/24; the driver plays 10.99.7.2."""

from __future__ import annotations

import asyncio
import contextlib
import math
import shutil
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from rumpnet.testing.netns import (
    NetNS,
    have_netns_privileges,
    link_exists,
    link_info,
    move_link_to_netns,
    netns_exists,
    ns_configure,
    ns_pids,
    ns_python,
    ns_python_popen,
    ns_run,
    unique_ifname,
)
from rumpnet.virtif import VirtifDriver, tun_features

_ok, _why = have_netns_privileges()
pytestmark = [pytest.mark.interop, pytest.mark.skipif(not _ok, reason=_why)]

NS_IP = "10.99.7.1"
OUR_IP = "10.99.7.2"
UNUSED_IP = "10.99.7.3"
BCAST_IP = "10.99.7.255"
OUR_MAC = bytes.fromhex("020000990702")
ETHERTYPE_IP = 0x0800
ETHERTYPE_ARP = 0x0806


class _Sched:
    """The part of rumpkern's Scheduler a LinkDriver uses."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def now(self) -> float:
        return self.loop.time()


@dataclass
class Link:
    loop: asyncio.AbstractEventLoop
    ns: NetNS
    drv: VirtifDriver
    frames: list[bytes] = field(default_factory=list)
    responder: Callable[[bytes], None] | None = None

    @property
    def tap(self) -> str:
        return self.drv.tapname

    def ns_mac(self) -> bytes:
        info = link_info(self.tap, self.ns.name)
        assert info is not None
        return bytes.fromhex(info["address"].replace(":", ""))

    def run_until(self, pred: Callable[[], bool], timeout: float = 5.0) -> bool:
        async def wait() -> bool:
            deadline = self.loop.time() + timeout
            while not pred():
                if self.loop.time() > deadline:
                    return False
                await asyncio.sleep(0.005)
            return True

        return self.loop.run_until_complete(wait())

    def run_for(self, seconds: float) -> None:
        self.loop.run_until_complete(asyncio.sleep(seconds))


@contextlib.contextmanager
def virtif_netns(vnet_hdr: bool = False, batch: int = 64) -> Iterator[Link]:
    """A VirtifDriver on a fresh loop, its tap inside a fresh namespace, Linux side
    10.99.7.1/24 and up. Everything is removed on exit, also when the body raises."""
    loop = asyncio.new_event_loop()
    ns = NetNS("rnt")
    drv: VirtifDriver | None = None
    try:
        ns.create()
        drv = VirtifDriver(unique_ifname("rnt"), vnet_hdr=vnet_hdr, batch=batch)
        link = Link(loop, ns, drv)

        def deliver(frame: bytes) -> None:
            link.frames.append(frame)
            if link.responder is not None:
                link.responder(frame)

        drv.attach(_Sched(loop), deliver)
        move_link_to_netns(drv.tapname, ns)
        ns_configure(ns, drv.tapname, f"{NS_IP}/24")
        yield link
    finally:
        try:
            if drv is not None:
                drv.detach()
        finally:
            try:
                ns.remove()
            finally:
                loop.close()


@pytest.fixture
def link() -> Iterator[Link]:
    with virtif_netns() as lk:
        yield lk


# -- frame helpers (struct; scapy only builds what we send) ----------------------------
def eth_type(frame: bytes) -> int:
    return int(struct.unpack_from("!H", frame, 12)[0])


def parse_arp(frame: bytes) -> tuple[int, bytes, str, bytes, str] | None:
    """(op, sha, spa, tha, tpa) of an Ethernet/IPv4 ARP frame, else None."""
    if len(frame) < 42 or eth_type(frame) != ETHERTYPE_ARP:
        return None
    htype, ptype, hlen, plen, op = struct.unpack_from("!HHBBH", frame, 14)
    if (htype, ptype, hlen, plen) != (1, ETHERTYPE_IP, 6, 4):
        return None
    sha, spa, tha, tpa = struct.unpack_from("!6s4s6s4s", frame, 22)
    return op, sha, ".".join(map(str, spa)), tha, ".".join(map(str, tpa))


def udp_payload(frame: bytes, dport: int) -> bytes | None:
    if len(frame) < 42 or eth_type(frame) != ETHERTYPE_IP or frame[14 + 9] != 17:
        return None
    ihl = (frame[14] & 0x0F) * 4
    udp = 14 + ihl
    sport, dp, ulen = struct.unpack_from("!HHH", frame, udp)
    if dp != dport:
        return None
    return frame[udp + 8: udp + ulen]


def arp_responder(link: Link, ip: str, mac: bytes) -> Callable[[bytes], None]:
    """Answer Linux's who-has for ``ip`` with ``mac`` (hand-built ARP replies)."""
    from scapy.layers.l2 import ARP, Ether

    def respond(frame: bytes) -> None:
        arp = parse_arp(frame)
        if arp is None or arp[0] != 1 or arp[4] != ip:
            return
        _, sha, spa, _, _ = arp
        reply = Ether(dst=sha, src=mac, type=ETHERTYPE_ARP) / ARP(
            op=2, hwsrc=mac, psrc=ip, hwdst=sha, pdst=spa)
        link.drv.transmit(bytes(reply))

    return respond


# -- tests -----------------------------------------------------------------------------
def test_host_features_and_flags() -> None:
    feats = tun_features()
    assert {"IFF_TAP", "IFF_NO_PI"} <= feats
    drv = VirtifDriver(unique_ifname("rnt"))
    try:
        assert drv.host_features() == feats
        flags = drv.host_flags()
        assert {"IFF_TAP", "IFF_NO_PI"} <= flags
        assert "IFF_VNET_HDR" not in flags
        assert drv.vnet_hdr is False and drv.offload_mode == "none"
    finally:
        drv.detach()


def test_vnet_hdr_flag_opens_with_iff_vnet_hdr() -> None:
    if "IFF_VNET_HDR" not in tun_features():
        pytest.skip("host tun has no IFF_VNET_HDR")
    drv = VirtifDriver(unique_ifname("rnt"), vnet_hdr=True)
    try:
        assert "IFF_VNET_HDR" in drv.host_flags()
        assert drv.offload_mode == "none"
    finally:
        drv.detach()


def test_tap_created_up_and_gone_after_detach() -> None:
    name = unique_ifname("rnt")
    assert not link_exists(name)
    drv = VirtifDriver(name)
    try:
        info = link_info(name)
        assert info is not None
        assert info["flags"] & 0x1, "host side of the tap is up"
        assert drv.is_open and not drv.attached
    finally:
        drv.detach()
    assert not link_exists(name)
    drv.detach()  # idempotent
    drv.transmit(bytes(60))  # never raises once closed: counted
    assert drv.oerrors == 1 and drv.opackets == 0


def test_reattach_after_detach_reopens_tap() -> None:
    loop = asyncio.new_event_loop()
    drv = VirtifDriver(unique_ifname("rnt"))
    try:
        drv.attach(_Sched(loop), lambda f: None)
        with pytest.raises(OSError):
            drv.attach(_Sched(loop), lambda f: None)  # EBUSY: one consumer at a time
        drv.detach()
        assert not link_exists(drv.tapname)
        drv.attach(_Sched(loop), lambda f: None)
        assert drv.attached and drv.is_open and link_exists(drv.tapname)
    finally:
        drv.detach()
        loop.close()
    assert not link_exists(drv.tapname)


def test_attach_from_inside_running_loop() -> None:
    """attach() and host set-up work from a loop callback (pyroute2 runs off-loop)."""
    loop = asyncio.new_event_loop()
    try:
        async def main() -> bool:
            drv = VirtifDriver(unique_ifname("rnt"))
            try:
                drv.attach(_Sched(asyncio.get_running_loop()), lambda f: None)
                return drv.attached and link_exists(drv.tapname)
            finally:
                drv.detach()

        assert loop.run_until_complete(main())
    finally:
        loop.close()


def test_linux_arp_request_delivered(link: Link) -> None:
    ns_mac = link.ns_mac()
    if shutil.which("ping"):
        ns_run(link.ns, ["ping", "-c1", "-W1", UNUSED_IP], timeout=10)
    else:  # a UDP datagram to the unused address makes Linux ARP for it as well
        ns_python(link.ns, f"import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM)"
                           f".sendto(b'x', ({UNUSED_IP!r}, 9))", timeout=10)

    def who_has() -> list[tuple[bytes, tuple[int, bytes, str, bytes, str]]]:
        out = []
        for f in link.frames:
            a = parse_arp(f)
            if a is not None and a[0] == 1 and a[4] == UNUSED_IP:
                out.append((f, a))
        return out

    assert link.run_until(lambda: bool(who_has())), f"no ARP who-has in {len(link.frames)} frames"
    frame, (op, sha, spa, tha, tpa) = who_has()[0]
    assert frame[:6] == b"\xff" * 6
    assert frame[6:12] == ns_mac == sha
    assert spa == NS_IP
    assert link.drv.ipackets == len(link.frames) and link.drv.ibytes == sum(map(len, link.frames))


@pytest.mark.parametrize("vnet_hdr", [False, True], ids=["plain", "vnet_hdr"])
def test_udp_broadcast_payload_delivered(vnet_hdr: bool) -> None:
    with virtif_netns(vnet_hdr=vnet_hdr) as link:
        payload = bytes(range(256)) * 4
        ns_python(link.ns, (
            "import socket, sys\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)\n"
            f"s.sendto(bytes(range(256)) * 4, ({BCAST_IP!r}, 4242))\n"), timeout=10, check=True)

        def got() -> list[bytes]:
            return [p for f in link.frames if (p := udp_payload(f, 4242)) is not None]

        assert link.run_until(lambda: bool(got()))
        assert got()[0] == payload
        frame = next(f for f in link.frames if udp_payload(f, 4242) is not None)
        assert frame[:6] == b"\xff" * 6
        # the UDP checksum Linux computed is valid (the vnet path must not leave it partial)
        from scapy.layers.inet import UDP
        from scapy.layers.l2 import Ether

        pkt = Ether(frame)
        chk = pkt[UDP].chksum
        del pkt[UDP].chksum
        assert Ether(bytes(pkt))[UDP].chksum == chk


@pytest.mark.parametrize("vnet_hdr", [False, True], ids=["plain", "vnet_hdr"])
def test_echo_request_answered_by_linux(vnet_hdr: bool) -> None:
    from scapy.layers.inet import ICMP, IP
    from scapy.layers.l2 import ARP, Ether

    with virtif_netns(vnet_hdr=vnet_hdr) as link:
        ns_mac = link.ns_mac()
        link.responder = arp_responder(link, OUR_IP, OUR_MAC)
        # Introduce ourselves: a who-has for Linux's address from 10.99.7.2 makes Linux
        # learn our MAC and answer with an ARP reply.
        who = Ether(dst=b"\xff" * 6, src=OUR_MAC, type=ETHERTYPE_ARP) / ARP(
            op=1, hwsrc=OUR_MAC, psrc=OUR_IP, hwdst=bytes(6), pdst=NS_IP)
        link.drv.transmit(bytes(who))

        def arp_reply() -> bool:
            return any((a := parse_arp(f)) is not None and a[0] == 2 and a[2] == NS_IP and a[4] == OUR_IP
                       for f in link.frames)

        assert link.run_until(arp_reply), "Linux did not answer our ARP request"

        data = b"rumpnet virtif " * 20
        req = (Ether(dst=ns_mac, src=OUR_MAC) / IP(src=OUR_IP, dst=NS_IP, ttl=64)
               / ICMP(type=8, id=0x1234, seq=7) / data)
        sent = link.drv.opackets
        link.drv.transmit(bytes(req))
        assert link.drv.opackets == sent + 1 and link.drv.oerrors == 0

        def echo_reply() -> Ether | None:
            for f in link.frames:
                if eth_type(f) != ETHERTYPE_IP:
                    continue
                p = Ether(f)
                if ICMP in p and p[ICMP].type == 0 and p[ICMP].id == 0x1234:
                    return p
            return None

        assert link.run_until(lambda: echo_reply() is not None), "no echo reply from Linux"
        rep = echo_reply()
        assert rep is not None
        assert bytes.fromhex(rep.dst.replace(":", "")) == OUR_MAC
        assert rep[IP].src == NS_IP and rep[IP].dst == OUR_IP
        assert rep[ICMP].seq == 7 and bytes(rep[ICMP].payload) == data


def test_transmit_many_udp_to_linux_socket(link: Link) -> None:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    n = 200
    ns_mac = link.ns_mac()
    link.responder = arp_responder(link, OUR_IP, OUR_MAC)
    receiver = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)\n"
        f"s.bind(({NS_IP!r}, 5555)); s.settimeout(5)\n"
        "print('ready', flush=True)\n"
        "seen = []\n"
        f"while len(seen) < {n}:\n"
        "    try: seen.append(int(s.recv(2048)[:8]))\n"
        "    except socket.timeout: break\n"
        "print(len(seen), seen == sorted(seen), flush=True)\n"
    )
    with ns_python_popen(link.ns, receiver) as peer:
        assert peer.stdout.readline().strip() == "ready"
        base = Ether(dst=ns_mac, src=OUR_MAC) / IP(src=OUR_IP, dst=NS_IP) / UDP(sport=5556, dport=5555)
        for i in range(n):
            link.drv.transmit(bytes(base / (b"%08d" % i + bytes(100))))
        link.run_for(0.05)  # answer any ARP who-has Linux sends for us
        out, err = peer.communicate(timeout=15)
    assert out.split() == [str(n), "True"], err
    assert link.drv.opackets == n + sum(
        1 for f in link.frames if (a := parse_arp(f)) is not None and a[0] == 1 and a[4] == OUR_IP)
    assert link.drv.oerrors == 0


@pytest.mark.parametrize("batch", [64, 8])
def test_batch_drain(batch: int) -> None:
    n = 300
    with virtif_netns(batch=batch) as link:
        # Linux queues all n frames on the tap while our loop does not run.
        ns_python(link.ns, (
            "import socket\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)\n"
            f"for i in range({n}): s.sendto(b'%06d' % i, ({BCAST_IP!r}, 4243))\n"), timeout=20, check=True)

        def got() -> list[bytes]:
            return [p for f in link.frames if (p := udp_payload(f, 4243)) is not None]

        assert link.run_until(lambda: len(got()) >= n, timeout=10), f"{len(got())} of {n}"
        assert got() == [b"%06d" % i for i in range(n)]
        drv = link.drv
        assert drv.rx_batch_max == batch, "a readiness callback drains at most `batch` frames"
        assert drv.rx_wakeups >= math.ceil(n / batch)
        # batching: far fewer callbacks than frames
        assert drv.rx_wakeups <= math.ceil(len(link.frames) / batch) + 10
        assert drv.ipackets == len(link.frames) and drv.ierrors == 0


def test_namespace_removed_under_attached_driver() -> None:
    """The tap dies with its namespace: the driver stops reading (no busy loop), counts it."""
    with virtif_netns() as link:
        tap = link.tap
        link.ns.remove()
        assert link.run_until(lambda: not link.drv.attached, timeout=2.0)
        assert link.drv.ierrors == 1
        assert isinstance(link.drv.last_error, OSError)
        wakeups = link.drv.rx_wakeups
        link.run_for(0.1)
        assert link.drv.rx_wakeups == wakeups and link.drv.ierrors == 1
        link.drv.transmit(bytes(60))  # counted, not raised
        assert link.drv.oerrors == 1
    assert not link_exists(tap)


def test_cleanup_when_body_raises() -> None:
    names: dict[str, object] = {}
    with pytest.raises(RuntimeError, match="boom"), virtif_netns() as link:
        names["ns"] = link.ns.name
        names["tap"] = link.tap
        names["drv"] = link.drv
        with ns_python_popen(link.ns, "import time; print('up', flush=True); time.sleep(60)") as peer:
            assert peer.stdout.readline().strip() == "up"
            names["pid"] = peer.pid
            assert ns_pids(link.ns.name)
            raise RuntimeError("boom")
    assert not netns_exists(str(names["ns"]))
    assert not link_exists(str(names["tap"]))
    drv = names["drv"]
    assert isinstance(drv, VirtifDriver) and not drv.is_open and not drv.attached
    with pytest.raises(ProcessLookupError):
        import os

        os.kill(int(str(names["pid"])), 0)


def test_cleanup_when_setup_fails() -> None:
    """A failure half-way through set-up (here: configuring a bogus address) still
    removes the namespace and the tap."""
    before = set(_our_netns())
    ns = NetNS("rnt")
    drv: VirtifDriver | None = None
    with pytest.raises(ValueError):
        try:
            ns.create()
            drv = VirtifDriver(unique_ifname("rnt"))
            move_link_to_netns(drv.tapname, ns)
            ns_configure(ns, drv.tapname, "10.99.7.300/24")
        finally:
            if drv is not None:
                drv.detach()
            ns.remove()
    assert drv is not None and not link_exists(drv.tapname)
    assert not netns_exists(ns.name)
    assert set(_our_netns()) == before


def _our_netns() -> list[str]:
    import os

    from rumpnet.testing.netns import list_netns

    return [n for n in list_netns() if n.startswith(f"rnt-{os.getpid()}-")]
