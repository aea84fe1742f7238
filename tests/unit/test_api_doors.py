"""Public calls with wrong types or values answer with an error that names the argument
and what it takes (issue 16: ``rump_sys_socket("inet", ...)`` said ``invalid literal for
int()``, ``rump_init(seed="abc")`` booted a kernel)."""

from __future__ import annotations

import errno
import socket
from typing import Any

import pytest

from rumpkern import rump_init


@pytest.mark.parametrize("kwargs, message", [
    ({"seed": "abc"}, "rump_init: seed must be an int, not str 'abc'"),
    ({"seed": 1.5}, "rump_init: seed must be an int"),
    ({"hostname": 5}, "rump_init: hostname must be a str, not int 5"),
    ({"sockin": "yes"}, "rump_init: sockin must be True or False"),
    ({"memlimit": "lots"}, "rump_init: memlimit must be a positive int (bytes)"),
    ({"components": "netinet"}, "rump_init: components must be a list of component names"),
])
def test_rump_init_refuses_bad_options(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(TypeError) as ei:
        rump_init(clock="virtual", **kwargs)
    assert str(ei.value).startswith(message), str(ei.value)


def test_rump_seed_that_is_no_integer_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUMP_SEED", "abc")
    with pytest.raises(ValueError, match=r"RUMP_SEED='abc': not an integer"):
        rump_init(clock="virtual")


def test_an_unknown_component_names_the_ones_there_are() -> None:
    with pytest.raises(OSError) as ei:
        rump_init(clock="virtual", components=["netinet", "shmiff"])
    assert ei.value.errno == errno.ENOENT and "unknown component shmiff (components: " in str(ei.value.strerror)
    assert "shmif" in str(ei.value.strerror)


def test_socket_calls_name_the_argument_of_the_wrong_type(vnet: Any) -> None:
    k = vnet.kernel(1)
    with pytest.raises(TypeError, match=r"^domain must be an int .*not str 'inet'"):
        k.rump_sys_socket("inet", socket.SOCK_DGRAM, 0)
    with pytest.raises(TypeError, match=r"^type must be an int"):
        k.rump_sys_socket(socket.AF_INET, "dgram", 0)
    with pytest.raises(OSError) as ei:  # an int that is no family: the errno a BSD kernel gives
        k.rump_sys_socket(999, socket.SOCK_DGRAM, 0)
    assert ei.value.errno == errno.EAFNOSUPPORT
    fd = k.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    with pytest.raises(TypeError, match=r"^flags must be an int"):
        k.rump_sys_sendto(fd, b"x", "0", ("127.0.0.1", 9))
    with pytest.raises(TypeError, match=r"^len must be an int"):
        k.rump_sys_recv(fd, "10", socket.MSG_DONTWAIT)
    with pytest.raises(TypeError, match=r"^level must be an int"):
        k.rump_sys_setsockopt(fd, "SOL_SOCKET", socket.SO_REUSEADDR, 1)
    with pytest.raises(TypeError, match=r"^fd must be an int, not str"):
        k.rump_sys_bind("3", ("127.0.0.1", 9))


def test_an_interface_no_cloner_makes_names_the_kinds_there_are(vnet: Any) -> None:
    k = vnet.kernel(1)
    with pytest.raises(OSError) as ei:
        k.config.if_create("eth0")
    assert ei.value.errno == errno.EINVAL
    assert ei.value.strerror.startswith("SIOCIFCREATE: Invalid argument (eth0: interfaces are named ")
    assert "wireN" in ei.value.strerror and "shmifN" in ei.value.strerror
    with pytest.raises(OSError) as ei:  # the tool keeps NetBSD's line, word for word
        k.ifconfig("eth0", "create")
    assert ei.value.strerror == "ifconfig: SIOCIFCREATE: Invalid argument"


def test_described_routes_show_gateways_and_flags_as_netstat_does(vnet: Any) -> None:
    # issue 16: the router's live view said link#1 (lo0) where netstat -rn says link#2
    from rumpnet.commands.route import dest_name
    from rumpnet.netconfig import describe_route

    k = vnet.kernel(1)
    vnet.attach(k, "wire0", "lan", "10.3.0.1/24")
    rows = {line.split()[0]: line.split()[1:3] for line in k.netstat("-rn", "-f", "inet").splitlines()[4:]}
    local = [rt for rt in k.config.routes() if rt.flags & 0x40000]  # RTF_LOCAL: 10.3.0.1
    assert local
    for rt in k.config.routes():
        d = describe_route(rt)
        assert [d["gateway"], d["flags"]] == rows[dest_name(rt)], (d, rows)
    assert describe_route(next(r for r in local if r.ifa.ifp.name == "wire0"))["gateway"] == "link#2"
