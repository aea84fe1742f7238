"""The netem model (rumpnet.faults.netem): statistics over 100,000 frames, exact cases,
determinism and validation.  Fixed seeds throughout."""

from __future__ import annotations

import math
import random
import struct

import pytest

from rumpnet.faults.match import FrameMatch
from rumpnet.faults.netem import Netem, NetemParams, gemodel_params, loss_state_params

N = 100_000


def frame(i: int, size: int = 64) -> bytes:
    """A frame whose first 4 bytes number it."""
    return i.to_bytes(4, "big") + bytes(size - 4)


def idx(f: bytes) -> int:
    return int.from_bytes(f[:4], "big")


def run_passthrough(params: NetemParams, n: int = N, seed: int = 1, size: int = 64) -> tuple[Netem, list[bytes]]:
    """Offer n frames 1 ms apart, dequeue after each; no delay configured."""
    nm = Netem(params, random.Random(seed))
    out: list[bytes] = []
    for i in range(n):
        t = i * 0.001
        nm.enqueue(frame(i, size), t)
        out.extend(nm.dequeue(t))
    return nm, out


def drain_times(nm: Netem) -> list[tuple[float, bytes]]:
    """Dequeue everything at its deadline, recording (time, frame)."""
    out: list[tuple[float, bytes]] = []
    while True:
        t = nm.next_deadline()
        if t is None:
            return out
        for f in nm.dequeue(t):
            out.append((t, f))


def within_sigma(measured: float, p: float, n: int, k: float = 3.0) -> bool:
    sigma = math.sqrt(p * (1 - p) / n)
    return abs(measured - p) <= k * sigma


# -- loss, duplication, corruption rates ---------------------------------------------------

@pytest.mark.parametrize("p", [0.01, 0.1, 0.5])
def test_random_loss_rate(p: float) -> None:
    nm, out = run_passthrough(NetemParams(loss=p))
    lost = N - len(out)
    assert nm.stats.drop_loss == lost == nm.stats.drops
    assert within_sigma(lost / N, p, N)
    assert nm.stats.packets == len(out)
    assert nm.stats.bytes == 64 * len(out)


def test_duplicate_rate_and_order() -> None:
    p = 0.05
    nm, out = run_passthrough(NetemParams(duplicate=p))
    dups = len(out) - N
    assert nm.stats.duplicated == dups
    assert within_sigma(dups / N, p, N)
    # a duplicate is identical and sent next to its original; order otherwise kept
    ids = [idx(f) for f in out]
    assert sorted(set(ids)) == list(range(N))
    assert ids == sorted(ids)


def test_corrupt_rate_flips_exactly_one_bit() -> None:
    p = 0.02
    nm, out = run_passthrough(NetemParams(corrupt=p), size=100)
    assert len(out) == N
    bad = 0
    for i, f in enumerate(out):
        orig = frame(i, 100)
        if f != orig:
            bad += 1
            diff = [a ^ b for a, b in zip(f, orig)]
            flipped = [d for d in diff if d]
            assert len(flipped) == 1 and bin(flipped[0]).count("1") == 1
    # a flip in the 4 numbering bytes would break frame(i) matching; positions are uniform
    assert bad == nm.stats.corrupted
    assert within_sigma(bad / N, p, N)


def test_corrupt_positions_cover_whole_frame() -> None:
    nm, out = run_passthrough(NetemParams(corrupt=1.0), n=20_000, size=16)
    positions: set[int] = set()
    for i, f in enumerate(out):
        orig = frame(i, 16)
        positions.update(k for k in range(16) if f[k] != orig[k])
    assert positions == set(range(16))


def test_loss_and_duplicate_independent_draws() -> None:
    nm, out = run_passthrough(NetemParams(loss=0.1, duplicate=0.1))
    # sch_netem.c: count = 1 + dup - loss.  Loss drops happen when (no dup, loss) -> 0.09,
    # and when the clone made for (dup, no loss) -> 0.09 meets its own loss draw -> 0.009
    p_drop = 0.9 * 0.1 + 0.1 * 0.9 * 0.1
    assert within_sigma(nm.stats.drop_loss / N, p_drop, N)
    assert within_sigma(nm.stats.duplicated / N, 0.1 * 0.9, N)
    assert len(out) == N - nm.stats.drop_loss + nm.stats.duplicated


