"""Loss recovery kernel to kernel on virtual time (issue 13): a wire with 5 ms each way and
2% loss on the data direction.

* Goodput at least the Mathis bound for Reno, MSS/RTT * 1.22/sqrt(p) (Mathis et al.,
  "The macroscopic behavior of the TCP congestion avoidance algorithm", 1997): on virtual
  time and one seed the run is deterministic, so this is not a timing assertion.
* The sender's counters agree with the frames on the wire (a capture of what it sent,
  before the loss): tcps_sndtotal with every TCP frame, tcps_sndpack +
  tcps_sndrexmitpack with every one that carries data, GSO superframes included.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_faults_tcp import pattern, transfer

from rumpnet.bpf import PcapReader
from rumpnet.faults.network import Network

RTT = 0.010
LOSS = 0.02
SMSS = 1448                  # 1460 less the timestamp option


@pytest.fixture
def lossy() -> Iterator[Network]:
    n = Network(seed=17)
    n.add_host("a")
    n.add_host("b")
    n.add_link("wire", "a", "b")
    n.link("wire").impair(f"delay {RTT / 2 * 1000:g}ms loss {LOSS * 100:g}%", direction="a->b")
    n.link("wire").impair(f"delay {RTT / 2 * 1000:g}ms", direction="b->a")
    try:
        yield n
    finally:
        n.close()


def _tcp_frames(path: Path, src: str) -> tuple[int, int]:
    """(TCP frames from ``src``, those with payload) in a pcap of Ethernet frames."""
    want = bytes(int(x) for x in src.split("."))
    total = data = 0
    with PcapReader(path) as rd:
        for _, frame in rd:
            if len(frame) < 54 or frame[12:14] != b"\x08\x00" or frame[23] != 6 or frame[26:30] != want:
                continue
            ihl = (frame[14] & 0x0F) * 4
            ip_len = struct.unpack_from("!H", frame, 16)[0]
            off = (frame[14 + ihl + 12] >> 4) * 4
            total += 1
            data += ip_len - ihl - off > 0
    return total, data


@pytest.mark.parametrize("congctl", ["newreno", "cubic"])
def test_goodput_at_least_the_mathis_bound(lossy: Network, congctl: str, tmp_path: Path) -> None:
    a, b = lossy.host("a"), lossy.host("b")
    for h in (a, b):
        h.sysctl("-w", f"net.inet.tcp.congctl={congctl}")
    cap = tmp_path / "a.pcap"
    tap = lossy.pcap("a:wire", cap, before_impairment=True, filter="tcp")
    data = pattern(4_000_000)
    t0 = lossy.now()
    got = transfer(lossy, data)
    elapsed = lossy.now() - t0
    tap.close()
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    mathis = SMSS / RTT * 1.22 / math.sqrt(LOSS)           # bytes per second
    goodput = len(data) / elapsed
    st = a.kernel.inet.tcp.stats
    wire = lossy.link("wire").counters("a->b")
    assert wire["drop_loss"] > 30                           # the path did lose 2%
    assert goodput >= mathis, (goodput, mathis, st.as_dict())
    # Recovery without timeouts: RACK-TLP repairs the tail too.
    assert st.tcps_rexmttimeo == 0, st.as_dict()
    # Counters agree with the wire.
    total, with_data = _tcp_frames(cap, a.addr())
    assert st.tcps_sndtotal == total
    assert st.tcps_sndpack + st.tcps_sndrexmitpack == with_data
