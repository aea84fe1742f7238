"""ECN kernel to kernel on virtual time (RFC 3168; tcp_ecn, netem's ``ecn``).

* On the wire: the handshake negotiates (ECN-setup SYN, ECN-setup SYN-ACK), data frames
  are ECT(0) and nothing else is; IP_TOS keeps its DSCP bits and loses its ECN bits to
  TCP's; the IP header checksum is right on the route-cache path and the full one.
* Through netem with ``loss 2% ecn`` on the data direction: every loss event marks CE
  instead of dropping (all data is ECT), so the sender reduces cwnd on ECE and resends
  nothing; goodput is at least the Mathis bound at the marking rate for a receiver that
  delays its ACKs, MSS/RTT * C/sqrt(p) with C = sqrt(3/(2b)), b = 2 segments per ACK
  (Mathis et al. 1997; the response to CE is the response to a loss). On virtual time
  and one seed the run is deterministic: this is not a timing assertion.
"""

from __future__ import annotations

import hashlib
import math
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_faults_tcp import pattern, transfer

from rumpnet.bpf import PcapReader
from rumpnet.faults.network import Network
from rumpnet.netinet import tcp as tcpw
from rumpnet.netinet.in_cksum import in_cksum

RTT = 0.010
MARK = 0.02
SMSS = 1448                  # 1460 less the timestamp option


def _net(seed: int, impair_ab: str) -> Iterator[Network]:
    """Hosts a and b with ECN on (ecn.enable=1), a wire between them: ``impair_ab`` on
    the data direction, 5 ms on the other."""
    n = Network(seed=seed)
    try:
        n.add_host("a")
        n.add_host("b")
        n.add_link("wire", "a", "b")
        n.link("wire").impair(impair_ab, direction="a->b")
        n.link("wire").impair(f"delay {RTT / 2 * 1000:g}ms", direction="b->a")
        for h in ("a", "b"):
            n.host(h).sysctl("-w", "net.inet.tcp.ecn.enable=1")
        yield n
    finally:
        n.close()


@pytest.fixture
def clean() -> Iterator[Network]:
    yield from _net(5, f"delay {RTT / 2 * 1000:g}ms")


@pytest.fixture
def marking() -> Iterator[Network]:
    yield from _net(17, f"delay {RTT / 2 * 1000:g}ms loss {MARK * 100:g}% ecn")


def _frames(path: Path) -> list[tuple[int, str, tcpw.TcpRepr]]:
    """(IP TOS, source address, TCP segment) of every IPv4 TCP frame in a pcap, each IP
    header checksum checked."""
    out = []
    with PcapReader(path) as rd:
        for _, frame in rd:
            if len(frame) < 54 or frame[12:14] != b"\x08\x00" or frame[23] != 6:
                continue
            ihl = (frame[14] & 0x0F) * 4
            assert in_cksum(frame[14:14 + ihl]) == 0, "IP header checksum"
            ip_len = struct.unpack_from("!H", frame, 16)[0]
            seg = tcpw.parse(frame[14 + ihl:14 + ip_len], csum_ok=True)
            out.append((frame[15], socket.inet_ntoa(frame[26:30]), seg))
    return out


@pytest.mark.parametrize("tos", [None, 0x28, 0x2B])
def test_ect0_on_data_frames_only(clean: Network, tmp_path: Path, tos: int | None) -> None:
    """With IP_TOS unset the route cache carries the codepoint; with IP_TOS set the full
    ip_output does, keeping DSCP (0x28, AF11) and replacing the user's ECN bits (0x2B)."""
    a, b = clean.host("a"), clean.host("b")
    cap = tmp_path / "w.pcap"
    tap = clean.pcap("a:wire", cap, filter="tcp")
    data = pattern(300_000)
    got = transfer(clean, data, tos=tos)
    tap.close()
    assert got == data
    dscp = (tos or 0) & ~3
    frames = [f for f in _frames(cap) if f[1] == a.addr()]
    syn = [s for t, _, s in frames if s.flags & tcpw.TH_SYN]
    assert syn and syn[0].flags & (tcpw.TH_ECE | tcpw.TH_CWR) == tcpw.TH_ECE | tcpw.TH_CWR
    synack = [s for t, src, s in _frames(cap) if src == b.addr() and s.flags & tcpw.TH_SYN]
    assert synack[0].flags & (tcpw.TH_ECE | tcpw.TH_CWR) == tcpw.TH_ECE
    new = seen = 0
    for t, _, s in frames:
        end = s.seq + len(s.payload)
        if s.payload and end > seen:
            assert t == dscp | 2, (hex(t), s)         # new data: ECT(0)
            new += 1
            seen = end
        else:
            assert t == dscp, (hex(t), s)             # SYN, ACKs, FIN, resends: Not-ECT
    assert new > 100
    # Most data left TCP as superframes (net.inet.tcp.gso) that IP cut: each piece ECT(0)
    # (checked above), each counted as one ECT(0) segment sent.
    assert a.kernel.inet.tcp.tso_superframes > 0
    assert a.kernel.inet.tcp.stats.tcps_ecn_sndect0 == new
    assert a.kernel.inet.tcp.stats.tcps_ecn_shs == 1 == b.kernel.inet.tcp.stats.tcps_ecn_shs
    assert b.kernel.inet.tcp.stats.tcps_ecn_ect >= new


