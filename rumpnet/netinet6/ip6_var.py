"""IPv6 tunables, counters and the sans-IO shape shared by the netinet6 cores
(NetBSD's ``ip6_var.h``).

Every core (``frag6``, ``icmp6``, ``nd6``, ``nd6_nbr``, ``nd6_rtr``, ``mld6``) is an
:class:`Ip6Core`: bytes and ``now`` go in through its methods; what it wants sent comes
out of :meth:`Ip6Core.packets_to_send` as :class:`Ip6Send` records (whole IPv6 packets),
what it wants the stack to know out of :meth:`Ip6Core.next_event`, and its deadlines
through the one timer idiom TCP's core uses: :meth:`Ip6Core.get_timer` (the earliest
deadline, or None) and :meth:`Ip6Core.handle_timer` (run what is due at ``now``). Cores
of one node share one :class:`Outbox`, so a node drains a single queue.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field, fields
from typing import Generic, Protocol, TypeVar

from rumpnet.netinet6.ip6 import IPV6_DEFHLIM

IPV6_FRAGTTL = 60.0     # seconds a reassembly queue lives (RFC 8200 4.5)
IPV6_HDRNESTLIMIT = 15  # extension headers walked at most (NetBSD ip6_hdrnestlimit)


class Ip6Params:
    """``net.inet6.ip6.*`` tunables (NetBSD names and defaults)."""

    def __init__(self) -> None:
        self.forwarding = 0
        self.redirect = 1              # send redirects when forwarding
        self.hlim = IPV6_DEFHLIM
        self.defmcasthlim = 1
        self.accept_rtadv = 0          # configure from router advertisements (hosts)
        self.dad_count = 1             # DupAddrDetectTransmits (RFC 4862 5.1)
        self.auto_linklocal = 1
        self.auto_flowlabel = 1        # RFC 6437 flow labels from a keyed hash
        self.use_deprecated = 1
        self.v6only = 1
        self.use_defzone = 0
        self.hdrnestlimit = IPV6_HDRNESTLIMIT
        self.maxfragpackets = 200      # datagrams under reassembly; 0 none, -1 no limit
        self.maxfrags = 2000           # fragments held over all queues
        self.maxfragsperpacket = 64    # (a rumpnet cap, as net.inet.ip has)
        self.maxfragbytes = 4 << 20    # payload bytes held (a rumpnet memory cap)
        self.mtudisctimeout = 600      # seconds a learned path MTU lives (RFC 8201 4)
        self.neighborgcthresh = 2048   # neighbour cache entries at most
        self.rtadv_maxroutes = 100     # routers and prefixes learned from RAs at most


class Counters:
    """What every ``*stat`` dataclass of netinet6 offers beside its fields."""

    __slots__ = ()

    def bump(self, kind: str, n: int = 1) -> None:
        """Add ``n`` to the counter named ``kind`` (a parse error's kind)."""
        setattr(self, kind, getattr(self, kind) + n)

    def nonzero(self) -> dict[str, int]:
        """The scalar counters that are not zero (for tests and ``netstat -s``)."""
        out = {}
        for f in fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            if isinstance(v, int) and v:
                out[f.name] = v
        return out


@dataclass(slots=True)
class Ip6Stats(Counters):
    """``struct ip6stat`` (``net.inet6.ip6.stats``), names as NetBSD's ``netstat -s``.

    rumpnet's own, for drops NetBSD does not count: ``ip6s_fragoverlap`` (RFC 5722
    overlaps), ``ip6s_atomicfrags`` (RFC 6946 atomic fragments, FreeBSD's name),
    ``ip6s_notready`` (to a tentative or duplicated address, RFC 4862 5.4) and
    ``ip6s_ifdisabled`` (the receiving interface is down or has IPv6 off, RFC 4862 5.4.5).
    """

    ip6s_total: int = 0
    ip6s_tooshort: int = 0
    ip6s_toosmall: int = 0
    ip6s_fragments: int = 0
    ip6s_fragdropped: int = 0
    ip6s_fragtimeout: int = 0
    ip6s_fragoverflow: int = 0
    ip6s_forward: int = 0
    ip6s_cantforward: int = 0
    ip6s_redirectsent: int = 0
    ip6s_delivered: int = 0
    ip6s_localout: int = 0
    ip6s_odropped: int = 0
    ip6s_reassembled: int = 0
    ip6s_atomicfrags: int = 0
    ip6s_fragmented: int = 0
    ip6s_ofragments: int = 0
    ip6s_cantfrag: int = 0
    ip6s_badoptions: int = 0
    ip6s_noroute: int = 0
    ip6s_badvers: int = 0
    ip6s_rawout: int = 0
    ip6s_badscope: int = 0
    ip6s_notmember: int = 0
    ip6s_toomanyhdr: int = 0
    ip6s_exthdrtoolong: int = 0
    ip6s_fragoverlap: int = 0
    ip6s_notready: int = 0
    ip6s_ifdisabled: int = 0
    ip6s_nxthist: list[int] = field(default_factory=lambda: [0] * 256)


# -- what cores emit --------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Ip6Send:
    """A whole IPv6 packet a core wants sent.

    ``ifindex`` 0: route it (``Ip6Output.route``: route lookup, MTU, next hop);
    otherwise send it on that interface, to ``lladdr`` when the link-layer destination
    is known already, else to the multicast mapping of a multicast destination, else to
    the neighbour ``nexthop`` (0: the packet's destination) through ``nd6.resolve``.
    """

    packet: bytes
    ifindex: int = 0
    lladdr: bytes | None = None
    nexthop: int = 0


@dataclass(frozen=True, slots=True)
class Icmp6ErrorRequest:
    """A core asks the node to report a problem with ``packet`` (as received, IPv6
    header first) with an ICMPv6 error (``icmp6.Icmp6.error``). ``l2mcast``: the packet
    came as a link-layer multicast or broadcast (RFC 4443 2.4 e.3-5)."""

    packet: bytes
    ifindex: int
    icmp6_type: int
    code: int
    param: int = 0
    l2mcast: bool = False


class Outbox:
    """Packets and events waiting to be pulled by the stack, in emission order."""

    def __init__(self) -> None:
        self.packets: deque[Ip6Send] = deque()
        self.events: deque[object] = deque()
        # Deadlines armed by the cores sharing this outbox (every Deadlines.set): the glue
        # asks the cores for their earliest deadline again only after this moved.
        self.timers_armed = 0

    def send(self, packet: bytes, ifindex: int = 0, lladdr: bytes | None = None, nexthop: int = 0) -> None:
        self.packets.append(Ip6Send(packet, ifindex, lladdr, nexthop))

    def event(self, ev: object) -> None:
        self.events.append(ev)


K = TypeVar("K")


class ArmCount(Protocol):
    """Where a node counts the deadlines its cores arm (:attr:`Outbox.timers_armed`)."""

    timers_armed: int


class Deadlines(Generic[K]):
    """Deadlines by key, earliest first: a heap with lazy deletion, so re-arming a timer
    costs one push and cancelling none. Keys are any hashable values. Each ``set`` is
    counted in ``armed`` (the node's :class:`Outbox`) when given: a node whose count did
    not move has no deadline earlier than the one it last reported."""

    def __init__(self, armed: ArmCount | None = None) -> None:
        self._when: dict[K, float] = {}
        self._heap: list[tuple[float, int, K]] = []
        self._seq = 0
        self._armed = armed

    def __len__(self) -> int:
        return len(self._when)

    def __contains__(self, key: K) -> bool:
        return key in self._when

    def set(self, key: K, when: float) -> None:
        self._when[key] = when
        if self._armed is not None:
            self._armed.timers_armed += 1
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, key))
        if len(self._heap) > 2 * len(self._when) + 64:
            self._heap = [(w, i, k) for w, i, k in self._heap if self._when.get(k) == w]
            heapq.heapify(self._heap)

    def get(self, key: K) -> float | None:
        return self._when.get(key)

    def cancel(self, key: K) -> None:
        self._when.pop(key, None)

    def earliest(self) -> float | None:
        h = self._heap
        while h and self._when.get(h[0][2]) != h[0][0]:
            heapq.heappop(h)
        return h[0][0] if h else None

    def pop_due(self, now: float) -> K | None:
        """The key of the earliest deadline at or before ``now`` (removed), or None."""
        when = self.earliest()
        if when is None or when > now:
            return None
        key = heapq.heappop(self._heap)[2]
        del self._when[key]
        return key


class Ip6Core:
    """The sans-IO shape every netinet6 core has (see the module docstring)."""

    def __init__(self, out: Outbox | None = None) -> None:
        self.out = out if out is not None else Outbox()
        self.timers: Deadlines[object] = Deadlines(self.out)

    def packets_to_send(self) -> list[Ip6Send]:
        """Every packet emitted since the last call, oldest first."""
        q = self.out.packets
        pkts = list(q)
        q.clear()
        return pkts

    def next_event(self) -> object | None:
        q = self.out.events
        return q.popleft() if q else None

    def get_timer(self) -> float | None:
        """The earliest deadline of this core, or None when nothing is pending."""
        return self.timers.earliest()

    def handle_timer(self, now: float) -> None:
        """Run every deadline at or before ``now``, including ones armed meanwhile."""
        while (key := self.timers.pop_due(now)) is not None:
            self.timeout(key, now)

    def timeout(self, key: object, now: float) -> None:
        """A deadline armed with ``self.timers.set(key, when)`` came due."""
        raise NotImplementedError
