"""Addresses for the fault model's links (:mod:`rumpnet.faults.network`, and the scenario
files of :mod:`rumpnet.faults.scenario` that check them before building): an IPv4 subnet
and, on a dual-stack link, an IPv6 prefix; given addresses checked, the others handed out
in host order."""

from __future__ import annotations

import ipaddress


def check_name(name: str, what: str) -> None:
    """A host's or link's name: a target expression must be able to name it."""
    if not isinstance(name, str) or not name or any(c in name for c in " ;:*") or "->" in name:
        raise ValueError(f"{what}: bad name {name!r} (no spaces, ';', ':', '*' or '->')")


def subnet6_of(link: str, subnet6: str | None, mtu: int) -> ipaddress.IPv6Network:
    """A link's ``subnet6`` checked: a unicast prefix with room for hosts, on a link
    whose MTU IPv6 can use."""
    if subnet6 is None:
        raise ValueError(f"link {link}: addresses6: needs a subnet6")
    try:
        net6 = ipaddress.IPv6Network(subnet6, strict=True)
    except ValueError as e:
        raise ValueError(f"link {link}: subnet6: {e}") from None
    if net6.prefixlen > 126 or net6.is_multicast or net6.is_link_local or net6.is_loopback:
        raise ValueError(f"link {link}: subnet6: {subnet6} is not a unicast prefix of /126 or shorter "
                         "(link-local addresses come with every interface)")
    if mtu < 1280:
        raise ValueError(f"link {link}: mtu: {mtu} is below IPv6's 1280 (RFC 8200 5), with subnet6")
    return net6


def assign_addresses(link: str, net: ipaddress.IPv4Network | ipaddress.IPv6Network, names: list[str],
            given: dict[str, str], field: str) -> dict[str, str]:
    """Addresses of ``net`` for the hosts ``names``: ``given`` ones checked (``field`` names
    them in errors), the others in order, skipping the network's first and last address
    (IPv4's network and broadcast; IPv6's Subnet-Router anycast, RFC 4291 2.6.1)."""
    for h in given:
        if h not in names:
            raise ValueError(f"link {link}: {field}: host {h!r} is not on the link")
    used: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
    out: dict[str, str] = {}
    for h, a in given.items():
        try:
            ip = ipaddress.ip_address(a)
        except ValueError:
            ip = None
        if ip is None or ip.version != net.version:
            raise ValueError(f"link {link}: {field}.{h}: {a!r} is not an IPv{net.version} address") from None
        if ip not in net or ip in (net.network_address, net.broadcast_address):
            raise ValueError(f"link {link}: {field}.{h}: {a} is not a host address of {net}")
        if ip in used:
            raise ValueError(f"link {link}: {field}.{h}: {a} is given twice")
        used.add(ip)
        out[h] = str(ip)
    free = (ip for ip in net.hosts() if ip not in used and ip != net.broadcast_address)
    for h in names:
        if h not in out:
            nxt = next(free, None)
            if nxt is None:
                raise ValueError(f"link {link}: subnet {net} has too few addresses")
            out[h] = str(nxt)
    return out