# -- Gilbert-Elliott and the 4-state model -----------------------------------------------------

def bursts(lost: list[bool]) -> list[int]:
    out, run = [], 0
    for x in lost:
        if x:
            run += 1
        elif run:
            out.append(run)
            run = 0
    if run:
        out.append(run)
    return out


def loss_pattern(params: NetemParams, n: int = N, seed: int = 7) -> list[bool]:
    nm, out = run_passthrough(params, n=n, seed=seed)
    got = {idx(f) for f in out}
    return [i not in got for i in range(n)]


def test_gemodel_mean_burst_length_is_1_over_r() -> None:
    p, r = 0.01, 0.1
    lost = loss_pattern(NetemParams(loss_gemodel=gemodel_params(p, r)))
    b = bursts(lost)
    mean = sum(b) / len(b)
    sd = math.sqrt(1 - r) / r
    assert abs(mean - 1 / r) <= 3 * sd / math.sqrt(len(b))
    # stationary loss probability of the simple Gilbert model: p / (p + r)
    assert abs(sum(lost) / N - p / (p + r)) < 0.01


def test_gemodel_bad_state_partial_loss() -> None:
    # 1-h = 50%: the bad state loses half its packets; 1-k = 0.5% in the good state
    p, r, one_h, one_k = 0.02, 0.2, 0.5, 0.005
    lost = loss_pattern(NetemParams(loss_gemodel=gemodel_params(p, r, one_h, one_k)))
    pi_bad = p / (p + r)
    expect = pi_bad * one_h + (1 - pi_bad) * one_k
    assert abs(sum(lost) / N - expect) < 0.004


def test_gemodel_defaults_as_tc() -> None:
    assert gemodel_params(0.01) == (0.01, 0.99, 1.0, 0.0)
    assert loss_state_params(0.01) == (0.01, 0.99, 0.0, 1.0, 0.0)


def stationary_4state(p13: float, p31: float, p32: float, p23: float, p14: float) -> float:
    # transition matrix over states 1..4 (sch_netem.c loss_4state) and loss probability
    tm = [
        [1 - p13 - p14, 0.0, p13, p14],
        [0.0, 1 - p23, p23, 0.0],
        [p31, p32, 1 - p31 - p32, 0.0],
        [1.0, 0.0, 0.0, 0.0],
    ]
    pi = [1.0, 0.0, 0.0, 0.0]
    for _ in range(20_000):
        pi = [sum(pi[i] * tm[i][j] for i in range(4)) for j in range(4)]
    ploss = [p13 + p14, p23, 1 - p31 - p32, 0.0]
    return sum(a * b for a, b in zip(pi, ploss))


def test_4state_stationary_loss() -> None:
    m = (0.05, 0.3, 0.1, 0.2, 0.01)
    lost = loss_pattern(NetemParams(loss_state=m))
    expect = stationary_4state(*m)
    assert abs(sum(lost) / N - expect) < 0.1 * expect


def test_4state_only_p13_is_bernoulli() -> None:
    lost = loss_pattern(NetemParams(loss_state=loss_state_params(0.05)))
    assert within_sigma(sum(lost) / N, 0.05, N)
    # no burstiness: P(loss | previous loss) = P(loss)
    after = [lost[i] for i in range(1, N) if lost[i - 1]]
    assert abs(sum(after) / len(after) - 0.05) < 0.02


def test_4state_isolated_losses() -> None:
    # only p14: isolated losses, never two in a row
    lost = loss_pattern(NetemParams(loss_state=(0.0, 1.0, 0.0, 1.0, 0.1)))
    assert max(bursts(lost)) == 1
    # state 1 -> 4 w.p. p14, 4 -> 1 always: rate p14 / (1 + p14)
    assert abs(sum(lost) / N - 0.1 / 1.1) < 0.005


# -- delay distributions ---------------------------------------------------------------------

def delays(params: NetemParams, n: int = N, seed: int = 3) -> list[float]:
    nm = Netem(params.replace(limit=n + 1), random.Random(seed))
    for i in range(n):
        nm.enqueue(frame(i), 0.0)
    res = [0.0] * n
    for t, f in drain_times(nm):
        res[idx(f)] = t
    return res


