"""Router advertisements from a router (what NetBSD's ``rtadvd(8)`` daemon does; RFC 4861
6.2), so that the router example can give hosts (Linux's SLAAC included) their prefixes
and default router.

:meth:`Rtadvd.start` makes an interface an advertising interface with an
:class:`RtadvConfig` (the ``rtadvd.conf`` knobs): unsolicited Router Advertisements go
to all-nodes at random intervals in [MinRtrAdvInterval, MaxRtrAdvInterval], the first
MAX_INITIAL_RTR_ADVERTISEMENTS no more than 16 seconds apart (6.2.4); a valid Router
Solicitation is answered after a random delay up to MAX_RA_DELAY_TIME, but never sooner
than MIN_DELAY_BETWEEN_RAS after the last advertisement (6.2.6); :meth:`Rtadvd.stop`
sends final advertisements with a zero router lifetime (6.2.5); :meth:`Rtadvd.abort` stops
at once (a daemon killed).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import cast

from rumpnet.netinet6 import in6
from rumpnet.netinet6.icmp6 import Icmp6Input, Icmp6Stats
from rumpnet.netinet6.in6_var import In6Ifaddrs
from rumpnet.netinet6.ip6 import IPPROTO_ICMPV6, ip6_build
from rumpnet.netinet6.ip6_var import Ip6Core, Outbox
from rumpnet.netinet6.nd6 import ND_OPT_SOURCE_LINKADDR, Nd6, NdPrefixInfo, nd6_recv_options, opt_lladdr, opt_mtu, opt_prefix
from rumpnet.netinet6.nd6_nbr import ND_HOPLIMIT
from rumpnet.netinet6.nd6_rtr import ND_RA_FLAG_MANAGED, ND_RA_FLAG_OTHER, RS_LEN, RaRepr, emit_ra

MAX_INITIAL_RTR_ADVERT_INTERVAL = 16.0
MAX_INITIAL_RTR_ADVERTISEMENTS = 3
MAX_FINAL_RTR_ADVERTISEMENTS = 3
MIN_DELAY_BETWEEN_RAS = 3.0
MAX_RA_DELAY_TIME = 0.5


@dataclass(slots=True)
class RtadvConfig:
    """What to advertise on one interface (RFC 4861 6.2.1's AdvXxx variables)."""

    prefixes: list[NdPrefixInfo] = field(default_factory=list)
    maxinterval: float = 600.0
    mininterval: float = 0.0        # 0: a third of maxinterval (6.2.1 default)
    lifetime: int = -1              # router lifetime, s; -1: 3 * maxinterval; 0: not a default router
    chlim: int = 64
    managed: bool = False
    other: bool = False
    reachable: int = 0              # ms, 0: unspecified
    retrans: int = 0                # ms, 0: unspecified
    mtu: int = 0                    # 0: no MTU option

    def interval(self, rng: random.Random) -> float:
        lo = self.mininterval or self.maxinterval / 3
        return rng.uniform(lo, self.maxinterval)

    def router_lifetime(self) -> int:
        return int(3 * self.maxinterval) if self.lifetime < 0 else self.lifetime


class _Adv:
    __slots__ = ("config", "initial", "last", "final")

    def __init__(self, config: RtadvConfig) -> None:
        self.config = config
        self.initial = 0
        self.last = -1e18
        self.final = 0


class Rtadvd(Ip6Core):
    """The advertising interfaces of one router."""

    def __init__(self, ifaddrs: In6Ifaddrs, stats: Icmp6Stats, nd6: Nd6, rng: random.Random,
                 out: Outbox | None = None) -> None:
        super().__init__(out)
        self.ifaddrs = ifaddrs
        self.stats = stats
        self.nd6 = nd6
        self.rng = rng
        self.ifs: dict[int, _Adv] = {}

    def start(self, ifindex: int, config: RtadvConfig, now: float) -> None:
        self.ifs[ifindex] = _Adv(config)
        self.timers.set(ifindex, now)

    def stop(self, ifindex: int, now: float) -> None:
        """6.2.5: final advertisements with router lifetime 0."""
        adv = self.ifs.get(ifindex)
        if adv is None:
            return
        adv.final = MAX_FINAL_RTR_ADVERTISEMENTS
        self.timers.set(ifindex, now)

    def abort(self, ifindex: int) -> None:
        """The daemon is gone without a word (killed): no more advertisements on
        ``ifindex``, and no final ones; final advertisements under way go on."""
        adv = self.ifs.get(ifindex)
        if adv is None or adv.final:
            return
        del self.ifs[ifindex]
        self.timers.cancel(ifindex)

    def ra_output(self, ifindex: int, now: float, lifetime: int | None = None) -> bool:
        adv = self.ifs[ifindex]
        ext = self.ifaddrs.ifs.get(ifindex)
        ll = ext.linklocal() if ext is not None else None
        if ext is None or ll is None or ext.disabled:
            return False    # 6.1.2: only from a link-local address that is ours
        c = adv.config
        opts = opt_lladdr(ND_OPT_SOURCE_LINKADDR, ext.lladdr) if ext.lladdr else b""
        if c.mtu:
            opts += opt_mtu(c.mtu)
        opts += b"".join(opt_prefix(pi) for pi in c.prefixes)
        flags = (ND_RA_FLAG_MANAGED if c.managed else 0) | (ND_RA_FLAG_OTHER if c.other else 0)
        r = RaRepr(c.chlim, flags, c.router_lifetime() if lifetime is None else lifetime, c.reachable, c.retrans, opts)
        dst = in6.IN6ADDR_LINKLOCAL_ALLNODES
        self.out.send(ip6_build(ll.addr, dst, IPPROTO_ICMPV6, emit_ra(r, ll.addr, dst), ND_HOPLIMIT), ifindex)
        self.stats.icp6s_outhist[134] += 1
        adv.last = now
        return True

    def rs_input(self, inp: Icmp6Input, now: float) -> None:
        """``nd6_rs_input`` on a router (RFC 4861 6.1.1, 6.2.6)."""
        adv = self.ifs.get(inp.ifindex)
        if adv is None or adv.final:
            return
        if inp.hlim != ND_HOPLIMIT or inp.code != 0 or len(inp.msg) < RS_LEN:
            self.stats.icp6s_badrs += 1
            return
        opts = nd6_recv_options(inp.msg, RS_LEN, self.ifaddrs.ifs.get(inp.ifindex), self.stats, "icp6s_badrs")
        if opts is None:
            return
        if inp.src == in6.IN6ADDR_ANY and opts.src_lladdr is not None:
            self.stats.icp6s_badrs += 1
            return
        self.nd6.cache_lladdr(inp.ifindex, inp.src, opts.src_lladdr, now, isrouter=False)
        when = max(now + self.rng.uniform(0, MAX_RA_DELAY_TIME), adv.last + MIN_DELAY_BETWEEN_RAS)
        cur = self.timers.get(inp.ifindex)
        if cur is None or cur > when:
            self.timers.set(inp.ifindex, when)

    def timeout(self, key: object, now: float) -> None:
        ifindex = cast(int, key)
        adv = self.ifs.get(ifindex)
        if adv is None:
            return
        if adv.final:
            self.ra_output(ifindex, now, lifetime=0)
            adv.final -= 1
            if adv.final:
                self.timers.set(ifindex, now + MIN_DELAY_BETWEEN_RAS)
            else:
                del self.ifs[ifindex]
            return
        if not self.ra_output(ifindex, now):
            self.timers.set(ifindex, now + 1.0)   # no link-local address yet (DAD)
            return
        interval = adv.config.interval(self.rng)
        if adv.initial < MAX_INITIAL_RTR_ADVERTISEMENTS:
            adv.initial += 1
            interval = min(interval, MAX_INITIAL_RTR_ADVERT_INTERVAL)
        self.timers.set(ifindex, now + interval)
