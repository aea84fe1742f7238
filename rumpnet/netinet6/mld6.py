"""Multicast Listener Discovery for hosts (NetBSD's ``mld6.c``; RFC 3810 MLDv2, with the
RFC 2710 MLDv1 compatibility of RFC 3810 8).

Joining a group on an interface (:meth:`Mld6.join`, which the node does for all-nodes and
for each address's solicited-node group) sends an unsolicited State Change Report
(CHANGE_TO_EXCLUDE_MODE, no sources) and repeats it ``Robustness Variable - 1`` times at
random intervals up to the Unsolicited Report Interval (RFC 3810 6.1); leaving sends
CHANGE_TO_INCLUDE_MODE the same way. Queries are answered after a random part of their
Maximum Response Delay with Current State Reports (6.2). Reports go to ff02::16 with hop
limit 1 and a Router Alert option (5), from the link-local address, or from :: while
there is none yet (5.2.13), so switches that snoop MLD and Linux bridges deliver the
solicited-node groups ND needs. ff02::1 and groups of scope 0 and 1 are never reported.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass
from typing import Any, cast

from rumpnet.netinet6 import in6
from rumpnet.netinet6.icmp6 import (
    MLD_LISTENER_DONE,
    MLD_LISTENER_QUERY,
    MLD_LISTENER_REPORT,
    MLDV2_LISTENER_REPORT,
    Icmp6Input,
    Icmp6Repr,
    emit,
)
from rumpnet.netinet6.in6_var import In6Ifaddrs
from rumpnet.netinet6.ip6 import IPPROTO_HOPOPTS, IPPROTO_ICMPV6, IPV6_MMTU, ip6_build, router_alert_hbh
from rumpnet.netinet6.ip6_var import Counters, Ip6Core, Outbox

MLD_ROBUSTNESS = 2                     # RFC 3810 9.1
MLD_QUERY_INTERVAL = 125.0             # 9.2
MLD_QUERY_RESPONSE_INTERVAL = 10.0     # 9.3
MLD_UNSOLICITED_REPORT_INTERVAL = 1.0  # 9.11
MLD_V1_QUERY_LEN = 24
MLD_V2_QUERY_LEN = 28
MLD_RECORD_LEN = 20
# CHANGE_TO_INCLUDE / CHANGE_TO_EXCLUDE / MODE_IS_EXCLUDE record types (RFC 3810 5.2.12).
MODE_IS_EXCLUDE = 2
CHANGE_TO_INCLUDE_MODE = 3
CHANGE_TO_EXCLUDE_MODE = 4
_RECORDS_PER_REPORT = (IPV6_MMTU - 40 - 8 - 8) // MLD_RECORD_LEN


def mld_reportable(group: int) -> bool:
    """RFC 3810 6: never about scope 0 or 1 groups, nor the link-scope all-nodes group."""
    return in6.is_multicast(group) and in6.mc_scope(group) >= 2 and group != in6.IN6ADDR_LINKLOCAL_ALLNODES


def max_response_delay(code: int) -> float:
    """Maximum Response Code to seconds (RFC 3810 5.1.3): milliseconds below 32768,
    a floating-point form above."""
    if code < 32768:
        return code / 1000
    mant, exp = code & 0xFFF, (code >> 12) & 0x7
    return ((mant | 0x1000) << (exp + 3)) / 1000


@dataclass(slots=True)
class Mld6Stats(Counters):
    """MLD counters (rumpnet's; NetBSD only has the ICMPv6 histograms)."""

    mlds_rcv_queries: int = 0
    mlds_rcv_badqueries: int = 0
    mlds_rcv_reports: int = 0
    mlds_snd_reports: int = 0
    mlds_snd_v1reports: int = 0
    mlds_snd_done: int = 0


class Mld6(Ip6Core):
    """MLD of one node, all interfaces (their ``groups`` are the membership table)."""

    def __init__(self, ifaddrs: In6Ifaddrs, stats: Mld6Stats, rng: random.Random, out: Outbox | None = None) -> None:
        super().__init__(out)
        self.ifaddrs = ifaddrs
        self.stats = stats
        self.rng = rng
        self.robustness = MLD_ROBUSTNESS
        self.pending: dict[tuple[int, int], tuple[int, int]] = {}   # state changes: (rtype, left)
        self.v1_until: dict[int, float] = {}                          # Older Version Querier Present

    # -- membership ------------------------------------------------------------------------
    def join(self, ifindex: int, group: int, now: float, delay: float = 0.0) -> None:
        """``in6_addmulti``: one more listener of ``group`` on the interface; the first
        sends a State Change Report (after ``delay``, RFC 4862 5.4.2's random one)."""
        ext = self.ifaddrs.get(ifindex)
        count = ext.groups.get(group, 0)
        ext.groups[group] = count + 1
        if count == 0 and mld_reportable(group) and not ext.loopback and ext.up:
            self._state_change(ifindex, group, CHANGE_TO_EXCLUDE_MODE, now, delay)

    def report_all(self, ifindex: int, now: float, delay: float = 0.0) -> None:
        """The interface came up: every group it listens to is announced again."""
        ext = self.ifaddrs.get(ifindex)
        if ext.loopback:
            return
        for group in sorted(ext.groups):
            if mld_reportable(group):
                self._state_change(ifindex, group, CHANGE_TO_EXCLUDE_MODE, now, delay)

    def leave(self, ifindex: int, group: int, now: float) -> None:
        """``in6_delmulti``: the last listener gone sends CHANGE_TO_INCLUDE_MODE (or an
        MLDv1 Done)."""
        ext = self.ifaddrs.ifs.get(ifindex)
        if ext is None or group not in ext.groups:
            return
        ext.groups[group] -= 1
        if ext.groups[group] > 0:
            return
        del ext.groups[group]
        self.timers.cancel(("grp", ifindex, group))
        if mld_reportable(group) and not ext.loopback and ext.up:
            self._state_change(ifindex, group, CHANGE_TO_INCLUDE_MODE, now, 0.0)

    def purge_if(self, ifindex: int) -> None:
        """The interface is gone: forget its groups and timers without a word."""
        ext = self.ifaddrs.ifs.get(ifindex)
        if ext is not None:
            ext.groups.clear()
        for key in [k for k in self.pending if k[0] == ifindex]:
            del self.pending[key]
            self.timers.cancel(("sc",) + key)
        self.timers.cancel(("gq", ifindex))
        self.v1_until.pop(ifindex, None)

    def _state_change(self, ifindex: int, group: int, rtype: int, now: float, delay: float) -> None:
        """RFC 3810 6.1: now (or after ``delay``), then Robustness - 1 more times."""
        key = (ifindex, group)
        self.pending[key] = (rtype, self.robustness)
        self.timers.set(("sc",) + key, now + delay)

    # -- input -------------------------------------------------------------------------------
    def input(self, inp: Icmp6Input, now: float) -> None:
        """Queries (130) and other listeners' reports (131, for MLDv1 suppression)."""
        st = self.stats
        if inp.icmp6_type == MLD_LISTENER_REPORT:
            st.mlds_rcv_reports += 1
            if len(inp.msg) >= MLD_V1_QUERY_LEN and self._v1(inp.ifindex, now):
                # RFC 2710 4: another listener reported the group; ours is not needed.
                self.timers.cancel(("grp", inp.ifindex, in6.unpack(inp.msg, 8)))
            return
        if inp.icmp6_type != MLD_LISTENER_QUERY:
            return
        st.mlds_rcv_queries += 1
        n = len(inp.msg)
        # RFC 3810 5.1.14, 7.4 and RFC 2710 5: link-local source, hop limit 1, a length
        # of 24 (v1) or at least 28 (v2).
        if not in6.is_linklocal(inp.src) or inp.hlim != 1 or (n != MLD_V1_QUERY_LEN and n < MLD_V2_QUERY_LEN):
            st.mlds_rcv_badqueries += 1
            return
        group = in6.unpack(inp.msg, 8)
        if group != in6.IN6ADDR_ANY and not in6.is_multicast(group):
            st.mlds_rcv_badqueries += 1
            return
        if n == MLD_V1_QUERY_LEN:
            # RFC 3810 8.2.1: an MLDv1 querier is present; answer in MLDv1 for a while.
            self.v1_until[inp.ifindex] = now + self.robustness * MLD_QUERY_INTERVAL + MLD_QUERY_RESPONSE_INTERVAL
            mrd = struct.unpack_from("!H", inp.msg, 4)[0] / 1000
        else:
            mrd = max_response_delay(struct.unpack_from("!H", inp.msg, 4)[0])
            qrv = inp.msg[24] & 0x7
            if qrv:
                self.robustness = qrv
        self._schedule_response(inp.ifindex, group, mrd, now)

    def _schedule_response(self, ifindex: int, group: int, mrd: float, now: float) -> None:
        """RFC 3810 6.2: a random delay within the Maximum Response Delay; a pending
        answer due sooner already covers a new query."""
        ext = self.ifaddrs.ifs.get(ifindex)
        if ext is None:
            return
        when = now + self.rng.uniform(0, max(mrd, 0.0))
        gq = self.timers.get(("gq", ifindex))
        if gq is not None and gq <= when:
            return
        if group == in6.IN6ADDR_ANY and not self._v1(ifindex, now):
            self.timers.set(("gq", ifindex), when)
            return
        for g in (ext.groups if group == in6.IN6ADDR_ANY else (group,)):
            if g in ext.groups and mld_reportable(g):
                cur = self.timers.get(("grp", ifindex, g))
                if cur is None or cur > when:
                    self.timers.set(("grp", ifindex, g), when)

    def _v1(self, ifindex: int, now: float) -> bool:
        until = self.v1_until.get(ifindex)
        return until is not None and until > now

    # -- output ------------------------------------------------------------------------------
    def _source(self, ifindex: int) -> int:
        ext = self.ifaddrs.ifs.get(ifindex)
        ll = ext.linklocal() if ext is not None else None
        return ll.addr if ll is not None else in6.IN6ADDR_ANY   # RFC 3810 5.2.13

    def _send(self, ifindex: int, dst: int, r: Icmp6Repr) -> None:
        src = self._source(ifindex)
        msg = emit(r, src, dst)
        payload = router_alert_hbh(IPPROTO_ICMPV6) + msg
        self.out.send(ip6_build(src, dst, IPPROTO_HOPOPTS, payload, 1), ifindex)

    def send_report(self, ifindex: int, records: list[tuple[int, int]]) -> None:
        """MLDv2 reports (type 143) of (record type, group) records, as many records per
        report as fit in 1280 bytes."""
        for i in range(0, len(records), _RECORDS_PER_REPORT):
            chunk = records[i:i + _RECORDS_PER_REPORT]
            body = b"".join(struct.pack("!BBH", rtype, 0, 0) + in6.pack(g) for rtype, g in chunk)
            self._send(ifindex, in6.IN6ADDR_LINKLOCAL_ALLV2ROUTERS, Icmp6Repr(MLDV2_LISTENER_REPORT, 0, len(chunk), body))
            self.stats.mlds_snd_reports += 1

    def _send_v1(self, ifindex: int, icmp6_type: int, group: int) -> None:
        dst = group if icmp6_type == MLD_LISTENER_REPORT else in6.IN6ADDR_LINKLOCAL_ALLROUTERS
        self._send(ifindex, dst, Icmp6Repr(icmp6_type, 0, 0, in6.pack(group)))
        if icmp6_type == MLD_LISTENER_REPORT:
            self.stats.mlds_snd_v1reports += 1
        else:
            self.stats.mlds_snd_done += 1

    # -- timers -------------------------------------------------------------------------------
    def timeout(self, key: object, now: float) -> None:
        k = cast(tuple[Any, ...], key)
        ifindex = k[1]
        ext = self.ifaddrs.ifs.get(ifindex)
        if ext is None:
            return
        if k[0] == "gq":
            records = [(MODE_IS_EXCLUDE, g) for g in sorted(ext.groups) if mld_reportable(g)]
            if records:
                self.send_report(ifindex, records)
        elif k[0] == "grp":
            if k[2] in ext.groups:
                if self._v1(ifindex, now):
                    self._send_v1(ifindex, MLD_LISTENER_REPORT, k[2])
                else:
                    self.send_report(ifindex, [(MODE_IS_EXCLUDE, k[2])])
        elif k[0] == "sc":
            self._state_change_timeout(ifindex, k[2], now)

    def _state_change_timeout(self, ifindex: int, group: int, now: float) -> None:
        pend = self.pending.get((ifindex, group))
        if pend is None:
            return
        rtype, left = pend
        if self._v1(ifindex, now):
            self._send_v1(ifindex, MLD_LISTENER_REPORT if rtype == CHANGE_TO_EXCLUDE_MODE else MLD_LISTENER_DONE,
                          group)
        else:
            self.send_report(ifindex, [(rtype, group)])
        if left > 1:
            self.pending[(ifindex, group)] = (rtype, left - 1)
            self.timers.set(("sc", ifindex, group), now + self.rng.uniform(0, MLD_UNSOLICITED_REPORT_INTERVAL))
        else:
            del self.pending[(ifindex, group)]
