"""The network-of-kernels harness: UDP under impairments, counters, partitions, schedules,
captures before/after impairment, bit-for-bit replay from one seed (virtual time)."""

from __future__ import annotations

import errno
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from rumpnet.bpf import PcapReader
from rumpnet.faults.netem import NetemParams
from rumpnet.faults.network import Network

TCPDUMP = shutil.which("tcpdump") or ("/usr/bin/tcpdump" if Path("/usr/bin/tcpdump").exists() else None)


def udp_pair(net: Network, a: str = "a", b: str = "b", port: int = 7) -> tuple[int, int]:
    ha, hb = net.host(a), net.host(b)
    sa = ha.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    sb = hb.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    hb.rump_sys_setsockopt(sb, socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    hb.rump_sys_bind(sb, ("0.0.0.0", port))
    return sa, sb


def drain(host, fd: int) -> list[bytes]:  # noqa: ANN001
    out: list[bytes] = []
    while True:
        try:
            data, _ = host.rump_sys_recvfrom(fd, 65535, socket.MSG_DONTWAIT)
        except OSError as e:
            assert e.errno == errno.EAGAIN
            return out
        out.append(data)


def frames(path: Path | str) -> list[bytes]:
    with PcapReader(str(path)) as r:
        return [f for _, f in r]


def two_hosts(seed: int = 1) -> Network:
    net = Network(seed=seed)
    net.add_host("a")
    net.add_host("b")
    net.add_link("wire", "a", "b")
    return net


def warm_up(net: Network, sa: int, sb: int) -> None:
    """One datagram each way before the impairment, so that ARP is done, and IPv6's own
    start-up traffic on the link (DAD probes, MLD reports) is over before counting."""
    a, b = net.host("a"), net.host("b")
    a.rump_sys_sendto(sa, b"warm", 0, (b.addr(), 7))
    assert b.rump_sys_recvfrom(sb, 100, 0)[0] == b"warm"
    net.run_for(5.0)


def test_addressing_routes_and_forwarding() -> None:
    with Network(seed=2) as net:
        for h in ("a", "b"):
            net.add_host(h)
        net.add_host("r", router=True)
        lan = net.add_link("lan", "a", "r")
        wan = net.add_link("wan", "r", "b", subnet="10.0.9.0/24", addresses={"b": "10.0.9.20"})
        assert (net.host("a").addr(), net.host("r").addr("lan")) == ("10.0.1.1", "10.0.1.2")
        assert net.host("b").addr() == "10.0.9.20" and net.host("r").addr("wan") == "10.0.9.1"
        assert lan.hosts == ["a", "r"] and wan.subnet.prefixlen == 24
        sa, sb = udp_pair(net)
        t0 = net.now()
        lan.impair("delay 10ms")
        net.host("a").rump_sys_sendto(sa, b"via r", 0, ("10.0.9.20", 7))
        data, src = net.host("b").rump_sys_recvfrom(sb, 100, 0)
        assert data == b"via r" and src[0] == "10.0.1.1"
        assert net.now() - t0 >= 0.010 - 1e-6
        assert lan.counters()["delayed"] >= 1


def test_udp_loss_and_duplication_counters_match_what_arrived() -> None:
    with two_hosts(seed=11) as net:
        a, b = net.host("a"), net.host("b")
        sa, sb = udp_pair(net)
        warm_up(net, sa, sb)
        link = net.link("wire")
        before = link.counters("a->b")
        link.impair(loss=0.2, duplicate="10%", direction="a->b")
        n = 500
        for i in range(n):
            a.rump_sys_sendto(sa, i.to_bytes(4, "big"), 0, (b.addr(), 7))
        net.run_for(1.0)
        got = drain(b, sb)
        after = link.counters("a->b")
        d = {k: after[k] - before[k] for k in after}
        assert d["offered"] == n
        assert d["drop_loss"] == d["dropped"] > 50
        assert d["duplicated"] > 20
        # every arrival went through the runner; each duplicate adds a frame and each loss
        # event removes one (a duplicate draws its own loss, as in sch_netem.c)
        assert len(got) == d["sent"] == n + d["duplicated"] - d["drop_loss"]
        assert n - d["drop_loss"] <= len(set(got)) <= n
        assert len(got) - len(set(got)) <= d["duplicated"]
        # the other direction is untouched
        assert link.counters("b->a")["dropped"] == 0


def test_impair_validates_before_changing_anything() -> None:
    with two_hosts() as net:
        link = net.link("wire")
        link.impair("delay 5ms")
        old = [r.params for r in link.runners("both")]
        with pytest.raises(ValueError, match="loss: probability 150% is over 100%"):
            link.impair(delay="1ms", loss=1.5)
        with pytest.raises(ValueError, match="distribution"):
            link.impair(delay="1ms", jitter="1ms", distribution="gauss")
        with pytest.raises(ValueError, match="direction"):
            link.impair("loss 1%", direction="a->c")
        with pytest.raises(ValueError, match="rate"):
            link.impair(rate=-1)
        assert [r.params for r in link.runners("both")] == old
        with pytest.raises(KeyError, match="target"):
            net.partition("nowhere")


def test_partition_then_heal_on_a_schedule() -> None:
    with two_hosts(seed=4) as net:
        a, b = net.host("a"), net.host("b")
        sa, sb = udp_pair(net)
        warm_up(net, sa, sb)
        sch = net.schedule("at 1s partition a-b for 2s")
        t0 = net.now()
        arrived: dict[int, float] = {}
        for i in range(50):  # one datagram every 100 ms, half-way between the ticks
            net.run_for(0.05 if i == 0 else 0.1)
            a.rump_sys_sendto(sa, i.to_bytes(4, "big"), 0, (b.addr(), 7))
        net.run_for(0.5)
        for d in drain(b, sb):
            arrived[int.from_bytes(d, "big")] = 0.0
        sent_at = {i: 0.05 + 0.1 * i for i in range(50)}
        lost = {i for i in sent_at if i not in arrived}
        assert lost == {i for i, t in sent_at.items() if 1.0 < t < 3.0}
        assert [m for _, m in sch.log] == ["Partition()", "undo Partition()"]
        assert [round(t - t0, 6) for t, _ in sch.log] == [1.0, 3.0]
        assert net.link("wire").counters()["drop_partition"] == len(lost)
        assert not net.link("wire").partitioned


def test_schedule_text_targets_and_errors() -> None:
    with Network(seed=1) as net:
        for h in ("a", "b", "c"):
            net.add_host(h)
        net.add_link("lan", "a", ["b", "c"])
        ev = net.parse_schedule("at 1s lan loss 10%; at 2s partition a->b; at 3s heal on a; at 4s delay 5ms for 1s")
        assert [(at, tgt) for at, _, _, tgt in ev] == [(1.0, "lan"), (2.0, "a->b"), (3.0, "a"), (4.0, None)]
        for bad, msg in [("at 1s partition x-y", "not a link, host"), ("at xs loss 1%", "bad time"),
                         ("loss 1%", "statement"), ("at 1s loss 150%", "loss")]:
            with pytest.raises(ValueError, match=msg):
                net.schedule(bad)
        assert net.schedules == []
        net.schedule("at 1s a->* loss 100%")  # everything a sends
        net.run_for(1.5)
        assert net.link("lan").runners("a->*")[0].params.loss == 1.0
        assert net.link("lan").runners("b->*")[0].params.loss == 0.0


def test_pcap_before_and_after_impairment(tmp_path: Path) -> None:
    with two_hosts(seed=3) as net:
        a, b = net.host("a"), net.host("b")
        sa, sb = udp_pair(net)
        warm_up(net, sa, sb)
        net.link("wire").impair("loss 100%", direction="a->b")
        pb, pa = tmp_path / "before.pcap", tmp_path / "after.pcap"
        pif_b, pif_a = tmp_path / "if_before.pcap", tmp_path / "if_after.pcap"
        caps = [net.pcap("wire", pb, before_impairment=True), net.pcap("wire", pa),
                net.pcap("a:wire0", pif_b, before_impairment=True), net.pcap("a:wire", pif_a)]
        for i in range(10):
            a.rump_sys_sendto(sa, b"x%d" % i, 0, (b.addr(), 7))
        net.run_for(1.0)
        for c in caps:
            c.close()
        assert drain(b, sb) == []
        assert net.link("wire").counters("a->b")["drop_loss"] == 10  # netem lost them, nothing else
        before = frames(pb)
        after = frames(pa)
        assert len(before) == 10 and after == []
        assert all(f[23] == socket.IPPROTO_UDP for f in before)
        assert len(frames(pif_b)) == 10 and frames(pif_a) == []
        if TCPDUMP:
            out = subprocess.run([TCPDUMP, "-nr", str(pb)], capture_output=True, text=True, timeout=30)
            assert out.returncode == 0, out.stderr
            assert out.stdout.count("UDP") == 10 and "10.0.1.1" in out.stdout
            out = subprocess.run([TCPDUMP, "-nr", str(pa)], capture_output=True, text=True, timeout=30)
            assert out.returncode == 0 and out.stdout == ""
        scapy_all = pytest.importorskip("scapy.all")
        pkts = scapy_all.rdpcap(str(pb))
        assert len(pkts) == 10 and all(p.haslayer(scapy_all.UDP) for p in pkts)
        assert pkts[0][scapy_all.IP].dst == b.addr()


def test_pcap_filter_and_counters_with_rate(tmp_path: Path) -> None:
    with two_hosts(seed=3) as net:
        a, b = net.host("a"), net.host("b")
        sa, sb = udp_pair(net)
        warm_up(net, sa, sb)
        net.link("wire").impair(rate="80kbit", direction="a->b")  # 10 KB/s
        with net.pcap("wire", tmp_path / "u.pcap", filter="udp") as cap:
            t0 = net.now()
            for _ in range(10):
                a.rump_sys_sendto(sa, bytes(958), 0, (b.addr(), 7))  # 1000-byte frames
            got = 0
            while got < 10:
                b.rump_sys_recvfrom(sb, 2000, 0)
                got += 1
            took = net.now() - t0
        assert cap.frames == 10
        assert took == pytest.approx(1.0, abs=0.01)


def exchange(seed: int, path: Path) -> bytes:
    """A UDP echo exchange under loss + reordering + duplication, captured on the wire."""
    with two_hosts(seed=seed) as net:
        a, b = net.host("a"), net.host("b")
        sa, sb = udp_pair(net)
        net.link("wire").impair("delay 10ms 5ms loss 10% duplicate 10% reorder 25% 50%")
        with net.pcap("wire", path):
            for i in range(60):
                a.rump_sys_sendto(sa, b"ping %d" % i, 0, (b.addr(), 7))
                net.run_for(0.002)
            net.run_for(0.5)
            while True:
                try:
                    data, src = b.rump_sys_recvfrom(sb, 100, socket.MSG_DONTWAIT)
                except OSError:
                    break
                b.rump_sys_sendto(sb, data.replace(b"ping", b"pong"), 0, src)
            net.run_for(0.5)
        return path.read_bytes()


def test_same_seed_same_pcap_bytes(tmp_path: Path) -> None:
    one = exchange(21, tmp_path / "1.pcap")
    two = exchange(21, tmp_path / "2.pcap")
    other = exchange(22, tmp_path / "3.pcap")
    assert len(one) > 24 + 60 * 16
    assert one == two
    assert one != other


def test_reordering_shows_in_the_capture(tmp_path: Path) -> None:
    with two_hosts(seed=5) as net:
        a, b = net.host("a"), net.host("b")
        sa, sb = udp_pair(net)
        warm_up(net, sa, sb)
        net.link("wire").impair("delay 20ms reorder 30%", direction="a->b")
        with net.pcap("wire", tmp_path / "r.pcap", filter="udp") as _:
            for i in range(40):
                a.rump_sys_sendto(sa, i.to_bytes(4, "big"), 0, (b.addr(), 7))
                net.run_for(0.001)
            net.run_for(0.2)
        seqs = [int.from_bytes(f[42:46], "big") for f in frames(tmp_path / "r.pcap")]
        assert sorted(seqs) == list(range(40)) and seqs != sorted(seqs)
        assert net.link("wire").counters("a->b")["reordered"] > 0
        assert [int.from_bytes(d, "big") for d in drain(b, sb)] == seqs


def test_tc_sees_the_link_runners() -> None:
    with two_hosts() as net:
        net.link("wire").impair("delay 10ms loss 1%")
        r = net.host("a").kernel.ifnet.lookup("wire0").qdisc("egress")
        assert r is net.link("wire").runners("a->b")[0]
        assert r.params == NetemParams(delay=0.01, loss=0.01)


def test_one_way_faults_on_a_shared_segment() -> None:
    with Network(seed=6) as net:
        for h in ("a", "b", "c"):
            net.add_host(h)
        net.add_link("lan", "a", ["b", "c"])
        sa, sb = udp_pair(net, "a", "b")
        sc = net.host("c").rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
        net.host("c").rump_sys_bind(sc, ("0.0.0.0", 7))
        a = net.host("a")
        for dst in ("b", "c"):  # ARP first
            a.rump_sys_sendto(sa, b"warm", 0, (net.host(dst).addr(), 7))
        net.run_for(5.0)  # and IPv6's start-up traffic (DAD, MLD reports) over
        drain(net.host("b"), sb), drain(net.host("c"), sc)
        net.impair("*->c", loss=1.0)
        assert net.link("lan").runners("a->c") == net.link("lan").runners("*->c")
        for dst in ("b", "c"):
            a.rump_sys_sendto(sa, b"to " + dst.encode(), 0, (net.host(dst).addr(), 7))
        net.run_for(0.1)
        assert drain(net.host("b"), sb) == [b"to b"]
        assert drain(net.host("c"), sc) == []
        assert net.link("lan").counters("*->c")["drop_loss"] == 1
        assert net.link("lan").counters()["drop_loss"] == 1  # ingress drops count on the link too


def test_match_ip6_drops_ipv6_only_and_counts_by_family() -> None:
    """``match ip6`` on a->b: IPv6 datagrams are dropped and counted under drop_match and
    offered_ip6, IPv4 ones on the same link pass (offered_ip == sent_ip)."""
    with two_hosts(seed=5) as net:
        a, b = net.host("a"), net.host("b")
        for h, addr in ((a, "fc00::1"), (b, "fc00::2")):
            h.kernel.ifconfig(h.ifname(), "inet6", f"{addr}/64")
            h.kernel.ifconfig("-w", "10")
        sa, sb = udp_pair(net)
        sa6 = a.rump_sys_socket(socket.AF_INET6, socket.SOCK_DGRAM, 0)
        sb6 = b.rump_sys_socket(socket.AF_INET6, socket.SOCK_DGRAM, 0)
        b.rump_sys_bind(sb6, ("fc00::2", 7, 0, 0))
        a.rump_sys_sendto(sa6, b"warm6", 0, ("fc00::2", 7, 0, 0))     # ND done before counting
        assert b.rump_sys_recvfrom(sb6, 100, 0)[0] == b"warm6"
        warm_up(net, sa, sb)
        link = net.link("wire")
        link.impair("match ip6", direction="a->b")
        before = link.counters("a->b")
        n = 20
        for _ in range(n):
            a.rump_sys_sendto(sa, b"4", 0, (b.addr(), 7))
            a.rump_sys_sendto(sa6, b"6", 0, ("fc00::2", 7, 0, 0))
        net.run_for(1.0)
        d = {k: v - before[k] for k, v in link.counters("a->b").items()}
        assert len(drain(b, sb)) == n and drain(b, sb6) == []
        assert d["offered_ip"] == d["sent_ip"] == n
        assert d["offered_ip6"] == d["drop_match"] == d["dropped"] == n and d["sent_ip6"] == 0
        assert d["offered"] == d["offered_ip"] + d["offered_ip6"]
        assert "match ip6" in a.kernel.tc("qdisc", "show", "dev", a.ifname())