def mean_sd(xs: list[float]) -> tuple[float, float]:
    m = sum(xs) / len(xs)
    return m, math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def table_moments(q) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    # moments of netem's table T(u) over u uniform, midpoint rule
    k = 200_000
    vals = [q((j + 0.5) / k) for j in range(k)]
    return mean_sd(vals)


def pareto_t(u: float) -> float:
    # iproute2 netem/pareto.c, written independently of the module under test
    v = 1.0 - u
    return min((1.0 / v ** (1 / 3) - 1.5) * 4 / 3, 32767 / 8192)


def normal_t(u: float) -> float:
    from statistics import NormalDist
    return max(min(NormalDist().inv_cdf(u), 32767 / 8192), -4.0)


def paretonormal_t(u: float) -> float:
    return (normal_t(u) + 3 * pareto_t(u)) / 4


def test_uniform_delay() -> None:
    d = delays(NetemParams(delay=0.1, jitter=0.01))
    m, sd = mean_sd(d)
    assert min(d) >= 0.09 and max(d) < 0.11
    assert abs(m - 0.1) < 3 * (0.01 / math.sqrt(3)) / math.sqrt(N)
    assert abs(sd - 0.01 / math.sqrt(3)) < 0.0001


@pytest.mark.parametrize("dist,table", [("normal", normal_t), ("pareto", pareto_t), ("paretonormal", paretonormal_t)])
def test_table_distributions(dist: str, table) -> None:  # type: ignore[no-untyped-def]
    mu, sigma = 0.1, 0.02
    d = delays(NetemParams(delay=mu, jitter=sigma, distribution=dist))
    tm, tsd = table_moments(table)
    m, sd = mean_sd(d)
    exp_m, exp_sd = mu + sigma * tm, sigma * tsd
    assert abs(m - exp_m) < 3 * exp_sd / math.sqrt(N), (m, exp_m)
    assert abs(sd - exp_sd) < 0.03 * exp_sd, (sd, exp_sd)
    if dist == "normal":
        assert abs(tm) < 1e-3 and abs(tsd - 1.0) < 1e-2  # mean mu, spread sigma
    else:
        assert max(d) <= mu + sigma * 4.0 + 1e-12  # the s16 tables end at 4
        # heavy right tail: more mass far above the mean than below
        assert sum(x > mu + 2 * sigma for x in d) > sum(x < mu - 2 * sigma for x in d)


def test_delay_without_jitter_is_exact_and_draws_nothing() -> None:
    rng = random.Random(5)
    nm = Netem(NetemParams(delay=0.05), rng)
    state = rng.getstate()
    for i in range(100):
        nm.enqueue(frame(i), i * 0.01)
    assert rng.getstate() == state
    out = drain_times(nm)
    assert [round(t - idx(f) * 0.01, 9) for t, f in out] == [0.05] * 100
    assert nm.stats.delayed == 100


def autocorr(xs: list[float]) -> float:
    m = sum(xs) / len(xs)
    num = sum((xs[i] - m) * (xs[i + 1] - m) for i in range(len(xs) - 1))
    den = sum((x - m) ** 2 for x in xs)
    return num / den


def test_delay_correlation() -> None:
    d0 = delays(NetemParams(delay=0.1, jitter=0.01), n=20_000)
    d75 = delays(NetemParams(delay=0.1, jitter=0.01, delay_corr=0.75), n=20_000)
    assert abs(autocorr(d0)) < 0.03
    assert abs(autocorr(d75) - 0.75) < 0.03


def test_loss_correlation_makes_bursts() -> None:
    lost0 = loss_pattern(NetemParams(loss=0.3))
    lost = loss_pattern(NetemParams(loss=0.3, loss_corr=0.5))

    def after_loss(xs: list[bool]) -> float:
        a = [xs[i] for i in range(1, len(xs)) if xs[i - 1]]
        return sum(a) / len(a)

    assert abs(after_loss(lost0) - sum(lost0) / N) < 0.01
    assert after_loss(lost) > sum(lost) / N + 0.1