@pytest.mark.parametrize("congctl", ["newreno", "cubic"])
def test_ce_marks_reduce_cwnd_and_resend_nothing(marking: Network, congctl: str) -> None:
    a, b = marking.host("a"), marking.host("b")
    for h in (a, b):
        h.sysctl("-w", f"net.inet.tcp.congctl={congctl}")
    data = pattern(4_000_000)
    t0 = marking.now()
    got = transfer(marking, data)
    elapsed = marking.now() - t0
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    wire = marking.link("wire").counters("a->b")
    sa, sb = a.kernel.inet.tcp.stats, b.kernel.inet.tcp.stats
    assert wire["ecn_marked"] > 30                         # the path did mark ~2%
    # ... and dropped no IPv4 packet (the hosts' IPv6 ND and MLD packets are Not-ECT: a
    # loss event on one of them drops it)
    assert wire["sent_ip"] == wire["offered_ip"]
    assert sb.tcps_ecn_ce == wire["ecn_marked"]            # every mark reached TCP
    assert sa.tcps_ecn_rcwnd > 10                          # the sender reacted ...
    assert sa.tcps_sndrexmitpack == 0 and sa.tcps_rexmttimeo == 0   # ... resending nothing
    assert sa.tcps_ecn_sndcwr == sa.tcps_ecn_rcwnd        # one CWR per reduction
    shown = a.kernel.netstat("-s", "-p", "tcp")
    assert f"\t{sa.tcps_ecn_rcwnd} congestion window reductions for ECN-Echo\n" in shown
    assert f"\t{sb.tcps_ecn_ce} packets with ECN CE bit\n" in b.kernel.netstat("-s", "-p", "tcp")
    mathis = SMSS / RTT * math.sqrt(3 / 4) / math.sqrt(MARK)   # bytes per second, b = 2
    goodput = len(data) / elapsed
    assert goodput >= mathis, (goodput, mathis, sa.as_dict())


def test_router_marks_and_forwards_ecn(tmp_path: Path) -> None:
    """A rumpnet router forwards ECT and CE unchanged (TTL decremented, checksum right),
    and its own netem marks (``loss 3% ecn`` on its egress toward b): b counts every mark,
    a reduces cwnd and resends nothing."""
    n = Network(seed=23)
    try:
        n.add_host("a")
        n.add_host("r", router=True)
        n.add_host("b")
        n.add_link("lan1", "a", "r", subnet="10.0.1.0/24")
        n.add_link("lan2", "r", "b", subnet="10.0.2.0/24")
        n.link("lan1").impair("delay 2500us")
        n.link("lan2").impair("delay 2500us loss 3% ecn", direction="r->b")
        n.link("lan2").impair("delay 2500us", direction="b->r")
        for h in ("a", "b"):
            n.host(h).sysctl("-w", "net.inet.tcp.ecn.enable=1")
        cap = tmp_path / "b.pcap"
        tap = n.pcap("b:lan2", cap, filter="tcp")
        data = pattern(1_000_000)
        assert transfer(n, data) == data
        tap.close()
        a, r, b = n.host("a"), n.host("r"), n.host("b")
        marks = n.link("lan2").counters("r->b")["ecn_marked"]
        sa, sb = a.kernel.inet.tcp.stats, b.kernel.inet.tcp.stats
        assert marks > 5 and sb.tcps_ecn_ce == marks
        assert sa.tcps_ecn_rcwnd > 0 and sa.tcps_sndrexmitpack == 0
        assert r.kernel.inet.ipstat.ips_forward > 500
        data_frames = [(t, s) for t, src, s in _frames(cap) if src == a.addr() and s.payload]
        assert len(data_frames) > 500                      # (each header checksum checked)
        assert all(t & 3 in (2, 3) for t, _ in data_frames)
        assert sum(t & 3 == 3 for t, _ in data_frames) == marks
    finally:
        n.close()
