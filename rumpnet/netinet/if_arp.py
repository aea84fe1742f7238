"""ARP (RFC 826; NetBSD's ``if_arp.c``): resolution, cache, static and published entries.

Entries expire ``net.inet.arp.keep`` seconds after they were learned (a timer per entry,
so virtual time can jump straight to it). Packets wait in a short queue while an address
is being resolved; requests for one address go out at most once a second and after
``maxtries`` unanswered ones the host is marked down for ``down`` seconds.
"""

from __future__ import annotations

import errno
import struct
from collections import deque
from typing import TYPE_CHECKING, Any

from rumpkern.errno import kerr
from rumpnet.ifnet import ETHER_BROADCAST, ETHERTYPE_ARP, ETHERTYPE_IP

if TYPE_CHECKING:
    from rumpnet.ifnet import Ifnet
    from rumpnet.netinet.in_proto import Inet

ARPHRD_ETHER = 1
ARPOP_REQUEST = 1
ARPOP_REPLY = 2
ARP_PKT = struct.Struct("!HHBBH6sI6sI")
ARP_LEN = ARP_PKT.size  # 28

ARP_CONFLICTS_KEPT = 32

LLE_INCOMPLETE = 0
LLE_VALID = 1
LLE_DOWN = 2
# No longer in the table (NetBSD's LLE_DELETED): set on an entry removed or replaced, so
# that whoever still holds it (ip_output's RouteCache) sees it is stale without a lookup.
LLE_DELETED = 3


class ArpParams:
    def __init__(self) -> None:
        self.keep = 1200  # seconds a learned entry lives (arpt_keep)
        self.down = 20  # seconds a host stays "down" after maxtries unanswered requests
        self.maxtries = 5
        self.maxhold = 16  # packets queued per entry while resolving
        self.log_movements = 1
        self.log_permanent_modify = 1


class LlEntry:
    """A link-layer entry (``struct llentry``)."""

    __slots__ = ("ip", "mac", "ifp", "state", "static", "published", "expire", "hold", "asked",
                 "last_request", "timer")

    def __init__(self, ip: int, ifp: Ifnet) -> None:
        self.ip = ip
        self.mac: bytes | None = None
        self.ifp = ifp
        self.state = LLE_INCOMPLETE
        self.static = False
        self.published = False
        self.expire = 0.0  # 0: never (static)
        self.hold: list[bytes | bytearray] = []
        self.asked = 0
        self.last_request = -1e18
        self.timer: Any = None