def test_duplicate_and_corrupt_correlation_have_effect() -> None:
    nm0, out0 = run_passthrough(NetemParams(duplicate=0.3), n=20_000)
    nm1, out1 = run_passthrough(NetemParams(duplicate=0.3, duplicate_corr=0.9), n=20_000)
    assert nm0.stats.duplicated != nm1.stats.duplicated
    nm0, _ = run_passthrough(NetemParams(corrupt=0.3), n=20_000)
    nm1, _ = run_passthrough(NetemParams(corrupt=0.3, corrupt_corr=0.9), n=20_000)
    assert nm0.stats.corrupted != nm1.stats.corrupted


# -- reordering -----------------------------------------------------------------------------

def offer_spaced(params: NetemParams, n: int, gap_s: float = 0.001, seed: int = 11) -> tuple[Netem, list[tuple[float, bytes]]]:
    nm = Netem(params, random.Random(seed))
    out: list[tuple[float, bytes]] = []
    for i in range(n):
        t = i * gap_s
        # release whatever became due before this arrival, at its own time
        while (dl := nm.next_deadline()) is not None and dl <= t:
            out.extend((dl, f) for f in nm.dequeue(dl))
        nm.enqueue(frame(i), t)
        out.extend((t, f) for f in nm.dequeue(t))
    out.extend(drain_times(nm))
    return nm, out


def test_reorder_needs_delay() -> None:
    nm, out = offer_spaced(NetemParams(reorder=0.5), 10_000)
    assert [idx(f) for _, f in out] == list(range(10_000))
    assert nm.stats.reordered == 0


def test_reorder_probability_and_immediate_send() -> None:
    nm, out = offer_spaced(NetemParams(delay=0.01, reorder=0.25), N)
    immediate = [f for t, f in out if abs(t - idx(f) * 0.001) < 1e-12]
    assert len(immediate) == nm.stats.reordered == nm.stats.requeues
    assert within_sigma(len(immediate) / N, 0.25, N)
    ids = [idx(f) for _, f in out]
    assert ids != sorted(ids) and sorted(ids) == list(range(N))


def test_reorder_gap() -> None:
    # tc-netem(8): "reorder 25% 50% gap 5": the first 4 (gap - 1) packets are delayed,
    # then each is sent at once with probability 25%; after one is, 4 are delayed again
    nm, out = offer_spaced(NetemParams(delay=0.01, reorder=0.25, reorder_corr=0.5, gap=5), 20_000)
    imm = sorted(idx(f) for t, f in out if abs(t - idx(f) * 0.001) < 1e-12)
    assert imm and imm[0] >= 4
    assert all(b - a >= 5 for a, b in zip(imm, imm[1:]))
    assert len(imm) == nm.stats.reordered


def test_jitter_reorders_without_rate_and_not_with_rate() -> None:
    _, out = offer_spaced(NetemParams(delay=0.05, jitter=0.02), 2000)
    ids = [idx(f) for _, f in out]
    assert ids != sorted(ids)
    _, out = offer_spaced(NetemParams(delay=0.05, jitter=0.02, rate=1e9), 2000)
    ids = [idx(f) for _, f in out]
    assert ids == sorted(ids)


# -- rate -------------------------------------------------------------------------------------

def test_rate_serialises_back_to_back() -> None:
    nm = Netem(NetemParams(rate=1e6), random.Random(1))
    for i in range(50):
        nm.enqueue(frame(i, 1000), 0.0)
    out = drain_times(nm)
    assert [idx(f) for _, f in out] == list(range(50))
    for k, (t, _) in enumerate(out):
        assert t == pytest.approx((k + 1) * 1000 * 8 / 1e6)


def test_rate_overheads() -> None:
    nm = Netem(NetemParams(rate=1e6, packetoverhead=20, cellsize=48, celloverhead=5), random.Random(1))
    # 1000 + 20 = 1020 bytes -> ceil(1020/48) = 22 cells of 48 + 5 = 1166 bytes
    assert nm.packet_time(1000) == pytest.approx(1166 * 8 / 1e6)
    for i in range(10):
        nm.enqueue(frame(i, 1000), 0.0)
    out = drain_times(nm)
    assert [t for t, _ in out] == pytest.approx([(k + 1) * 1166 * 8 / 1e6 for k in range(10)])
    nm = Netem(NetemParams(rate=8e6, packetoverhead=-14), random.Random(1))
    assert nm.packet_time(114) == pytest.approx(100 / 1e6)


