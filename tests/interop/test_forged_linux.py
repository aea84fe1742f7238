"""Forged ICMP and broadcast segments from Linux (scapy in the namespace) at a kernel on
a tap (issue 13, parts 2 and 3).

* (plain frames, no offloads) Eight "fragmentation needed" messages quoting connections that do not exist, their
  MTUs walking down to 68: before the fix they lowered the route's MTU to 68, TCP then
  built segments the route could not carry with DF set, and a 2 MB download got 0 bytes
  in 60 s. Now no route changes, the messages are counted, and curl gets every byte.
* A SYN to the subnet's broadcast address (and segments to it for a closed port): no
  SYN-ACK with the broadcast address as its source, no RST; counted.
The namespace, its processes and the tap are removed at the end, also on failure."""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import shutil
import threading
from pathlib import Path

import pytest

from rumpkern import rump_init
from rumpnet.hijack import hijack
from rumpnet.testing.netns import have_netns_privileges, ns_python, ns_run, tap_peer

_ok, _why = have_netns_privileges()
pytestmark = [pytest.mark.interop, pytest.mark.skipif(not _ok, reason=_why), pytest.mark.timeout(180)]

OURS, LINUX, BCAST = "10.79.14.2", "10.79.14.1", "10.79.14.255"

FORGE = """
import sys
from scapy.all import ICMP, IP, TCP, conf, send
conf.verb = 0
ours, linux = sys.argv[1], sys.argv[2]
for i, mtu in enumerate((1400, 1200, 1000, 800, 576, 296, 100, 68)):
    quoted = bytes(IP(src=ours, dst=linux, flags="DF", len=1500) / TCP(sport=40000 + i, dport=50000 + i, seq=1234))[:28]
    send(IP(src=linux, dst=ours) / ICMP(type=3, code=4, nexthopmtu=mtu) / quoted)
print("sent")
"""

BROADCAST_SYN = """
import sys
from scapy.all import Ether, IP, TCP, AsyncSniffer, conf, sendp
conf.verb = 0
iface, bcast, ours = sys.argv[1], sys.argv[2], sys.argv[3]
sniffer = AsyncSniffer(iface=iface, filter=f"tcp and src host {ours} or src host {bcast}")
sniffer.start()
import time
time.sleep(0.5)
for dport, flags in ((8080, "S"), (8080, "S"), (8999, "S"), (8999, "A")):
    sendp(Ether(dst="ff:ff:ff:ff:ff:ff") / IP(dst=bcast) / TCP(sport=33000, dport=dport, flags=flags, seq=1, ack=1),
          iface=iface)
time.sleep(2)
print(len(sniffer.stop()))
"""


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_forged_needfrag_does_not_stall_a_download(tmp_path: Path) -> None:
    blob = os.urandom(2 * 1024 * 1024)
    (tmp_path / "blob.bin").write_bytes(blob)
    k = rump_init(hostname="forged")
    server: http.server.ThreadingHTTPServer | None = None
    try:
        with tap_peer(k, f"{OURS}/24", f"{LINUX}/24", prefix="rfg", linkopts="nooffload") as (ns, tap), hijack(k):
            server = http.server.ThreadingHTTPServer((OURS, 8080), functools.partial(Quiet, directory=str(tmp_path)))
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
            r = ns_python(ns, FORGE, args=(OURS, LINUX), timeout=60)
            assert r.returncode == 0 and "sent" in r.stdout, r.stderr
            out = tmp_path / "fetched.bin"
            r = ns_run(ns, ["curl", "-sS", "--max-time", "60", "-o", str(out), f"http://{OURS}:8080/blob.bin"],
                       timeout=90)
            assert r.returncode == 0, r.stderr
            assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(blob).digest()
            rt = k.config.route_get(LINUX)
            assert rt.mtu == 0 and rt.path_mtu == 1500
            assert k.inet.icmpstat.icps_noconn == 8

            # a SYN to the broadcast address: nothing comes back, it is counted
            rst_before = k.inet.tcp.stats.tcps_sndrst
            r = ns_python(ns, BROADCAST_SYN, args=(tap, BCAST, OURS), timeout=60)
            assert r.returncode == 0, r.stderr
            assert r.stdout.split()[-1] == "0"
            assert k.inet.tcp.stats.tcps_rcvbcast == 4
            assert k.inet.tcp.stats.tcps_sndrst == rst_before
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        k.halt()
