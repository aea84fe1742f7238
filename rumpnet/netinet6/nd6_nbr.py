"""Neighbour Solicitation and Advertisement, and duplicate address detection (NetBSD's
``nd6_nbr.c``; RFC 4861 4.3, 4.4, 7; RFC 4862 5.4; RFC 7527).

Every message is checked as RFC 4861 7.1 says before anything is learned from it: hop
limit 255 (a message from off the link, or forwarded by a router, cannot have it), ICMP
code 0, length, a unicast target, option lengths, and the rules for the unspecified
source. Failures are counted (``icp6s_badns``, ``icp6s_badna``, ``icp6s_nd_badopt``).

DAD (:meth:`Nd6Nbr.dad_start`) keeps a new address TENTATIVE while ``dad_count``
solicitations from :: go out a RetransTimer apart, each with an RFC 7527 nonce so that our
own solicitation looped back is not taken for another node's; a solicitation from :: for
the address, or an advertisement of it, makes it DUPLICATED (and a duplicated
hardware-derived link-local address turns IPv6 off on the interface, RFC 4862 5.4.5).
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass
from typing import cast

from rumpnet.netinet6 import in6
from rumpnet.netinet6.icmp6 import ND_NEIGHBOR_ADVERT, ND_NEIGHBOR_SOLICIT, Icmp6Input, Icmp6Repr, Icmp6Stats, emit
from rumpnet.netinet6.in6_src import in6_selectsrc
from rumpnet.netinet6.in6_var import (
    IN6_IFF_ANYCAST,
    IN6_IFF_DUPLICATED,
    IN6_IFF_NODAD,
    IN6_IFF_TENTATIVE,
    ND6_IFF_IFDISABLED,
    In6Ifaddr,
    In6Ifaddrs,
)
from rumpnet.netinet6.ip6 import IPPROTO_ICMPV6, ip6_build
from rumpnet.netinet6.ip6_var import Ip6Core, Ip6Params, Outbox
from rumpnet.netinet6.nd6 import (
    ND_OPT_SOURCE_LINKADDR,
    ND_OPT_TARGET_LINKADDR,
    Nd6,
    NdOpts,
    nd6_recv_options,
    opt_lladdr,
    opt_nonce,
)

ND_NA_FLAG_ROUTER = 0x80000000
ND_NA_FLAG_SOLICITED = 0x40000000
ND_NA_FLAG_OVERRIDE = 0x20000000
ND_HOPLIMIT = 255            # RFC 4861 7.1: only neighbours can send with 255 left
ND_MSG_LEN = 24              # ICMPv6 header + target
MAX_RTR_SOLICITATION_DELAY = 1.0
DAD_NONCE_LEN = 6            # RFC 7527 4.1


@dataclass(frozen=True, slots=True)
class DadCompleted:
    """The address passed DAD: it is usable now (``ifconfig`` drops ``tentative``)."""

    ia: In6Ifaddr


@dataclass(frozen=True, slots=True)
class DadDuplicated:
    """Another node owns the address (RFC 4862 5.4.5); ``ifdisabled``: IPv6 is off on
    the interface because it was the hardware-derived link-local address."""

    ia: In6Ifaddr
    ifdisabled: bool


@dataclass(frozen=True, slots=True)
class Nd6NotRouter:
    """An advertisement cleared IsRouter: drop the neighbour from the default router
    list (RFC 4861 7.2.5)."""

    addr: int
    ifindex: int


@dataclass(frozen=True, slots=True)
class AddressConflict:
    """Someone advertised an address that is ours and in use (RFC 4862 5.4.4 says to log
    it); the stack keeps the address."""

    addr: int
    ifindex: int
    lladdr: bytes | None


class _Dad:
    __slots__ = ("ia", "sent", "nonces")

    def __init__(self, ia: In6Ifaddr) -> None:
        self.ia = ia
        self.sent = 0
        self.nonces: list[bytes] = []


def _target(msg: bytes) -> int:
    return in6.unpack(msg, 8)


class Nd6Nbr(Ip6Core):
    """NS/NA processing and DAD of one node."""

    def __init__(self, ip6: Ip6Params, icmp6stats: Icmp6Stats, ifaddrs: In6Ifaddrs, nd6: Nd6,
                 rng: random.Random, out: Outbox | None = None) -> None:
        super().__init__(out)
        self.ip6 = ip6
        self.stats = icmp6stats
        self.ifaddrs = ifaddrs
        self.nd6 = nd6
        self.rng = rng
        self.dads: dict[tuple[int, int], _Dad] = {}
        nd6.solicit = self.ns_output

    # -- checks -------------------------------------------------------------------------------
    def _check(self, inp: Icmp6Input, counter: str) -> NdOpts | None:
        """RFC 4861 7.1.1 / 7.1.2: the checks NS and NA share."""
        st = self.stats
        if inp.hlim != ND_HOPLIMIT or inp.code != 0 or len(inp.msg) < ND_MSG_LEN:
            st.bump(counter)
            return None
        if in6.is_multicast(_target(inp.msg)):
            st.bump(counter)
            return None
        return nd6_recv_options(inp.msg, ND_MSG_LEN, self.ifaddrs.ifs.get(inp.ifindex), st, counter)

    # -- NS ---------------------------------------------------------------------------------
    def ns_input(self, inp: Icmp6Input, now: float) -> None:
        """``nd6_ns_input`` (RFC 4861 7.2.3, RFC 4862 5.4.3)."""
        opts = self._check(inp, "icp6s_badns")
        if opts is None:
            return
        target = _target(inp.msg)
        dad = inp.src == in6.IN6ADDR_ANY
        if dad and (not in6.is_solicited_node(inp.dst) or opts.src_lladdr is not None):
            self.stats.icp6s_badns += 1   # 7.1.1: DAD goes to solicited-node, without SLLAO
            return
        ia = self.ifaddrs.lookup(target, inp.ifindex)
        if ia is None or ia.ifindex != inp.ifindex:
            return                         # not ours: someone else's solicitation
        if ia.flags & IN6_IFF_TENTATIVE:
            if dad and not self._own_nonce(ia, opts.nonce):
                self.dad_duplicated(ia, now)    # 5.4.3: another node tries it too
            return                              # otherwise 5.4.3 says: silently ignore
        if ia.flags & IN6_IFF_DUPLICATED:
            return
        if not dad:
            self.nd6.cache_lladdr(inp.ifindex, inp.src, opts.src_lladdr, now)
        flags = ND_NA_FLAG_ROUTER if self.ip6.forwarding else 0
        if not ia.flags & IN6_IFF_ANYCAST:
            flags |= ND_NA_FLAG_OVERRIDE       # 7.2.4: not for anycast or proxied targets
        if dad:
            # 7.2.4: to all-nodes, not solicited.
            self.na_output(inp.ifindex, in6.IN6ADDR_LINKLOCAL_ALLNODES, target, flags)
        else:
            self.na_output(inp.ifindex, inp.src, target, flags | ND_NA_FLAG_SOLICITED, opts.src_lladdr)

    def _own_nonce(self, ia: In6Ifaddr, nonce: bytes | None) -> bool:
        d = self.dads.get((ia.ifindex, ia.addr))
        return d is not None and nonce is not None and nonce in d.nonces

    def ns_output(self, ifindex: int, target: int, lladdr: bytes | None, now: float,
                  nonce: bytes | None = None) -> None:
        """``nd6_ns_output``: a multicast solicitation to resolve ``target``, a unicast
        one to ``lladdr`` (NUD probe), or with a ``nonce`` the DAD one from ::."""
        ext = self.ifaddrs.ifs.get(ifindex)
        if ext is None or ext.disabled:
            return
        dst = target if lladdr is not None else in6.solicited_node(target)
        if nonce is not None:
            src = in6.IN6ADDR_ANY
        else:
            ia = in6_selectsrc(target, self.ifaddrs, ifindex)
            if ia is None:
                return     # 7.2.2: the source must be one of the interface's addresses
            src = ia.addr
        body = in6.pack(target)
        if src != in6.IN6ADDR_ANY and ext.lladdr:
            body += opt_lladdr(ND_OPT_SOURCE_LINKADDR, ext.lladdr)
        if nonce is not None:
            body += opt_nonce(nonce)
        msg = emit(Icmp6Repr(ND_NEIGHBOR_SOLICIT, 0, 0, body), src, dst)
        self.out.send(ip6_build(src, dst, IPPROTO_ICMPV6, msg, ND_HOPLIMIT), ifindex, lladdr)
        self.stats.icp6s_outhist[ND_NEIGHBOR_SOLICIT] += 1

    # -- NA ---------------------------------------------------------------------------------
    def na_input(self, inp: Icmp6Input, now: float) -> None:
        """``nd6_na_input`` (RFC 4861 7.2.5, RFC 4862 5.4.4)."""
        opts = self._check(inp, "icp6s_badna")
        if opts is None:
            return
        flags = struct.unpack_from("!I", inp.msg, 4)[0]
        if in6.is_multicast(inp.dst) and flags & ND_NA_FLAG_SOLICITED:
            self.stats.icp6s_badna += 1        # 7.1.2
            return
        target = _target(inp.msg)
        ia = self.ifaddrs.lookup(target, inp.ifindex)
        if ia is not None and ia.ifindex == inp.ifindex:
            if ia.flags & IN6_IFF_TENTATIVE:
                self.dad_duplicated(ia, now)   # 5.4.4
            elif ia.ready:
                self.out.event(AddressConflict(target, inp.ifindex, opts.tgt_lladdr))
            return
        ln = self.nd6.lookup(target, inp.ifindex)
        if ln is None:
            return                             # 7.2.5: nobody asked, nothing to learn
        was_router = ln.isrouter
        self.nd6.na_update(ln, opts.tgt_lladdr, bool(flags & ND_NA_FLAG_SOLICITED),
                           bool(flags & ND_NA_FLAG_OVERRIDE), bool(flags & ND_NA_FLAG_ROUTER), now)
        if was_router and not ln.isrouter:
            self.out.event(Nd6NotRouter(target, inp.ifindex))

    def na_output(self, ifindex: int, dst: int, target: int, flags: int, lladdr: bytes | None = None) -> None:
        """``nd6_na_output``: from the target itself when it is a unicast address of ours
        (7.2.4), always with the Target Link-Layer Address option."""
        ext = self.ifaddrs.ifs.get(ifindex)
        if ext is None or ext.disabled:
            return
        ia = self.ifaddrs.lookup(target, ifindex)
        if ia is not None and ia.ready and not ia.flags & IN6_IFF_ANYCAST:
            src = target
        else:
            sel = in6_selectsrc(dst, self.ifaddrs, ifindex)
            if sel is None:
                return
            src = sel.addr
        body = in6.pack(target)
        if ext.lladdr:
            body += opt_lladdr(ND_OPT_TARGET_LINKADDR, ext.lladdr)
        msg = emit(Icmp6Repr(ND_NEIGHBOR_ADVERT, 0, flags, body), src, dst)
        self.out.send(ip6_build(src, dst, IPPROTO_ICMPV6, msg, ND_HOPLIMIT), ifindex, lladdr)
        self.stats.icp6s_outhist[ND_NEIGHBOR_ADVERT] += 1

    # -- DAD ----------------------------------------------------------------------------------
    def dad_start(self, ia: In6Ifaddr, now: float, random_delay: bool = False) -> None:
        """``nd6_dad_start``: probe ``ia`` (RFC 4862 5.4.2; the caller has joined its
        solicited-node group). ``random_delay`` for the first message after an interface
        came up (up to MAX_RTR_SOLICITATION_DELAY)."""
        ext = self.ifaddrs.ifs.get(ia.ifindex)
        if ia.flags & IN6_IFF_NODAD or self.ip6.dad_count <= 0 or ext is None or ext.loopback:
            ia.flags &= ~IN6_IFF_TENTATIVE
            self.out.event(DadCompleted(ia))
            return
        ia.flags = (ia.flags | IN6_IFF_TENTATIVE) & ~IN6_IFF_DUPLICATED
        self.dads[(ia.ifindex, ia.addr)] = _Dad(ia)
        delay = self.rng.uniform(0, MAX_RTR_SOLICITATION_DELAY) if random_delay else 0.0
        self.timers.set((ia.ifindex, ia.addr), now + delay)

    def dad_stop(self, ia: In6Ifaddr) -> None:
        """The address goes away while being probed."""
        key = (ia.ifindex, ia.addr)
        self.dads.pop(key, None)
        self.timers.cancel(key)

    def dad_duplicated(self, ia: In6Ifaddr, now: float) -> None:
        """``nd6_dad_duplicated``: RFC 4862 5.4.5."""
        self.dad_stop(ia)
        ia.flags = (ia.flags & ~IN6_IFF_TENTATIVE) | IN6_IFF_DUPLICATED
        ext = self.ifaddrs.ifs.get(ia.ifindex)
        disable = (ext is not None and in6.is_linklocal(ia.addr) and len(ext.lladdr) == 6
                   and ia.addr == in6.linklocal(in6.ifid_eui64(ext.lladdr)))
        if disable and ext is not None:
            ext.ndi.flags |= ND6_IFF_IFDISABLED
        self.out.event(DadDuplicated(ia, disable))

    def timeout(self, key: object, now: float) -> None:
        key = cast(tuple[int, int], key)
        d = self.dads.get(key)
        if d is None:
            return
        ext = self.ifaddrs.ifs.get(d.ia.ifindex)
        retrans = ext.ndi.retrans if ext is not None else 1.0
        if d.sent < self.ip6.dad_count:
            nonce = self.rng.getrandbits(8 * DAD_NONCE_LEN).to_bytes(DAD_NONCE_LEN, "big")
            d.nonces.append(nonce)
            d.sent += 1
            self.ns_output(d.ia.ifindex, d.ia.addr, None, now, nonce)
            self.timers.set(key, now + retrans)
            return
        # 5.4: no answer a RetransTimer after the last solicitation: the address is ours.
        del self.dads[key]
        d.ia.flags &= ~IN6_IFF_TENTATIVE
        self.out.event(DadCompleted(d.ia))
