"""MLDv2 for hosts (netinet6/mld6.py, RFC 3810) on virtual time: the unsolicited report
schedule when joining and leaving, answers to general and group queries within the
Maximum Response Delay, MLDv1 compatibility, query validation; reports parsed by scapy."""

from __future__ import annotations

import pytest
from scapy.layers.inet6 import (
    ICMPv6MLDMultAddrRec,
    ICMPv6MLDone,
    ICMPv6MLQuery,
    ICMPv6MLQuery2,
    ICMPv6MLReport,
    ICMPv6MLReport2,
    IPv6,
    IPv6ExtHdrHopByHop,
    RouterAlert,
)

from rumpnet.netinet6 import in6
from rumpnet.netinet6.mld6 import (
    CHANGE_TO_EXCLUDE_MODE,
    CHANGE_TO_INCLUDE_MODE,
    MODE_IS_EXCLUDE,
    max_response_delay,
    mld_reportable,
)
from rumpnet.testing.in6sim import In6Sim, SimNode

P = in6.pton
G = "ff05::1:3"


def host() -> tuple[In6Sim, SimNode, int]:
    sim = In6Sim(seed=21)
    h = sim.node("h")
    ih = sim.attach(h, "lan")
    sim.run_for(10)
    sim.log.clear()
    return sim, h, ih


def reports(sim: In6Sim) -> list[tuple[float, list[tuple[int, str]]]]:
    """The MLDv2 reports sent, checked by scapy (addressing, Router Alert, checksum)."""
    out = []
    for t, _, _, f in sim.log:
        p = IPv6(f.packet)
        if not p.haslayer(ICMPv6MLReport2):
            continue
        assert p.dst == "ff02::16" and p.hlim == 1
        assert p[IPv6ExtHdrHopByHop].options[0].otype == 5           # Router Alert
        rep = p[ICMPv6MLReport2]
        again = p.copy()
        del again[ICMPv6MLReport2].cksum
        assert bytes(again) == f.packet                                # scapy's checksum is ours
        body = bytes(rep)[8:]
        recs = []
        rec = rep.records[0] if rep.records else None
        while isinstance(rec, ICMPv6MLDMultAddrRec):
            recs.append((rec.rtype, rec.dst))
            rec = rec.payload
        assert rep.records_number == len(recs) == len(body) // 20
        out.append((t, recs))
    return out


def test_join_reports_twice_within_the_interval() -> None:
    sim, h, ih = host()
    t0 = sim.now
    before = h.node.mld6stat.mlds_snd_reports
    h.node.mld6.join(ih, P(G), sim.now)
    sim.run_for(3)
    reps = reports(sim)
    assert [r for _, r in reps] == [[(CHANGE_TO_EXCLUDE_MODE, G)]] * 2   # Robustness Variable 2
    assert reps[0][0] == t0 and 0 <= reps[1][0] - t0 <= 1.0              # Unsolicited Report Interval
    src = IPv6(sim.log[0][3].packet).src
    assert in6.is_linklocal(P(src))
    assert h.node.mld6stat.mlds_snd_reports == before + 2


def test_second_join_and_leave() -> None:
    sim, h, ih = host()
    h.node.mld6.join(ih, P(G), sim.now)
    h.node.mld6.join(ih, P(G), sim.now)
    sim.run_for(3)
    assert len(reports(sim)) == 2
    sim.log.clear()
    h.node.mld6.leave(ih, P(G), sim.now)
    sim.run_for(3)
    assert reports(sim) == []                                          # one listener left
    h.node.mld6.leave(ih, P(G), sim.now)
    sim.run_for(3)
    assert [r for _, r in reports(sim)] == [[(CHANGE_TO_INCLUDE_MODE, G)]] * 2
    assert not h.node.ifaddrs.get(ih).joined(P(G))


def test_solicited_node_groups_are_reported_not_all_nodes() -> None:
    sim = In6Sim(seed=22)
    h = sim.node("h")
    ih = sim.attach(h, "lan")
    sim.run_for(5)
    groups = {g for _, recs in reports(sim) for _, g in recs}
    ll = h.node.ifaddrs.get(ih).linklocal()
    assert groups == {in6.ntop(in6.solicited_node(ll.addr))}
    assert not mld_reportable(P("ff02::1")) and not mld_reportable(P("ff01::5")) and not mld_reportable(P("ff00::5"))


def query2(group: str = "::", mrd: int = 1000, src: str = "fe80::1", hlim: int = 1) -> bytes:
    return bytes(IPv6(src=src, dst="ff02::1", hlim=hlim) / IPv6ExtHdrHopByHop(options=[RouterAlert()])
                 / ICMPv6MLQuery2(mrd=mrd, mladdr=group))


