"""rumpnet.testing.netns: the host-side helpers interop tests build on."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import pytest

from rumpnet.testing.netns import (
    NetNS,
    cleanup_stale,
    have_netns_privileges,
    link_exists,
    link_info,
    list_netns,
    move_link_to_netns,
    netns_exists,
    ns_configure,
    ns_pids,
    ns_popen,
    ns_python,
    ns_python_popen,
    ns_run,
    unique_ifname,
    unique_name,
)
from rumpnet.virtif import VirtifDriver

_ok, _why = have_netns_privileges()
pytestmark = [pytest.mark.interop, pytest.mark.skipif(not _ok, reason=_why)]


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_privilege_probe_shape() -> None:
    ok, why = have_netns_privileges()
    assert ok is True and why == ""


def test_unique_names() -> None:
    a, b = unique_name("rnt"), unique_name("rnt")
    assert a != b and a.startswith(f"rnt-{os.getpid()}-")
    names = {unique_ifname("rnt") for _ in range(50)}
    assert len(names) == 50 and all(len(n) <= 15 for n in names)
    with pytest.raises(ValueError):
        unique_ifname("averyverylongprefix")


def test_netns_created_and_removed() -> None:
    with NetNS("rnt") as ns:
        assert ns.exists and ns.name in list_netns()
        r = ns_run(ns, ["ip", "-o", "link"], timeout=10)
        assert r.returncode == 0
        assert " lo:" in r.stdout and "eth0" not in r.stdout
    assert not netns_exists(ns.name)
    ns.remove()  # idempotent


def test_netns_removed_when_body_raises() -> None:
    with pytest.raises(KeyError), NetNS("rnt") as ns:
        name = ns.name
        raise KeyError("x")
    assert not netns_exists(name)


def test_processes_in_namespace_killed_on_exit() -> None:
    with NetNS("rnt") as ns:
        # a peer started without ns_popen (and so not reaped by it) still dies with the ns
        p = subprocess.Popen(["ip", "netns", "exec", ns.name, sys.executable, "-c", "import time; time.sleep(60)"])
        try:
            for _ in range(200):
                if p.pid in ns_pids(ns.name):
                    break
                time.sleep(0.01)
            assert p.pid in ns_pids(ns.name)
        finally:
            ns.remove()
            assert p.wait(timeout=5) == -9
    assert not netns_exists(ns.name)


def test_ns_popen_killed_on_exit() -> None:
    with NetNS("rnt") as ns:
        with ns_popen(ns, ["sleep", "60"]) as proc:
            assert proc.poll() is None
            for _ in range(200):  # until `ip netns exec` has entered the namespace
                if proc.pid in ns_pids(ns.name):
                    break
                time.sleep(0.01)
            assert proc.pid in ns_pids(ns.name)
        assert proc.poll() is not None
        with pytest.raises(ProcessLookupError):
            os.kill(proc.pid, 0)


def test_ns_run_timeout() -> None:
    with NetNS("rnt") as ns, pytest.raises(subprocess.TimeoutExpired):
        ns_run(ns, ["sleep", "30"], timeout=0.5)


def test_ns_python_runs_inside_namespace() -> None:
    with NetNS("rnt") as ns:
        r = ns_python(ns, "import socket; print(socket.if_nameindex())", timeout=10, check=True)
        assert "'lo'" in r.stdout and "eth0" not in r.stdout


def test_move_and_configure_with_routes() -> None:
    with NetNS("rnt") as ns:
        drv = VirtifDriver(unique_ifname("rnt"))
        try:
            move_link_to_netns(drv.tapname, ns)
            assert not link_exists(drv.tapname)
            ns_configure(ns, drv.tapname, ["10.99.8.1/24", "10.99.9.1/24"], mtu=1400,
                         routes=[("10.77.0.0/16", "10.99.8.2"), ("default", "10.99.9.254"),
                                 {"dst": "10.78.0.0", "dst_len": 16, "gateway": "10.99.9.2"}])
            info = link_info(drv.tapname, ns.name)
            assert info is not None and info["mtu"] == 1400 and info["flags"] & 0x1
            addrs = ns_run(ns, ["ip", "-o", "-4", "addr", "show", "dev", drv.tapname]).stdout
            assert "10.99.8.1/24" in addrs and "10.99.9.1/24" in addrs
            routes = ns_run(ns, ["ip", "-4", "route"]).stdout
            assert "10.77.0.0/16 via 10.99.8.2" in routes
            assert "default via 10.99.9.254" in routes
            assert "10.78.0.0/16 via 10.99.9.2" in routes
            lo = link_info("lo", ns.name)
            assert lo is not None and lo["flags"] & 0x1
        finally:
            drv.detach()


def test_helpers_work_inside_a_running_loop() -> None:
    async def main() -> bool:
        with NetNS("rnt") as ns:
            ns_configure(ns, "lo", "10.99.10.1/32")
            info = link_info("lo", ns.name)
            return info is not None and bool(info["flags"] & 0x1)

    assert asyncio.run(main())


def test_peer_with_ns_python_popen() -> None:
    code = (
        "import socket\n"
        "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        "s.bind(('127.0.0.1', 7007)); s.listen(1); print('ready', flush=True)\n"
        "c, _ = s.accept(); c.sendall(c.recv(100).upper()); c.close()\n"
    )
    with NetNS("rnt") as ns, ns_python_popen(ns, code) as peer:
        assert peer.stdout.readline().strip() == "ready"
        r = ns_python(ns, "import socket; s = socket.create_connection(('127.0.0.1', 7007));"
                          "s.sendall(b'hello'); print(s.recv(100).decode())", timeout=10)
        assert r.stdout.strip() == "HELLO", r.stderr


def test_cleanup_stale_removes_only_dead_runs() -> None:
    from pyroute2 import netns as pnetns

    prefix = f"rnstale{os.getpid() % 1000}"
    dead = _dead_pid()
    stale = f"{prefix}-{dead}-1"
    live = f"{prefix}-{os.getpid()}-1"
    created = []
    try:
        for name in (stale, live):
            pnetns.create(name)
            created.append(name)
        removed = cleanup_stale(prefix)
        assert stale in removed and live not in removed
        assert not netns_exists(stale) and netns_exists(live)
        assert cleanup_stale(prefix) == []
    finally:
        for name in created:
            if netns_exists(name):
                pnetns.remove(name)
    assert not netns_exists(stale) and not netns_exists(live)


def test_loopback_up_by_default_or_left_down() -> None:
    with NetNS("rnt") as ns:
        lo = link_info("lo", ns.name)
        assert lo is not None and lo["flags"] & 0x1
    with NetNS("rnt", lo_up=False) as ns:
        lo = link_info("lo", ns.name)
        assert lo is not None and not lo["flags"] & 0x1


def test_privilege_probe_reasons(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reasons tests skip with where root or /dev/net/tun is missing."""
    import rumpnet.testing.netns as m

    probe = m.have_netns_privileges.__wrapped__
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    ok, why = probe()
    assert ok is False and "root" in why
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(m, "TUN_DEV", "/nonexistent/net/tun")
    ok, why = probe()
    assert ok is False and "/nonexistent/net/tun" in why
