"""Kernel-to-kernel bulk TCP on an in-process wire at 1500 and at 64 KB MTU.

Frames cross the wire as shared ``bytes`` (nothing serialised); a wire takes an MTU up to
65535 - 14 (``ifconfig wire0 mtu 65000``), so TCP's segments become 64 KB frames; a wire
port with ``,tso`` carries TCP superframes at MTU 1500. The test checks correctness only
(SHA-256 of what arrived) and prints the throughput; speed is never asserted (DESIGN.md
section 7).
"""

from __future__ import annotations

import hashlib
import random
import time

import pytest

from rumpnet.if_wire import WIRE_MTU_MAX
from rumpnet.testing.vnet import tcp_transfer

B = "10.0.0.2"
PORT = 7100


@pytest.mark.timeout(180)
@pytest.mark.parametrize("mtu,a_tso,b_tso", [(1500, False, False), (65000, False, False),
                                             (1500, True, True), (1500, True, False)],
                         ids=["mtu1500", "mtu65000", "mtu1500-tso", "mtu1500-tso-to-plain"])
def test_wire_bulk_tcp(vnet, mtu: int, a_tso: bool, b_tso: bool) -> None:
    """``tso``: the port joins with ``linkstr SEGMENT,tso`` (TSO and checksum offload, like
    a veth pair with GSO): the sender's TCP glue sends superframes; a TSO receiver takes
    them whole, a plain one gets them cut into MSS-sized frames by the wire."""
    size = 16 * 1000 * 1000
    a, b = vnet.kernel(51), vnet.kernel(52)
    vnet.attach(a, "wire0", "lan,tso" if a_tso else "lan", "10.0.0.1/24")
    vnet.attach(b, "wire0", "lan,tso" if b_tso else "lan", "10.0.0.2/24")
    for k in (a, b):
        k.ifconfig("wire0", "mtu", str(mtu))
        assert k.ifnet.lookup("wire0").mtu == mtu
    assert a.ifnet.lookup("wire0").offload_mode == ("tso" if a_tso else "none")
    data = random.Random(5).randbytes(size)
    t0 = time.perf_counter()
    got = tcp_transfer(a, b, data, (B, PORT))
    wall = time.perf_counter() - t0
    assert len(got) == size
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    sa, sb = a.inet.tcp.stats, b.inet.tcp.stats
    assert sa.tcps_rcvinternalerr == 0 and sb.tcps_rcvinternalerr == 0
    assert sb.tcps_rcvbadsum == 0
    if a_tso:
        assert a.inet.tcp.tso_superframes > 0
        # a TSO receiver gets superframes (fewer inputs than segments sent)
        assert (sb.tcps_rcvpack < sa.tcps_sndpack // 4) == b_tso
    segs = sa.tcps_sndpack
    print(f"\nwire mtu {mtu}{' tso' if a_tso else ''}{'->tso' if b_tso else ''}: "
          f"{size / wall * 8 / 1e9:.3f} Gbit/s ({size / wall / 1e6:.1f} MB/s), "
          f"{segs} data segments of {size / max(segs, 1):.0f} B avg, "
          f"{sb.tcps_rcvpack} TCP inputs at the receiver, {wall:.2f} s wall")


def test_wire_mtu_limit(vnet) -> None:
    a, _b = vnet.pair(seeds=(53, 54))
    a.ifconfig("wire0", "mtu", str(WIRE_MTU_MAX))
    assert a.ifnet.lookup("wire0").mtu == WIRE_MTU_MAX == 65535 - 14
    with pytest.raises(OSError):
        a.ifconfig("wire0", "mtu", str(WIRE_MTU_MAX + 1))
