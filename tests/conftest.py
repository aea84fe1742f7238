"""Shared fixtures for the IPv4 scenario, fuzz and determinism tests.

``vnet`` gives a :class:`VNet`: kernels on a scheduler of their own (virtual time unless
asked otherwise), wired together on in-process segments whose names are unique to the
test, halted at teardown. ``VNet.ping`` sends one ICMP echo through a raw socket and
returns the IP packet that answers it (an echo reply or an ICMP error quoting it).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from rumpnet.testing.vnet import VNet, icmp_echo  # noqa: F401  (re-exported for tests)


@pytest.fixture
def vnet() -> Iterator[VNet]:
    net = VNet(virtual=True)
    try:
        yield net
    finally:
        net.close()


@pytest.fixture
def vnet_real() -> Iterator[VNet]:
    net = VNet(virtual=False)
    try:
        yield net
    finally:
        net.close()


@pytest.fixture
def vnet_factory() -> Iterator[Any]:
    """Make any number of independent VNets (each with its own scheduler and clock)."""
    made: list[VNet] = []

    def make(virtual: bool = True) -> VNet:
        net = VNet(virtual=virtual)
        made.append(net)
        return net

    try:
        yield make
    finally:
        for net in made:
            net.close()
