"""Qdiscs on lo0 act as on any interface (issue 13, part 6): loopback output goes through
lo0's ``transmit_frame`` and comes back through its input, so netem delays and drops
loopback traffic in either direction, bpf sees it and the counters count it. Before the
fix a netem qdisc on lo0 was shown by ``tc`` but loopback output bypassed it."""

from __future__ import annotations

import hashlib
import random

from rumpnet.testing.vnet import capture, tcp_transfer


def test_netem_delay_on_lo0_egress(vnet) -> None:
    k = vnet.kernel(31)
    t0 = k.clock_now()
    assert vnet.ping(k, "127.0.0.1") is not None
    assert k.clock_now() - t0 < 0.001
    k.tc("qdisc", "add", "dev", "lo0", "root", "netem", "delay", "100ms")
    t0 = k.clock_now()
    assert vnet.ping(k, "127.0.0.1") is not None
    # request and reply both leave through lo0: two delays
    assert 0.2 <= k.clock_now() - t0 < 0.21
    assert k.ifnet.lookup("lo0").qdisc("egress").stats.packets >= 2


def test_netem_loss_on_lo0_ingress_and_bpf(vnet) -> None:
    k = vnet.kernel(32)
    lo0 = k.ifnet.lookup("lo0")
    seen = capture(k, "lo0")
    before = lo0.stats.opackets
    k.tc("qdisc", "add", "dev", "lo0", "ingress", "netem", "loss", "100%")
    assert vnet.ping(k, "127.0.0.1", timeout=1.0) is None
    assert lo0.stats.opackets == before + 1
    assert lo0.qdisc("ingress").stats.drop_loss == 1  # the echo was lost by netem, not by a crash
    assert len(seen.frames) == 1 and seen.frames[0][:14] == bytes(12) + b"\x08\x00"
    k.tc("qdisc", "del", "dev", "lo0", "ingress")
    assert vnet.ping(k, "127.0.0.1") is not None


def test_tcp_over_lossy_lo0(vnet) -> None:
    """A connection to our own address with 5% loss on lo0 still delivers every byte."""
    k = vnet.kernel(33)
    k.tc("qdisc", "add", "dev", "lo0", "root", "netem", "loss", "5%", "delay", "1ms")
    data = random.Random(6).randbytes(1 << 20)
    got = tcp_transfer(k, k, data, ("127.0.0.1", 7400))
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    assert k.inet.tcp.stats.tcps_sndrexmitpack > 0
    assert k.ifnet.lookup("lo0").qdisc("egress").stats.drops > 0
