"""pcap files and the bpf-like filter (rumpnet/bpf.py)."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw
from scapy.utils import rdpcap

from rumpnet.bpf import BpfTap, PcapReader, PcapWriter, compile_filter

MAC_A = "02:00:00:00:00:0a"
MAC_B = "02:00:00:00:00:0b"


def eth(payload: object, src: str = MAC_A, dst: str = MAC_B) -> bytes:
    return bytes(Ether(src=src, dst=dst) / payload)  # type: ignore[operator]


def frames() -> dict[str, bytes]:
    return {
        "arp_req": bytes(Ether(src=MAC_A, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=MAC_A, psrc="10.0.0.1", pdst="10.0.0.2")),
        "icmp_echo": eth(IP(src="10.0.0.1", dst="10.0.0.2") / ICMP(type=8) / b"ping"),
        "icmp_reply": eth(IP(src="10.0.0.2", dst="10.0.0.1") / ICMP(type=0) / b"ping", MAC_B, MAC_A),
        "udp_dns": eth(IP(src="10.0.0.1", dst="10.0.1.53") / UDP(sport=5000, dport=53) / b"q"),
        "tcp_syn": eth(IP(src="10.0.0.1", dst="192.168.1.1") / TCP(sport=1234, dport=80, flags="S")),
        "tcp_synack": eth(IP(src="192.168.1.1", dst="10.0.0.1") / TCP(sport=80, dport=1234, flags="SA"), MAC_B, MAC_A),
        "tcp_rst": eth(IP(src="10.0.0.1", dst="192.168.1.1") / TCP(sport=1234, dport=80, flags="R")),
        "tcp_ack": eth(IP(src="10.0.0.1", dst="192.168.1.1") / TCP(sport=1234, dport=80, flags="A") / b"x"),
        # second fragment of a UDP datagram: no ports in it
        "udp_frag2": eth(IP(src="10.0.0.1", dst="10.0.1.53", proto=17, frag=10) / Raw(b"\x13\x88\x00\x35" * 4)),
    }


# --------------------------------------------------------------------------- pcap files


def test_pcap_written_is_read_by_scapy(tmp_path: Path) -> None:
    path = tmp_path / "a.pcap"
    fs = list(frames().values())
    with PcapWriter(path) as w:
        for i, f in enumerate(fs):
            w.write(f, 1_000_000_000.0 + i * 0.001 + 0.000123)
    pkts = rdpcap(str(path))
    assert len(pkts) == len(fs)
    for i, (p, f) in enumerate(zip(pkts, fs, strict=True)):
        assert bytes(p) == f
        assert abs(float(p.time) - (1_000_000_000.0 + i * 0.001 + 0.000123)) < 1e-6
    assert pkts[1].haslayer(ICMP)


def test_pcap_header_fields(tmp_path: Path) -> None:
    buf = io.BytesIO()
    w = PcapWriter(buf)
    w.write(b"\x00" * 20, 1.5)
    w.close()
    raw = buf.getvalue()
    assert raw[:4] == bytes.fromhex("d4c3b2a1")  # 0xa1b2c3d4 little-endian
    assert raw[4:8] == b"\x02\x00\x04\x00"
    assert int.from_bytes(raw[16:20], "little") == 262144
    assert int.from_bytes(raw[20:24], "little") == 1
    # record: sec 1, usec 500000, caplen 20, len 20
    assert raw[24:40] == (1).to_bytes(4, "little") + (500000).to_bytes(4, "little") + (20).to_bytes(4, "little") * 2
    assert not buf.closed  # a file object passed in is not closed


def test_pcap_deterministic(tmp_path: Path) -> None:
    fs = list(frames().values())
    for name in ("a.pcap", "b.pcap"):
        with PcapWriter(tmp_path / name) as w:
            for i, f in enumerate(fs):
                w.write(memoryview(f), 1_000_000_000.25 + i / 7)
    assert (tmp_path / "a.pcap").read_bytes() == (tmp_path / "b.pcap").read_bytes()


def test_pcap_reader_roundtrip_and_truncation(tmp_path: Path) -> None:
    path = tmp_path / "t.pcap"
    fs = list(frames().values())
    with PcapWriter(path) as w:
        for i, f in enumerate(fs):
            w.write(f, 100.0 + i)
    got = list(PcapReader(path))
    assert [f for _, f in got] == fs
    assert [ts for ts, _ in got] == [100.0 + i for i in range(len(fs))]
    data = path.read_bytes()
    path.write_bytes(data[:-3])  # cut the last record short
    with PcapReader(path) as r:
        got = list(r)
        assert r.truncated
    assert [f for _, f in got] == fs[:-1]


def test_pcap_reader_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="not a pcap file"):
        PcapReader(io.BytesIO(b"\x00" * 64))
    with pytest.raises(ValueError, match="truncated"):
        PcapReader(io.BytesIO(b"\xd4\xc3"))


def test_pcap_snaplen_truncates(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with PcapWriter(buf, snaplen=64) as w:
        w.write(b"\xab" * 100, 0.0)
    buf.seek(0)
    ((_, f),) = list(PcapReader(buf))
    assert f == b"\xab" * 64


def test_pcap_read_by_tcpdump(tmp_path: Path) -> None:
    tcpdump = shutil.which("tcpdump") or next((p for p in ("/usr/sbin/tcpdump", "/usr/bin/tcpdump") if Path(p).exists()), None)
    if tcpdump is None:
        pytest.skip("tcpdump is not installed")
    path = tmp_path / "td.pcap"
    fs = frames()
    with PcapWriter(path) as w:
        for i, f in enumerate(fs.values()):
            w.write(f, 1_700_000_000.0 + i)
    res = subprocess.run([tcpdump, "-n", "-r", str(path)], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert len(lines) == len(fs)
    assert "ARP" in lines[0] and "10.0.0.2" in lines[0]
    assert "ICMP echo request" in lines[1]
    assert "10.0.1.53.53" in lines[3]
    # and tcpdump's own filter agrees with ours on the same file
    res = subprocess.run(
        [tcpdump, "-n", "-r", str(path), "tcp[tcpflags] & tcp-syn != 0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode == 0, res.stderr
    flt = compile_filter("tcp[tcpflags] & tcp-syn != 0")
    assert len(res.stdout.strip().splitlines()) == sum(map(flt, fs.values())) == 2


# --------------------------------------------------------------------------- the filter

CASES: list[tuple[str, set[str]]] = [
    ("arp", {"arp_req"}),
    ("ip", set(frames()) - {"arp_req"}),
    ("icmp", {"icmp_echo", "icmp_reply"}),
    ("udp", {"udp_dns", "udp_frag2"}),
    ("tcp", {"tcp_syn", "tcp_synack", "tcp_rst", "tcp_ack"}),
    ("host 10.0.0.2", {"arp_req", "icmp_echo", "icmp_reply"}),
    ("ip host 10.0.0.2", {"icmp_echo", "icmp_reply"}),
    ("src host 10.0.0.2", {"icmp_reply"}),
    ("dst host 10.0.0.2", {"arp_req", "icmp_echo"}),
    ("net 10.0.1.0/24", {"udp_dns", "udp_frag2"}),
    ("net 192.168.1.0 mask 255.255.255.0", {"tcp_syn", "tcp_synack", "tcp_rst", "tcp_ack"}),
    ("dst net 192.168", {"tcp_syn", "tcp_rst", "tcp_ack"}),
    ("port 53", {"udp_dns"}),
    ("udp port 53", {"udp_dns"}),
    ("tcp port 53", set()),
    ("port 80", {"tcp_syn", "tcp_synack", "tcp_rst", "tcp_ack"}),
    ("src port 80", {"tcp_synack"}),
    ("dst port 80", {"tcp_syn", "tcp_rst", "tcp_ack"}),
    ("tcp dst port http", {"tcp_syn", "tcp_rst", "tcp_ack"}),
    ("portrange 50-60", {"udp_dns"}),
    ("icmp or udp port 53", {"icmp_echo", "icmp_reply", "udp_dns"}),
    ("ether host " + MAC_A, set(frames())),
    ("ether src " + MAC_B, {"icmp_reply", "tcp_synack"}),
    ("ether dst " + MAC_A, {"icmp_reply", "tcp_synack"}),
    ("ether broadcast", {"arp_req"}),
    ("ether multicast", {"arp_req"}),
    ("tcp-syn", {"tcp_syn", "tcp_synack"}),
    ("tcp-rst", {"tcp_rst"}),
    ("tcp[tcpflags] & tcp-syn != 0", {"tcp_syn", "tcp_synack"}),
    ("tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn", {"tcp_syn"}),
    ("tcp[13] = 0x12", {"tcp_synack"}),
    ("icmp[icmptype] == icmp-echo", {"icmp_echo"}),
    ("icmp[icmptype] != icmp-echo", {"icmp_reply"}),
    ("tcp[2:2] = 80", {"tcp_syn", "tcp_rst", "tcp_ack"}),
    ("ether[12:2] = 0x0806", {"arp_req"}),
    ("ip proto 17", {"udp_dns", "udp_frag2"}),
    ("ether proto 0x0806", {"arp_req"}),
    ("ether proto \\arp", {"arp_req"}),
    ("ether proto \\ip and not icmp", set(frames()) - {"arp_req", "icmp_echo", "icmp_reply"}),
    ("ip6", set()),
    ("ip proto \\icmp", {"icmp_echo", "icmp_reply"}),
    ("not ip", {"arp_req"}),
    ("! tcp and ! arp", {"icmp_echo", "icmp_reply", "udp_dns", "udp_frag2"}),
    ("tcp && (tcp-rst || src port 80)", {"tcp_rst", "tcp_synack"}),
    ("not (port 80 or arp) and host 10.0.0.1", {"icmp_echo", "icmp_reply", "udp_dns", "udp_frag2"}),
    ("tcp and not tcp-syn and dst port 80", {"tcp_rst", "tcp_ack"}),
    ("10.0.0.2", {"arp_req", "icmp_echo", "icmp_reply"}),
    ("src 10.0.0.2", {"icmp_reply"}),
    ("src or dst host 10.0.1.53", {"udp_dns", "udp_frag2"}),
    ("greater 60", {"icmp_reply", "icmp_echo", "tcp_ack", "udp_frag2"}),
    ("less 60", {"arp_req", "udp_dns", "tcp_syn", "tcp_synack", "tcp_rst"}),
    ("", set(frames())),
]


@pytest.mark.parametrize(("expr", "expected"), CASES, ids=[c[0] or "<empty>" for c in CASES])
def test_filter_matches(expr: str, expected: set[str]) -> None:
    fs = frames()
    flt = compile_filter(expr)
    got = {name for name, f in fs.items() if flt(f)}
    if expr.startswith(("greater", "less")):
        # depends on scapy's exact frame sizes; check against the lengths instead
        n = int(expr.split()[1])
        expected = {k for k, f in fs.items() if (len(f) >= n if expr.startswith("greater") else len(f) <= n)}
    assert got == expected
    assert all(flt(memoryview(f)) == (name in got) for name, f in fs.items())


@pytest.mark.parametrize(
    "expr",
    [
        "foo",
        "host",
        "host 10.0.0",
        "host 300.1.1.1",
        "port 70000",
        "net 10.0.0.1/24",
        "net 10.0.0.0/33",
        "(tcp",
        "tcp)",
        "tcp and",
        "and tcp",
        "ether host 02:00:00",
        "ether",
        "tcp[tcpflags] & tcp-syn",
        "tcp[13:3] = 1",
        "tcp[foo] = 1",
        "icmp port 7",
        "tcp $ udp",
        "tcp udp",
        "ether proto 0x10000",
        "ether proto foo",
    ],
)
def test_filter_errors(expr: str) -> None:
    with pytest.raises(ValueError) as ei:
        compile_filter(expr)
    assert expr in str(ei.value) or "bad" in str(ei.value)


@pytest.mark.parametrize(
    "expr",
    [
        "arp",
        "ip",
        "icmp",
        "tcp",
        "udp",
        "host 10.0.0.1",
        "net 10.0.0.0/8",
        "port 80",
        "src port 1",
        "ether host 02:00:00:00:00:0a",
        "ether broadcast",
        "tcp-syn",
        "tcp[tcpflags] & tcp-syn != 0",
        "icmp[icmptype] == 8",
        "ip[0] & 0xf0 == 0x40",
        "ether[100:4] = 1",
        "not tcp",
    ],
)
def test_filter_never_raises_on_malformed(expr: str) -> None:
    flt = compile_filter(expr)
    base = frames()["tcp_syn"]
    junk = [
        b"",
        b"\x00",
        b"\xff" * 13,
        base[:14],
        base[:20],
        base[:34],
        base[:40],
        base[:14] + b"\x4f" + b"\x00" * 10,  # IHL 15 pointing past the end
        base[:14] + b"\x60" + base[15:],  # version 6 in an IPv4 ethertype
        bytes(range(256)) * 3,
    ]
    for f in junk:
        assert flt(f) in (True, False)
        assert flt(memoryview(f)) in (True, False)


def test_filter_short_ip_header_does_not_match_port() -> None:
    f = frames()["tcp_syn"]
    flt = compile_filter("port 80")
    assert flt(f)
    assert not flt(f[:36])  # ports cut off


# --------------------------------------------------------------------------- the tap


def test_bpf_tap_filters_and_timestamps(tmp_path: Path) -> None:
    now = [1_000_000_000.0]
    path = tmp_path / "tap.pcap"
    writer = PcapWriter(path)
    tap = BpfTap(writer, "icmp", clock=lambda: now[0])
    for i, f in enumerate(frames().values()):
        now[0] = 1_000_000_000.0 + i * 0.5
        tap.tap(f)
    tap.close()
    assert tap.bs_recv == len(frames())
    assert tap.bs_capt == 2
    pkts = rdpcap(str(path))
    assert [bytes(p) for p in pkts] == [frames()["icmp_echo"], frames()["icmp_reply"]]
    assert [float(p.time) for p in pkts] == [1_000_000_000.5, 1_000_000_001.0]


def test_bpf_tap_without_filter_and_with_callable() -> None:
    buf = io.BytesIO()
    w = PcapWriter(buf)
    tap = BpfTap(w, None, clock=lambda: 5.0)
    tap.tap(b"\x01" * 14)
    tap2 = BpfTap(w, lambda b: False, clock=lambda: 5.0)
    tap2(b"\x02" * 14)
    w.close()
    buf.seek(0)
    assert [f for _, f in PcapReader(buf)] == [b"\x01" * 14]
    assert tap.bs_capt == 1 and tap2.bs_capt == 0 and tap2.bs_recv == 1


def test_bpf_tap_counts_writer_failure() -> None:
    w = PcapWriter(io.BytesIO())
    w.close()
    tap = BpfTap(w, clock=lambda: 0.0)
    tap.tap(b"\x00" * 14)
    assert tap.bs_drop == 1 and tap.bs_capt == 0
