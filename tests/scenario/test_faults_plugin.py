"""The pytest plugin: fixtures, the netem marker, the seed in failure reports."""

from __future__ import annotations

import socket

import pytest

pytest_plugins = ["pytester"]


def test_rump_kernel_fixture(rump_kernel) -> None:  # noqa: ANN001
    assert rump_kernel.sched.virtual
    fd = rump_kernel.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    rump_kernel.rump_sys_bind(fd, ("127.0.0.1", 9))
    rump_kernel.rump_sys_sendto(fd, b"self", 0, ("127.0.0.1", 9))
    assert rump_kernel.rump_sys_recvfrom(fd, 10, 0)[0] == b"self"


def test_rump_network_seed_default(rump_network, rump_seed, monkeypatch) -> None:  # noqa: ANN001
    assert rump_network.seed == rump_seed


@pytest.mark.netem("delay 10ms", link="lan")
@pytest.mark.netem(loss="100%", link="other")
def test_netem_marker_applies_to_named_links(rump_network) -> None:  # noqa: ANN001
    for h in ("a", "b", "c"):
        rump_network.add_host(h)
    rump_network.add_link("lan", "a", "b")
    rump_network.add_link("other", "b", "c")
    assert rump_network.link("lan").netem() == {"a->b": "limit 1000 delay 10ms", "b->a": "limit 1000 delay 10ms"}
    assert rump_network.link("other").runners("b->c")[0].params.loss == 1.0


@pytest.mark.netem("delay 50ms")
def test_faulty_wire(faulty_wire) -> None:  # noqa: ANN001
    a, b = faulty_wire.a, faulty_wire.b
    sa = a.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    sb = b.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    b.rump_sys_bind(sb, ("0.0.0.0", 7))
    t0 = faulty_wire.net.now()
    a.rump_sys_sendto(sa, b"slow", 0, ("10.0.1.2", 7))
    assert b.rump_sys_recvfrom(sb, 10, 0)[0] == b"slow"
    assert faulty_wire.net.now() - t0 >= 0.05 - 1e-6
    faulty_wire.partition()
    assert faulty_wire.link.partitioned
    faulty_wire.heal()
    assert faulty_wire.counters()["delayed"] >= 1


INI = "[pytest]\nasyncio_default_fixture_loop_scope = function\n"

INNER = """
import pytest

def test_net(rump_network):
    rump_network.add_host("a"); rump_network.add_host("b")
    rump_network.add_link("lan", "a", "b")
    assert rump_network.link("lan").netem() == {"a->b": "limit 1000 loss 5%", "b->a": "limit 1000 loss 5%"}
    print("SEED", rump_network.seed)
    assert rump_network.seed == -1, "fails on purpose"

@pytest.mark.netem(loss="150%")
def test_bad_marker(rump_network):
    pass
"""


def test_seed_option_marker_and_report(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(test_inner=INNER.replace("def test_net", '@pytest.mark.netem("loss 5%")\ndef test_net'))
    res = pytester.runpytest_inprocess("--rump-seed", "1234", "-p", "no:cacheprovider", "-rA")
    res.assert_outcomes(failed=1, errors=1)
    res.stdout.fnmatch_lines(["*netem: loss: probability 150% is over 100%*"])
    res.stdout.fnmatch_lines(["*test_net*", "*fails on purpose*", "*rumpnet seed: 1234 (replay with --rump-seed 1234)*"])


def test_seed_from_environment(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUMP_SEED", "77")
    pytester.makeini(INI)
    pytester.makepyfile(test_env="def test_env(rump_network, rump_seed):\n    assert rump_network.seed == rump_seed == 77\n")
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_default_seed(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUMP_SEED", raising=False)
    pytester.makeini(INI)
    pytester.makepyfile(test_env="def test_env(rump_seed):\n    assert rump_seed == 1\n")
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