class Arp:
    def __init__(self, inet: Inet) -> None:
        self.inet = inet
        self.params = inet.arp_params
        self.stats = inet.arpstat
        self.table: dict[int, LlEntry] = {}
        # Recent address conflicts (address, the other MAC), newest last. Bounded: before
        # this fix every conflicting frame was appended, so a peer (or a flood of forged
        # ARP) claiming our address grew the list without limit.
        self.conflicts: deque[tuple[int, bytes]] = deque(maxlen=ARP_CONFLICTS_KEPT)

    # -- timers ----------------------------------------------------------------------
    def _arm(self, lle: LlEntry, when: float) -> None:
        if lle.timer is not None:
            lle.timer.cancel()
        lle.timer = self.inet.kernel.sched.call_at(when, self._timer, lle)

    def _timer(self, lle: LlEntry) -> None:
        lle.timer = None
        if self.table.get(lle.ip) is not lle:
            return
        now = self.inet.now()
        if lle.state == LLE_INCOMPLETE:
            if lle.asked >= self.params.maxtries:
                # Give up: drop what waited and remember the host is down for a while.
                self.stats.as_dfrdropped += len(lle.hold)
                lle.hold.clear()
                lle.state = LLE_DOWN
                self._arm(lle, now + self.params.down)
            else:
                self._request(lle, now)
            return
        if lle.static:
            return
        self.remove(lle.ip)

    # -- resolution ------------------------------------------------------------------
    def output(self, ifp: Ifnet, pkt: bytes | bytearray, nexthop: int, is_bcast: bool) -> None:
        """``arpresolve`` + ``ether_output`` for an IPv4 packet toward ``nexthop``."""
        if ifp.l3_output is not None:
            ifp.l3_output(pkt)  # a point-to-point interface with no link layer (tun)
            return
        if is_bcast or nexthop == 0xFFFFFFFF:
            ifp.ether_output(pkt, ETHER_BROADCAST, ETHERTYPE_IP)
            return
        if (nexthop >> 28) == 0xE:
            # RFC 1112 6.4: 01:00:5e + low 23 bits of the group address.
            mac = bytes((0x01, 0x00, 0x5E, (nexthop >> 16) & 0x7F, (nexthop >> 8) & 0xFF, nexthop & 0xFF))
            ifp.ether_output(pkt, mac, ETHERTYPE_IP)
            return
        lle = self.table.get(nexthop)
        if lle is not None and lle.state == LLE_VALID and lle.mac is not None:
            ifp.ether_output(pkt, lle.mac, ETHERTYPE_IP)
            return
        now = self.inet.now()
        if lle is None:
            lle = LlEntry(nexthop, ifp)
            self.table[nexthop] = lle
        elif lle.state == LLE_DOWN:
            self.stats.as_dfrdropped += 1
            raise kerr(errno.EHOSTDOWN)
        self.stats.as_dfrtotal += 1
        if len(lle.hold) >= self.params.maxhold:
            lle.hold.pop(0)
            self.stats.as_dfrdropped += 1
        lle.hold.append(pkt)
        if now - lle.last_request >= 1.0:
            self._request(lle, now)

    def _request(self, lle: LlEntry, now: float) -> None:
        ifa = self.inet.ifa_on_link(lle.ip) or self.inet.ifa_for_ifp(lle.ifp)
        if ifa is None:
            return
        lle.asked += 1
        lle.last_request = now
        self.request(lle.ifp, ifa.addr, lle.ip)
        self._arm(lle, now + 1.0)

    def request(self, ifp: Ifnet, sip: int, tip: int) -> None:
        st = self.stats
        st.as_sndtotal += 1
        st.as_sndrequest += 1
        pkt = ARP_PKT.pack(ARPHRD_ETHER, ETHERTYPE_IP, 6, 4, ARPOP_REQUEST, ifp.lladdr, sip, b"\0" * 6, tip)
        ifp.ether_output(pkt, ETHER_BROADCAST, ETHERTYPE_ARP)

    def announce(self, ifp: Ifnet, addr: int) -> None:
        """Gratuitous ARP for a newly configured address (``arp_ifinit``, RFC 5227 2.3)."""
        if ifp.loopback or ifp.l3_output is not None or not ifp.running:
            return  # no ARP without a link layer (loopback, tun)
        self.request(ifp, addr, addr)

    # -- input -----------------------------------------------------------------------
    def input(self, ifp: Ifnet, pkt: memoryview, mcast: int = 0) -> None:
        st = self.stats
        st.as_rcvtotal += 1
        if len(pkt) < ARP_LEN:
            st.as_rcvbadlen += 1
            return
        hrd, pro, hln, pln, op, sha, spa, tha, tpa = ARP_PKT.unpack_from(pkt)
        if hrd != ARPHRD_ETHER or pro != ETHERTYPE_IP or hln != 6 or pln != 4:
            st.as_rcvbadproto += 1
            return
        if op == ARPOP_REQUEST:
            st.as_rcvrequest += 1
        elif op == ARPOP_REPLY:
            st.as_rcvreply += 1
        else:
            st.as_rcvbadproto += 1
            return
        if mcast:
            st.as_rcvmcast += 1
        if sha == ifp.lladdr:
            st.as_rcvlocalsha += 1
            return
        if sha == ETHER_BROADCAST or sha[0] & 1:
            st.as_rcvbcastsha += 1
            return
        if tpa == 0:
            st.as_rcvzerotpa += 1
            return
        inet = self.inet
        myifa = None
        for ifa in ifp.addrs:
            if ifa.addr == tpa:
                myifa = ifa
                break
        if spa != 0 and any(ifa.addr == spa for ifa in ifp.addrs):
            # Someone else claims one of our addresses (RFC 5227 conflict).
            st.as_rcvlocalspa += 1
            self.conflicts.append((spa, sha))
            return
        if spa == 0:
            st.as_rcvzerospa += 1  # RFC 5227 probe: answer, but learn nothing
        else:
            lle = self.table.get(spa)
            if lle is not None:
                self._update(lle, sha, ifp)
            elif myifa is not None:
                lle = LlEntry(spa, ifp)
                self.table[spa] = lle
                self._update(lle, sha, ifp)
        if op != ARPOP_REQUEST:
            return
        if myifa is not None:
            self.reply(ifp, ifp.lladdr, tpa, sha, spa)
            return
        pub = self.table.get(tpa)
        if pub is not None and pub.published and pub.mac is not None and inet.ifa_on_link(spa) is not None:
            self.reply(ifp, pub.mac, tpa, sha, spa)

    def _update(self, lle: LlEntry, sha: bytes, ifp: Ifnet) -> None:
        st = self.stats
        if lle.static:
            if lle.mac != sha:
                st.as_rcvoverperm += 1
            return
        if lle.ifp is not ifp:
            st.as_rcvoverint += 1
            return
        if lle.mac is not None and lle.mac != sha:
            st.as_rcvover += 1
        lle.mac = sha
        lle.state = LLE_VALID
        lle.asked = 0
        now = self.inet.now()
        lle.expire = now + self.params.keep
        self._arm(lle, lle.expire)
        if lle.hold:
            held, lle.hold = lle.hold, []
            for pkt in held:
                st.as_dfrsent += 1
                ifp.ether_output(pkt, sha, ETHERTYPE_IP)

    def reply(self, ifp: Ifnet, sha: bytes, spa: int, tha: bytes, tpa: int) -> None:
        st = self.stats
        st.as_sndtotal += 1
        st.as_sndreply += 1
        pkt = ARP_PKT.pack(ARPHRD_ETHER, ETHERTYPE_IP, 6, 4, ARPOP_REPLY, sha, spa, tha, tpa)
        ifp.ether_output(pkt, tha, ETHERTYPE_ARP)

    # -- administration (arp(8)) -------------------------------------------------------
    def add_static(self, ip: int, mac: bytes, temp: bool = False, published: bool = False) -> LlEntry:
        existing = self.table.get(ip)
        if existing is not None and existing.state != LLE_INCOMPLETE and existing.static:
            # NetBSD: a permanent entry must be deleted first; learned and temporary
            # entries are simply overwritten.
            raise kerr(errno.EEXIST, "File exists")
        ifa = self.inet.ifa_on_link(ip)
        if ifa is None:
            if not published:
                raise kerr(errno.ENETUNREACH, "Network is unreachable")
            ifps = [i for i in self.inet.kernel.ifnet.all() if not i.loopback and i.addrs]
            if not ifps:
                raise kerr(errno.ENETUNREACH, "Network is unreachable")
            ifp = ifps[0]
        else:
            ifp = ifa.ifp
        old = self.table.get(ip)
        lle = LlEntry(ip, ifp)
        if old is not None:
            lle.hold = old.hold
            old.state = LLE_DELETED
            if old.timer is not None:
                old.timer.cancel()
        lle.mac = mac
        lle.state = LLE_VALID
        lle.static = not temp
        lle.published = published
        self.table[ip] = lle
        if temp:
            lle.expire = self.inet.now() + self.params.keep
            self._arm(lle, lle.expire)
        if lle.hold:
            held, lle.hold = lle.hold, []
            for pkt in held:
                ifp.ether_output(pkt, mac, ETHERTYPE_IP)
        return lle

    def remove(self, ip: int) -> LlEntry:
        lle = self.table.pop(ip, None)
        if lle is None:
            raise kerr(errno.ESRCH, "No such process")
        lle.state = LLE_DELETED
        if lle.timer is not None:
            lle.timer.cancel()
            lle.timer = None
        return lle

    def flush_ifp(self, ifp: Ifnet) -> None:
        for ip, lle in list(self.table.items()):
            if lle.ifp is ifp:
                self.remove(ip)

    def lookup(self, ip: int) -> LlEntry | None:
        return self.table.get(ip)

    def entries(self) -> list[LlEntry]:
        return [self.table[ip] for ip in sorted(self.table)]