def test_rate_idle_link_and_delay() -> None:
    nm = Netem(NetemParams(rate=1e6, delay=0.1), random.Random(1))
    # spaced arrivals: no queueing, each takes delay + its own transmission time
    out: list[tuple[float, bytes]] = []
    for i in range(5):
        nm.enqueue(frame(i, 500), i * 1.0)
        out.extend(drain_times(nm))
    assert [t - idx(f) * 1.0 for t, f in out] == pytest.approx([0.1 + 0.004] * 5)
    # a burst: the first waits delay, the rest queue behind it at the rate
    for i in range(5):
        nm.enqueue(frame(i, 500), 10.0)
    out = drain_times(nm)
    assert [t - 10.0 for t, _ in out] == pytest.approx([0.104 + k * 0.004 for k in range(5)])


# -- limit, nth, match, partition -------------------------------------------------------------

def test_queue_limit_tail_drop() -> None:
    nm = Netem(NetemParams(limit=10, delay=1.0), random.Random(1))
    for i in range(15):
        nm.enqueue(frame(i), 0.0)
    assert nm.qlen == 10
    assert nm.stats.drop_queue == nm.stats.overlimits == nm.stats.drops == 5
    assert [idx(f) for f in nm.dequeue(1.0)] == list(range(10))
    assert nm.qlen == 0 and nm.backlog == 0


def test_drop_nth_exact() -> None:
    nm, out = run_passthrough(NetemParams(drop_nth=(1, 3, 10, 20)), n=20)
    assert [idx(f) for f in out] == [i for i in range(20) if i + 1 not in (1, 3, 10, 20)]
    assert nm.stats.drop_nth == 4


def eth_ip(proto: int, src: str, dst: str, l4: bytes, tos: int = 0) -> bytes:
    def a(s: str) -> bytes:
        return bytes(int(x) for x in s.split("."))
    total = 20 + len(l4)
    hdr = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, tos, total, 1, 0, 64, proto, 0, a(src), a(dst)))
    s = sum(struct.unpack("!10H", hdr))
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    struct.pack_into("!H", hdr, 10, ~s & 0xFFFF)
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + bytes(hdr) + l4


def tcp(src: str, dst: str, sport: int, dport: int, flags: int) -> bytes:
    return eth_ip(6, src, dst, struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 0x50, flags, 65535, 0, 0))


def udp(src: str, dst: str, sport: int, dport: int) -> bytes:
    return eth_ip(17, src, dst, struct.pack("!HHHH", sport, dport, 8, 0))


def test_drop_match_exact() -> None:
    m = FrameMatch.parse("tcp dport 80 flags S/SA")
    frames = [
        tcp("10.0.0.1", "10.0.0.2", 1234, 80, 0x02),   # SYN -> dropped
        tcp("10.0.0.2", "10.0.0.1", 80, 1234, 0x12),   # SYN-ACK
        tcp("10.0.0.1", "10.0.0.2", 1234, 80, 0x10),   # ACK
        udp("10.0.0.1", "10.0.0.2", 1234, 80),
        tcp("10.0.0.1", "10.0.0.2", 1234, 81, 0x02),
        tcp("10.0.0.3", "10.0.0.2", 999, 80, 0x02),    # SYN -> dropped
    ]
    nm = Netem(NetemParams(drop_match=m), random.Random(1))
    out = []
    for f in frames:
        nm.enqueue(f, 0.0)
        out += nm.dequeue(0.0)
    assert out == [frames[1], frames[2], frames[3], frames[4]]
    assert nm.stats.drop_match == 2


def test_partition_then_heal() -> None:
    nm = Netem(NetemParams(delay=0.1), random.Random(1))
    nm.enqueue(frame(0), 0.0)                       # in flight when the link is cut
    nm.set_params(nm.params.replace(partition=True), 0.05)
    nm.enqueue(frame(1), 0.06)
    assert nm.dequeue(0.2) == []
    assert nm.stats.drop_partition == 2
    nm.set_params(nm.params.replace(partition=False), 0.3)
    nm.enqueue(frame(2), 0.3)
    assert [idx(f) for f in nm.dequeue(0.4)] == [2]


def test_partition_draws_no_randomness() -> None:
    rng = random.Random(9)
    nm = Netem(NetemParams(loss=0.5, partition=True), rng)
    st = rng.getstate()
    for i in range(100):
        nm.enqueue(frame(i), 0.0)
    assert rng.getstate() == st