def test_general_query_answered_with_current_state() -> None:
    sim, h, ih = host()
    h.node.mld6.join(ih, P(G), sim.now)
    sim.run_for(3)
    sim.log.clear()
    t0 = sim.now
    sim.inject(h, ih, query2(mrd=2000))
    sim.run_for(3)
    ((t, recs),) = reports(sim)
    ll = h.node.ifaddrs.get(ih).linklocal()
    assert t0 <= t <= t0 + 2.0
    assert sorted(recs) == sorted([(MODE_IS_EXCLUDE, G), (MODE_IS_EXCLUDE, in6.ntop(in6.solicited_node(ll.addr)))])
    # a query while an answer is pending sooner adds nothing
    sim.log.clear()
    sim.inject(h, ih, query2(mrd=1000))
    sim.inject(h, ih, query2(mrd=10000))
    sim.run_for(12)
    assert len(reports(sim)) == 1


def test_group_query() -> None:
    sim, h, ih = host()
    h.node.mld6.join(ih, P(G), sim.now)
    sim.run_for(3)
    sim.log.clear()
    sim.inject(h, ih, query2(group=G, mrd=500))
    sim.inject(h, ih, query2(group="ff05::77", mrd=500))        # not ours: nothing
    sim.run_for(1)
    assert [r for _, r in reports(sim)] == [[(MODE_IS_EXCLUDE, G)]]


@pytest.mark.parametrize("pkt", [query2(src="2001:db8::1"), query2(hlim=2),
                                 query2(group="2001:db8::1")])
def test_bad_queries(pkt: bytes) -> None:
    sim, h, ih = host()
    sim.inject(h, ih, pkt)
    sim.run_for(12)
    assert reports(sim) == []
    assert h.node.mld6stat.mlds_rcv_badqueries == 1


def test_mldv1_compatibility() -> None:
    sim, h, ih = host()
    h.node.mld6.join(ih, P(G), sim.now)
    sim.run_for(3)
    sim.log.clear()
    q1 = bytes(IPv6(src="fe80::1", dst="ff02::1", hlim=1) / IPv6ExtHdrHopByHop(options=[RouterAlert()])
               / ICMPv6MLQuery(mrd=1000, mladdr="::"))
    sim.inject(h, ih, q1)
    sim.run_for(2)
    v1 = [IPv6(f.packet) for _, _, _, f in sim.log if IPv6(f.packet).haslayer(ICMPv6MLReport)]
    assert {p.dst for p in v1} == {G, in6.ntop(in6.solicited_node(h.node.ifaddrs.get(ih).linklocal().addr))}
    assert all(p[ICMPv6MLReport].mladdr == p.dst for p in v1)
    assert reports(sim) == []
    # in MLDv1 mode a leave is a Done to all-routers
    sim.log.clear()
    h.node.mld6.leave(ih, P(G), sim.now)
    sim.run_for(2)
    done = [IPv6(f.packet) for _, _, _, f in sim.log if IPv6(f.packet).haslayer(ICMPv6MLDone)]
    assert done and done[0].dst == "ff02::2" and done[0][ICMPv6MLDone].mladdr == G
    # another listener's v1 report suppresses ours
    sim.log.clear()
    h.node.mld6.join(ih, P("ff05::2"), sim.now)
    sim.run_for(3)
    sim.log.clear()
    sim.inject(h, ih, bytes(IPv6(src="fe80::1", dst="ff02::1", hlim=1) / IPv6ExtHdrHopByHop(options=[RouterAlert()])
                            / ICMPv6MLQuery(mrd=5000, mladdr="ff05::2")))
    sim.inject(h, ih, bytes(IPv6(src="fe80::9", dst="ff05::2", hlim=1) / IPv6ExtHdrHopByHop(options=[RouterAlert()])
                            / ICMPv6MLReport(mladdr="ff05::2")))
    sim.run_for(6)
    assert [f for _, _, _, f in sim.log if IPv6(f.packet).haslayer(ICMPv6MLReport)] == []


def test_max_response_code() -> None:
    assert max_response_delay(1000) == 1.0
    assert max_response_delay(0x8000) == (0x1000 << 3) / 1000
    assert max_response_delay(0xFFFF) == ((0xFFF | 0x1000) << 10) / 1000


def test_many_groups_fill_several_reports() -> None:
    sim, h, ih = host()
    for i in range(130):
        h.node.mld6.join(ih, P(f"ff05::{i + 1:x}"), sim.now)
    sim.run_for(3)
    sim.log.clear()
    sim.inject(h, ih, query2(mrd=100))
    sim.run_for(1)
    reps = reports(sim)
    assert len(reps) == 3 and sum(len(r) for _, r in reps) == 131
    assert all(len(f.packet) <= 1280 for _, _, _, f in sim.log)

