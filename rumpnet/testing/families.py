"""Address families for tests that run the same scenario over IPv4 and IPv6 (the TCP
test matrix is parametrised over them instead of being copied).

``Family`` names what differs: the socket family, the wildcard, two hosts' addresses on
one link and an address nobody has, how the socket module writes an address, how a pair
of kernels is wired, and the kernel's TCP glue for the family. The ``family`` fixture
runs a test once per family::

    from rumpnet.testing.families import family  # noqa: F401  (the fixture)

    def test_x(vnet, family):
        a, b = family.pair(vnet)
        fd = a.rump_sys_socket(family.af, socket.SOCK_STREAM, 0)
        a.rump_sys_connect(fd, (family.b, 80))
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

import pytest

from rumpnet.net_kernel import net_kernel
from rumpnet.netinet6 import in6
from rumpnet.netinet6.in6_var import IN6_IFF_NODAD


@dataclass(frozen=True)
class Family:
    name: str
    af: int
    any: str
    a: str            # the first host of a pair
    b: str            # the second host
    nowhere: str      # on the link's prefix, but nobody's

    @property
    def v6(self) -> bool:
        return self.af == socket.AF_INET6

    def sa(self, host: str, port: int) -> tuple[Any, ...]:
        """The address as getsockname/accept/recvfrom give it."""
        return (host, port, 0, 0) if self.v6 else (host, port)

    def pair(self, vnet: Any, seeds: tuple[int, int] = (1, 2), seg: str = "lan") -> tuple[Any, Any]:
        """Two kernels on one wire with 10.0.0.1/24 and 10.0.0.2/24, and for IPv6 also
        fc00::1/64 and fc00::2/64 (usable at once: no DAD)."""
        a, b = vnet.pair(seeds=seeds, seg=seg)
        if self.v6:
            for k, addr in ((a, self.a), (b, self.b)):
                nk = net_kernel(k)
                assert nk.inet6 is not None
                nk.inet6.add_address(nk.ifnet.lookup("wire0"), in6.pton(addr), 64, IN6_IFF_NODAD)
        return a, b

    def tcp(self, k: Any) -> Any:
        """The kernel's TCP glue for this family (its pcbs, params, stats)."""
        nk = net_kernel(k)
        return nk.inet6.tcp6 if self.v6 and nk.inet6 is not None else nk.inet.tcp if nk.inet else None


INET = Family("inet", socket.AF_INET, "0.0.0.0", "10.0.0.1", "10.0.0.2", "10.0.0.9")
INET6 = Family("inet6", socket.AF_INET6, "::", "fc00::1", "fc00::2", "fc00::9")
FAMILIES = (INET, INET6)


@pytest.fixture(params=FAMILIES, ids=lambda f: f.name)
def family(request: pytest.FixtureRequest) -> Family:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(params=FAMILIES, ids=lambda f: f.name)
def family_matrix(request: pytest.FixtureRequest) -> Family:
    """For a module written against module constants (``F`` the family, ``A`` and ``B``
    its two hosts' addresses): runs each test once per family with them set, as
    ``pytestmark = pytest.mark.usefixtures("family_matrix")`` asks."""
    fam: Family = request.param
    mod = request.module
    mod.F, mod.A, mod.B = fam, fam.a, fam.b
    return fam