def test_ecn_marks_instead_of_dropping() -> None:
    nm = Netem(NetemParams(loss=1.0, ecn=True), random.Random(1))
    ect = udp("10.0.0.1", "10.0.0.2", 1, 2)
    ect = eth_ip(17, "10.0.0.1", "10.0.0.2", ect[34:], tos=0x02)
    notect = udp("10.0.0.1", "10.0.0.2", 1, 2)
    nm.enqueue(ect, 0.0)
    nm.enqueue(notect, 0.0)
    out = nm.dequeue(0.0)
    assert len(out) == 1 and nm.stats.ecn_marked == 1 and nm.stats.drop_loss == 1
    ip = out[0][14:34]
    assert ip[1] & 3 == 3
    s = sum(struct.unpack("!10H", ip))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    assert s == 0xFFFF  # header checksum still right


def test_ecn_marks_ipv6_too() -> None:
    """As Linux's INET_ECN_set_ce: the ECN bits of an IPv6 traffic class (0x30 of the
    header's second octet); Not-ECT IPv6 is dropped."""
    nm = Netem(NetemParams(loss=1.0, ecn=True), random.Random(1))

    def ip6(tclass: int) -> bytes:
        hdr = struct.pack("!IHBB16s16s", (6 << 28) | (tclass << 20), 8, 17, 64, bytes(16), bytes(16))
        return b"\x02" * 12 + b"\x86\xdd" + hdr + bytes(8)

    nm.enqueue(ip6(0xB8 | 2), 0.0)          # EF, ECT(0)
    nm.enqueue(ip6(0xB8 | 1), 0.0)          # EF, ECT(1)
    nm.enqueue(ip6(0xB8), 0.0)              # EF, Not-ECT
    out = nm.dequeue(0.0)
    tclass = [(struct.unpack_from("!I", f, 14)[0] >> 20) & 0xFF for f in out]
    assert tclass == [0xB8 | 3, 0xB8 | 3]
    assert nm.stats.ecn_marked == 2 and nm.stats.drops == 1


def test_slot_bursts() -> None:
    nm = Netem(NetemParams(slot_min=0.01, slot_max=0.01, slot_packets=2), random.Random(1))
    nm.set_params(nm.params, now=0.0)
    for i in range(6):
        nm.enqueue(frame(i), 0.0)
    out = drain_times(nm)
    times = [round(t, 9) for t, _ in out]
    assert [idx(f) for _, f in out] == list(range(6))
    # the first slot is open from configuration time (sch_netem.c get_slot()); then one
    # slot every 10 ms carries at most 2 packets
    assert times == [0.0, 0.0, 0.01, 0.01, 0.02, 0.02]
    # after idling, a packet waits for a fresh slot (get_slot_next() from "now")
    nm.enqueue(frame(6), 1.0)
    assert nm.dequeue(1.0) == []
    assert nm.next_deadline() == pytest.approx(1.01)
    assert [idx(f) for f in nm.dequeue(1.01)] == [6]


# -- determinism and validation ---------------------------------------------------------------

COMPLEX = NetemParams(delay=0.02, jitter=0.01, delay_corr=0.25, distribution="paretonormal", loss=0.05,
                      duplicate=0.02, corrupt=0.02, reorder=0.1, gap=3, rate=10e6, limit=50)


def trace(seed: int) -> list[tuple[float, bytes]]:
    nm, out = offer_spaced(COMPLEX, 5000, gap_s=0.0005, seed=seed)
    return out


def test_same_seed_same_output_different_seed_different() -> None:
    a, b, c = trace(42), trace(42), trace(43)
    assert a == b
    assert a != c


