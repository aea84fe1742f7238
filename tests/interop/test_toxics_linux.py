"""A host program reaches a toxiproxy-style proxy running inside a kernel through a tap,
as it would reach toxiproxy, and sees its toxics (issue 6 item 3).

    ns: Linux client --> 10.80.1.2:7000 [proxy in a rump kernel on virt0] --> ns: Linux echo server 10.80.1.1:9000
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from rumpkern import Kernel, rump_init
from rumpnet.faults.toxics import Proxy, Toxic
from rumpnet.testing.netns import (
    NetNS,
    have_netns_privileges,
    ns_python,
    ns_python_popen,
    tap_peer,
)

_ok, _why = have_netns_privileges()
pytestmark = [pytest.mark.interop, pytest.mark.skipif(not _ok, reason=_why), pytest.mark.timeout(120)]

LINUX, OURS = "10.80.1.1", "10.80.1.2"

ECHO_SERVER = (
    "import socket,threading\n"
    "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
    f"s.bind(('{LINUX}',9000)); s.listen(16); print('ready',flush=True)\n"
    "def echo(c):\n"
    "    while True:\n"
    "        d=c.recv(65536)\n"
    "        if not d: break\n"
    "        c.sendall(d)\n"
    "    c.close()\n"
    "while True:\n"
    "    c,_=s.accept(); threading.Thread(target=echo,args=(c,),daemon=True).start()\n"
)

CLIENT = (
    "import socket,time,json,errno\n"
    f"c=socket.create_connection(('{OURS}',7000),timeout=10)\n"
    "out={}\n"
    "try:\n"
    "    t=time.monotonic(); c.sendall(b'x'*100); got=b''\n"
    "    while len(got)<100:\n"
    "        d=c.recv(100-len(got))\n"
    "        if not d: break\n"
    "        got+=d\n"
    "    out['rtt']=time.monotonic()-t; out['echoed']=len(got)\n"
    "    c.sendall(b'y'*5000); c.shutdown(socket.SHUT_WR); total=0\n"
    "    while True:\n"
    "        d=c.recv(65536)\n"
    "        if not d: break\n"
    "        total+=len(d)\n"
    "    out['after']=total; out['eof']=True\n"
    "except OSError as e:\n"
    "    out['error']=errno.errorcode.get(e.errno, str(e))\n"
    "print(json.dumps(out))\n"
)


@pytest.fixture
def proxy() -> Iterator[tuple[Kernel, NetNS, Proxy]]:
    k = rump_init(hostname="toxiproxy")
    try:
        with tap_peer(k, f"{OURS}/24", f"{LINUX}/24", prefix="rtx") as (ns, _tap):
            px = Proxy(k, (OURS, 7000), (LINUX, 9000), name="echo")
            try:
                yield k, ns, px
            finally:
                px.stop()
    finally:
        k.halt()


def _client(ns: NetNS) -> dict[str, object]:
    r = ns_python(ns, CLIENT, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)  # type: ignore[no-any-return]


def test_linux_client_sees_toxics_of_a_proxy_in_the_kernel(proxy: tuple[Kernel, NetNS, Proxy]) -> None:
    k, ns, px = proxy
    with ns_python_popen(ns, ECHO_SERVER) as srv:
        assert srv.stdout.readline().strip() == "ready"
        clean = _client(ns)
        assert clean["echoed"] == 100 and clean["after"] == 5000 and clean.get("error") is None, clean
        px.add_toxic(Toxic("latency", stream="downstream", attributes={"latency": 300}))
        slow = _client(ns)
        assert slow["echoed"] == 100 and slow["rtt"] >= 0.3  # type: ignore[operator]
        px.remove_toxic("latency_downstream")
        px.add_toxic(Toxic("limit_data", stream="downstream", attributes={"bytes": 1000}))
        limited = _client(ns)
        # 100 bytes echoed, then the proxy closes after 1000 bytes downstream in total.
        assert limited["echoed"] == 100 and limited["after"] == 900 and limited["eof"], limited
        px.reset()
        px.add_toxic(Toxic("reset_peer", stream="upstream", attributes={"timeout": 0}))
        reset = _client(ns)
        assert reset.get("error") == "ECONNRESET", reset
