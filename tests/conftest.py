"""Shared fixtures for the IPv4 scenario, fuzz and determinism tests.

``vnet`` gives a :class:`VNet`: kernels on a scheduler of their own (virtual time unless
asked otherwise), wired together on in-process segments whose names are unique to the
test, halted at teardown. ``VNet.ping`` sends one ICMP echo through a raw socket and
returns the IP packet that answers it (an echo reply or an ICMP error quoting it).

SIGTERM (what CI timeouts, ``timeout`` and ``kill`` send; make passes it on to pytest)
would end pytest at once, before any teardown, leaving the detached ``rump_server``
daemons of tests/netbsd running and their work directories in /tmp. During the tests it
is an interruption as Ctrl-C is: pytest stops, tears the fixtures down and exits.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest

from rumpnet.testing.vnet import VNet


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the test was so that teardown runs."""


@pytest.fixture(autouse=True, scope="session")
def _sigterm_tears_down() -> Iterator[None]:
    pid = os.getpid()

    def on_sigterm(signum: int, frame: object) -> None:
        if os.getpid() != pid:
            # a child forked by a test (netns helpers fork and are then terminated): it
            # must die as before, not run pytest's teardown of the parent's fixtures
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise Terminated("SIGTERM")

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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


@pytest.fixture
def routed(vnet: VNet) -> tuple[Any, Any, Any]:
    """h1 (10.0.1.2) -- router (10.0.1.1 | 10.0.2.1, forwarding on) -- h2 (10.0.2.2) on wires."""
    h1 = vnet.kernel(1, hostname="h1")
    r = vnet.kernel(2, hostname="router")
    h2 = vnet.kernel(3, hostname="h2")
    vnet.attach(h1, "wire0", "net1", "10.0.1.2/24")
    vnet.attach(r, "wire0", "net1", "10.0.1.1/24")
    vnet.attach(r, "wire1", "net2", "10.0.2.1/24")
    vnet.attach(h2, "wire0", "net2", "10.0.2.2/24")
    h1.config.route_add("default", "10.0.1.1")
    h2.config.route_add("default", "10.0.2.1")
    r.config.sysctl_set("net.inet.ip.forwarding", 1)
    return h1, r, h2