@pytest.mark.parametrize("kw,field", [
    ({"delay": -1.0}, "delay"),
    ({"jitter": -0.1}, "jitter"),
    ({"loss": 1.5}, "loss"),
    ({"loss": -0.1}, "loss"),
    ({"loss_corr": 2.0}, "loss_corr"),
    ({"duplicate": 1.01}, "duplicate"),
    ({"corrupt": -1}, "corrupt"),
    ({"reorder": 3}, "reorder"),
    ({"distribution": "gaussian"}, "distribution"),
    ({"limit": -1}, "limit"),
    ({"rate": -5.0}, "rate"),
    ({"gap": -2}, "gap"),
    ({"cellsize": -1}, "cellsize"),
    ({"loss_state": (0.1, 1.2, 0, 1, 0)}, "loss_state.p31"),
    ({"loss_gemodel": (0.1, 0.2, 0.3)}, "loss_gemodel"),
    ({"loss": 0.1, "loss_gemodel": (0.1, 0.2, 1.0, 0.0)}, "loss"),
    ({"drop_nth": (0,)}, "drop_nth"),
    ({"drop_match": 5}, "drop_match"),
    ({"delay": float("nan")}, "delay"),
    ({"slot_min": 0.01, "slot_max": 0.005}, "slot_max"),
])
def test_validation_names_field(kw: dict, field: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValueError) as ei:
        NetemParams(**kw)
    assert str(ei.value).startswith(field)


def test_invalid_change_is_not_half_applied() -> None:
    nm = Netem(NetemParams(delay=0.1, loss=0.1), random.Random(1))
    before = nm.params
    with pytest.raises(ValueError, match="^duplicate"):
        nm.set_params(nm.params.replace(loss=0.2, duplicate=7))
    assert nm.params is before


def test_netem_requires_rng() -> None:
    with pytest.raises(ValueError, match="rng"):
        Netem(NetemParams())


def test_noop_params() -> None:
    assert NetemParams().is_noop
    assert NetemParams(limit=5).is_noop
    assert not NetemParams(loss=0.01).is_noop
    assert not NetemParams(partition=True).is_noop


# -- properties (hypothesis): nothing raises, every frame is accounted for ----------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as hs  # noqa: E402

prob = hs.sampled_from([0.0, 0.0, 0.01, 0.1, 0.5, 1.0])

params_st = hs.builds(
    NetemParams,
    limit=hs.integers(0, 50),
    delay=hs.sampled_from([0.0, 0.001, 0.05]),
    jitter=hs.sampled_from([0.0, 0.001, 0.1]),
    delay_corr=prob,
    distribution=hs.sampled_from(["uniform", "normal", "pareto", "paretonormal"]),
    loss=prob,
    loss_corr=prob,
    duplicate=prob,
    duplicate_corr=prob,
    corrupt=prob,
    corrupt_corr=prob,
    reorder=prob,
    reorder_corr=prob,
    gap=hs.integers(0, 5),
    rate=hs.sampled_from([0.0, 1e5, 1e9]),
    packetoverhead=hs.integers(-20, 40),
    cellsize=hs.sampled_from([0, 48]),
    celloverhead=hs.integers(-5, 5),
    slot_min=hs.sampled_from([0.0, 0.002]),
    slot_max=hs.sampled_from([0.0, 0.0, 0.002, 0.004]),
    slot_packets=hs.integers(0, 3),
    slot_bytes=hs.sampled_from([0, 200]),
    ecn=hs.booleans(),
    partition=hs.booleans(),
    drop_nth=hs.lists(hs.integers(1, 40), max_size=4).map(tuple),
    drop_match=hs.sampled_from([None, FrameMatch.parse("udp"), FrameMatch.parse("tcp flags S")]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(params=params_st, frames=hs.lists(hs.binary(min_size=0, max_size=120), max_size=40),
       gaps=hs.lists(hs.sampled_from([0.0, 0.0005, 0.003]), min_size=40, max_size=40), seed=hs.integers(0, 2**32))
def test_accounting_property(params: NetemParams, frames: list[bytes], gaps: list[float], seed: int) -> None:
    nm = Netem(params, random.Random(seed))
    t = 0.0
    out = 0
    for f, g in zip(frames, gaps):
        t += g
        nm.enqueue(f, t)
        out += len(nm.dequeue(t))
    while (dl := nm.next_deadline()) is not None:
        assert dl < t + 100
        t = max(t, dl)
        out += len(nm.dequeue(t))
    st = nm.stats
    assert st.packets == out
    assert len(frames) + st.duplicated == st.packets + st.drops + nm.qlen
    assert nm.qlen == 0
    assert st.drops == st.drop_loss + st.drop_queue + st.drop_partition + st.drop_nth + st.drop_match
