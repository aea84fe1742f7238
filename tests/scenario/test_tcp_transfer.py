"""Bulk TCP over an impaired wire, on virtual time: 50 MB verified by SHA-256 while netem
on the egress of both kernels drops 5%, delays, reorders and duplicates (seeded, so a
failing run replays exactly)."""

from __future__ import annotations

import errno
import hashlib
import random
import socket
import time

import pytest

from rumpnet.faults.netem import Netem, NetemParams
from rumpnet.faults.runner import QdiscRunner
from rumpnet.sys_socket import pollfd
from rumpnet.testing.families import INET, Family, family_matrix  # noqa: F401  (the fixture)
from rumpnet.uipc_socket import POLLIN, POLLOUT

PORT = 7000
# Every test runs over IPv4 and IPv6: family_matrix sets F, A and B for each.
pytestmark = pytest.mark.usefixtures("family_matrix")
F: Family = INET
A, B = INET.a, INET.b
CHUNK = 256 * 1024


def _impair(k, **params) -> QdiscRunner:
    ifp = k.ifnet.lookup("wire0")
    q = QdiscRunner(Netem(NetemParams(**params), k.rng), k.sched, ifp.link_transmit)
    ifp.set_qdisc("egress", q)
    return q


def _payload(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def _transfer(a, b, data: bytes, both_ways: bool = False) -> tuple[bytes, bytes]:
    """Send ``data`` a -> b (and b -> a when ``both_ways``) with non-blocking sockets and
    poll, as a single-threaded event loop would; return what each side received."""
    lfd = b.rump_sys_socket(F.af, socket.SOCK_STREAM | socket.SOCK_NONBLOCK, 0)
    b.rump_sys_bind(lfd, (F.any, PORT))
    b.rump_sys_listen(lfd, 1)
    c = a.rump_sys_socket(F.af, socket.SOCK_STREAM | socket.SOCK_NONBLOCK, 0)
    with pytest.raises(BlockingIOError):
        a.rump_sys_connect(c, (B, PORT))
    p = pollfd(lfd, POLLIN)
    assert b.rump_sys_poll([p], 1, 30_000) == 1
    s, _ = b.rump_sys_accept(lfd)
    view = memoryview(data)
    ends = {(a, c): [0, bytearray(), False], (b, s): [0, bytearray(), not both_ways]}
    total = len(data)
    last_progress = a.clock_now()
    while True:
        busy = False
        for (k, fd), st in ends.items():
            if not st[2] and st[0] < total:
                try:
                    st[0] += k.rump_sys_send(fd, view[st[0]:st[0] + CHUNK], 0)
                    busy = True
                except BlockingIOError:
                    pass
                if st[0] == total:
                    k.rump_sys_shutdown(fd, socket.SHUT_WR)
            try:
                got = k.rump_sys_recv(fd, 1 << 20, 0)
                if got:
                    st[1] += got
                    busy = True
            except OSError as e:
                assert e.errno == errno.EWOULDBLOCK
        done_b = len(ends[(b, s)][1]) == total
        done_a = not both_ways or len(ends[(a, c)][1]) == total
        if done_a and done_b:
            break
        if not busy:
            # nothing to do on either side: wait on each kernel in turn (they share the
            # virtual clock, so a short timeout costs no wall time)
            for (k, fd), st in ends.items():
                ev = POLLIN | (POLLOUT if not st[2] and st[0] < total else 0)
                k.rump_sys_poll([pollfd(fd, ev)], 1, 100)
            assert a.clock_now() - last_progress < 600, "no progress for 10 minutes"
        else:
            last_progress = a.clock_now()
    out = (bytes(ends[(b, s)][1]), bytes(ends[(a, c)][1]))
    for k, fd in ((a, c), (b, s), (b, lfd)):
        k.rump_sys_close(fd)
    return out


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_50mb_over_lossy_reordering_duplicating_wire(vnet) -> None:
    size = 50 * 1000 * 1000
    a, b = F.pair(vnet, seeds=(11, 12))
    imp = {"loss": 0.05, "delay": 0.005, "jitter": 0.001, "reorder": 0.25, "duplicate": 0.02}
    qa, qb = _impair(a, **imp), _impair(b, **imp)
    data = _payload(size, 1)
    t0, v0 = time.perf_counter(), a.clock_now()
    got, _ = _transfer(a, b, data)
    wall, virt = time.perf_counter() - t0, a.clock_now() - v0
    assert len(got) == size
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()
    sa, sb = F.tcp(a).stats, F.tcp(b).stats
    # the impairment really happened and TCP really recovered from it
    for q in (qa, qb):
        assert q.stats.drop_loss > 0 and q.stats.duplicated > 0 and q.stats.reordered > 0
    assert sa.tcps_sndrexmitpack > 0 and sa.tcps_fast_rexmit > 0 and sa.tcps_sack_rcv_opts > 0
    assert sb.tcps_rcvoopack > 0 and sb.tcps_rcvduppack > 0
    assert sa.tcps_rcvinternalerr == 0 and sb.tcps_rcvinternalerr == 0
    print(f"50 MB lossy: {wall:.1f} s wall, {virt:.1f} s virtual, "
          f"{sa.tcps_sndrexmitpack} rexmits, {sa.tcps_rexmttimeo} RTOs")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("congctl", ["newreno", "cubic"])
def test_both_ways_at_once_lossy(vnet, congctl: str) -> None:
    size = 4 * 1000 * 1000
    a, b = F.pair(vnet, seeds=(21, 22))
    for k in (a, b):
        k.config.sysctl_set("net.inet.tcp.congctl", congctl)
        _impair(k, loss=0.03, delay=0.002, reorder=0.1, duplicate=0.01)
    data = _payload(size, 2)
    got_b, got_a = _transfer(a, b, data, both_ways=True)
    digest = hashlib.sha256(data).digest()
    assert hashlib.sha256(got_b).digest() == digest
    assert hashlib.sha256(got_a).digest() == digest


@pytest.mark.timeout(120)
def test_sack_off_and_timestamps_off(vnet) -> None:
    """Recovery without SACK (NewReno only) and without RFC 7323 options still delivers."""
    size = 3 * 1000 * 1000
    a, b = F.pair(vnet, seeds=(31, 32))
    for k in (a, b):
        k.config.sysctl_set("net.inet.tcp.sack", 0)
        k.config.sysctl_set("net.inet.tcp.rfc1323", 0)
        _impair(k, loss=0.03, delay=0.002, reorder=0.1)
    data = _payload(size, 3)
    got, _ = _transfer(a, b, data)
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    assert F.tcp(a).stats.tcps_sack_rcv_opts == 0
    assert F.tcp(a).stats.tcps_newreno_recovery + F.tcp(a).stats.tcps_rexmttimeo > 0


@pytest.mark.timeout(120)
def test_same_seed_same_run(vnet) -> None:
    """Determinism: the same seeds give the same retransmission counts and virtual time."""
    from rumpnet.testing.vnet import VNet

    results = []
    for _ in range(2):
        net = VNet(virtual=True)
        try:
            a, b = F.pair(net, seeds=(41, 42))
            for k in (a, b):
                _impair(k, loss=0.05, delay=0.003, reorder=0.2, duplicate=0.02)
            data = _payload(1_000_000, 4)
            v0 = a.clock_now()
            got, _ = _transfer(a, b, data)
            assert got == data
            results.append((a.clock_now() - v0, F.tcp(a).stats.as_dict(), F.tcp(b).stats.as_dict()))
        finally:
            net.close()
    assert results[0] == results[1]
