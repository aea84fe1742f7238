"""Linux around the router: two network namespaces with Linux hosts, joined only through
a rump kernel routing between two host taps (issue 7, "Linux around the router").

    ns1 (10.77.1.1) --tap1-- [virt0 10.77.1.254 | router | virt1 10.77.2.254] --tap2-- ns2 (10.77.2.1)
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rumpkern import Kernel, rump_init
from rumpnet.testing.netns import (
    NetNS,
    have_netns_privileges,
    ns_python,
    ns_python_popen,
    ns_run,
    tap_peer,
)

_ok, _why = have_netns_privileges()
pytestmark = [pytest.mark.interop, pytest.mark.skipif(not _ok, reason=_why), pytest.mark.timeout(120)]

H1, R1, R2, H2 = "10.77.1.1", "10.77.1.254", "10.77.2.254", "10.77.2.1"


@dataclass
class Topology:
    router: Kernel
    ns1: NetNS
    ns2: NetNS


@pytest.fixture
def topo() -> Iterator[Topology]:
    k = rump_init(hostname="router")
    try:
        with contextlib.ExitStack() as stack:
            ns1, _ = stack.enter_context(tap_peer(k, f"{R1}/24", f"{H1}/24", ifname="virt0", prefix="rrt",
                                                  routes=[("default", R1)]))
            ns2, _ = stack.enter_context(tap_peer(k, f"{R2}/24", f"{H2}/24", ifname="virt1", prefix="rrt",
                                                  routes=[("default", R2)]))
            k.config.sysctl_set("net.inet.ip.forwarding", 1)
            yield Topology(k, ns1, ns2)
    finally:
        k.halt()


def test_ping_crosses_the_router_both_ways(topo: Topology) -> None:
    r = ns_run(topo.ns1, ["ping", "-c", "3", "-i", "0.2", "-W", "2", H2], timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "3 received" in r.stdout
    r = ns_run(topo.ns2, ["ping", "-c", "2", "-i", "0.2", "-W", "2", H1], timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert topo.router.inet.ipstat.ips_forward >= 10  # 5 requests + 5 replies crossed it


def test_ttl_1_ping_gets_time_exceeded_from_the_router(topo: Topology) -> None:
    r = ns_run(topo.ns1, ["ping", "-c", "1", "-t", "1", "-W", "2", H2], timeout=30)
    assert r.returncode != 0
    assert f"From {R1}" in r.stdout and "Time to live exceeded" in r.stdout, r.stdout


def test_udp_exchange_across_the_router(topo: Topology) -> None:
    server = (
        "import socket,sys\n"
        "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
        f"s.bind(('{H2}',5353)); print('ready',flush=True)\n"
        "for _ in range(3):\n"
        "    d,a=s.recvfrom(65535); s.sendto(d[::-1],a)\n"
    )
    client = (
        "import socket\n"
        "c=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); c.settimeout(5)\n"
        "for m in (b'abc', b'x'*1400, b'y'*4000):\n"
        f"    c.sendto(m,('{H2}',5353)); d,_=c.recvfrom(65535); assert d==m[::-1], len(d)\n"
        "print('ok')\n"
    )
    with ns_python_popen(topo.ns2, server) as srv:
        assert srv.stdout.readline().strip() == "ready"
        r = ns_python(topo.ns1, client, timeout=30)
        assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_http_download_across_the_router(topo: Topology, tmp_path: Path) -> None:
    blob = os.urandom(3 * 1024 * 1024)
    (tmp_path / "blob").write_bytes(blob)
    server = (
        "import http.server,functools,sys\n"
        f"h=functools.partial(http.server.SimpleHTTPRequestHandler, directory={str(tmp_path)!r})\n"
        "class Q(h.func):\n"
        "    def log_message(self,*a): pass\n"
        f"s=http.server.ThreadingHTTPServer(('{H2}',8080), functools.partial(Q, directory={str(tmp_path)!r}))\n"
        "print('ready',flush=True); s.serve_forever()\n"
    )
    out = tmp_path / "fetched"
    with ns_python_popen(topo.ns2, server) as srv:
        assert srv.stdout.readline().strip() == "ready"
        r = ns_run(topo.ns1, ["curl", "-sS", "--max-time", "60", "-o", str(out), f"http://{H2}:8080/blob"], timeout=90)
        assert r.returncode == 0, r.stderr
    assert hashlib.sha256(out.read_bytes()).hexdigest() == hashlib.sha256(blob).hexdigest()
