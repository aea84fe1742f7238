"""examples/services on a kernel bound to a tap, with Linux tools and sockets as clients.

``serve.py`` runs inside a network namespace the test makes (so its tap is created there);
the clients -- Python sockets, ``curl`` -- run in the same namespace on the tap's host side.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import shutil
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from rumpnet.testing.netns import NetNS, have_netns_privileges, ns_configure, ns_popen, ns_python, ns_run, unique_ifname

_ok, _why = have_netns_privileges()
pytestmark = [pytest.mark.interop, pytest.mark.skipif(not _ok, reason=_why)]

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SERVICES = os.path.join(ROOT, "examples", "services")
SERVE = os.path.join(SERVICES, "serve.py")
sys.path.insert(0, SERVICES)
from services import chargen_bytes, chargen_sha256  # noqa: E402

HOST, PEER = "10.99.40.2", "10.99.40.1"


class Served:
    def __init__(self, ns: NetNS, info: dict[str, Any]) -> None:
        self.ns = ns
        self.info = info

    def py(self, code: str, timeout: float = 60.0) -> Any:
        r = ns_python(self.ns, code, timeout=timeout, args=[HOST])
        assert r.returncode == 0, r.stderr[-2000:]
        return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    with NetNS("rnt") as ns:
        tap = unique_ifname("rnt")
        with ns_popen(ns, [sys.executable, "-u", SERVE, "--tap", tap, "--address", f"{HOST}/24", "--seed", "7"]) as p:
            r, _, _ = select.select([p.stdout], [], [], 30)
            line = p.stdout.readline() if r else ""
            assert line, f"serve.py did not start: {p.popen.stderr.read() if p.poll() is not None else 'timeout'}"
            info = json.loads(line)
            assert info["ready"] and info["tap"] == tap
            ns_configure(ns, tap, f"{PEER}/24")
            assert ns_run(ns, ["ping", "-c", "1", "-W", "2", HOST], timeout=10).returncode == 0
            yield Served(ns, info)
            assert p.poll() is None, "serve.py died during the tests"


def test_tcp_echo(served: Served) -> None:
    out = served.py(
        "import json,socket,sys\n"
        "s=socket.create_connection((sys.argv[1],7),timeout=10)\n"
        "msgs=[b'hello', b'x'*100000]\n"
        "got=[]\n"
        "for m in msgs:\n"
        "    s.sendall(m); b=b''\n"
        "    while len(b)<len(m): b+=s.recv(65536)\n"
        "    got.append(b==m)\n"
        "s.shutdown(socket.SHUT_WR); print(json.dumps({'ok':got,'eof':s.recv(10)==b''}))\n")
    assert out == {"ok": [True, True], "eof": True}


def test_udp_echo(served: Served) -> None:
    out = served.py(
        "import json,socket,sys\n"
        "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(5)\n"
        "res=[]\n"
        "for n in (1, 100, 1472, 4000):\n"
        "    m=bytes(range(256))*(n//256)+b'u'*(n%256); s.sendto(m,(sys.argv[1],7))\n"
        "    d,a=s.recvfrom(65535); res.append([d==m, a[0], a[1]])\n"
        "print(json.dumps(res))\n")
    assert out == [[True, HOST, 7]] * 4


def test_discard(served: Served) -> None:
    out = served.py(
        "import json,socket,sys\n"
        "s=socket.create_connection((sys.argv[1],9),timeout=10)\n"
        "s.sendall(b'z'*2000000); s.shutdown(socket.SHUT_WR)\n"
        "print(json.dumps({'reply': s.recv(100).decode()}))\n")
    assert out == {"reply": ""}


def test_sink_checks_sha256(served: Served) -> None:
    out = served.py(
        "import hashlib,json,os,socket,sys\n"
        "data=os.urandom(3_000_000)\n"
        "s=socket.create_connection((sys.argv[1],5001),timeout=20)\n"
        "s.sendall(data); s.shutdown(socket.SHUT_WR); r=b''\n"
        "while True:\n"
        "    d=s.recv(200)\n"
        "    if not d: break\n"
        "    r+=d\n"
        "print(json.dumps({'reply': r.decode(), 'want': f'{len(data)} {hashlib.sha256(data).hexdigest()}'}))\n")
    assert out["reply"].strip() == out["want"]


def test_chargen_count(served: Served) -> None:
    n = 3_000_000
    out = served.py(
        "import hashlib,json,socket,sys\n"
        f"s=socket.create_connection((sys.argv[1],19),timeout=20); s.sendall(b'{n}\\n')\n"
        "h=hashlib.sha256(); k=0; head=b''\n"
        "while True:\n"
        "    d=s.recv(1<<20)\n"
        "    if not d: break\n"
        "    if len(head)<200: head+=d[:200]\n"
        "    h.update(d); k+=len(d)\n"
        "print(json.dumps({'n':k,'sha':h.hexdigest(),'head':head[:148].decode()}))\n")
    assert out["n"] == n and out["sha"] == chargen_sha256(n)
    assert out["head"].encode() == chargen_bytes(148)
    assert out["head"].startswith(' !"#$%&') and "\r\n!\"#$" in out["head"]


def test_chargen_streams_until_client_closes(served: Served) -> None:
    out = served.py(
        "import json,socket,sys\n"
        "s=socket.create_connection((sys.argv[1],19),timeout=10); k=0\n"
        "while k<500000: k+=len(s.recv(65536))\n"
        "s.close(); print(json.dumps({'got': k}))\n")
    assert out["got"] >= 500000
    # the service is still there for the next client
    test_tcp_echo(served)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_http_with_curl(served: Served, tmp_path: Any) -> None:
    n = 5_000_000
    out = tmp_path / "bytes.bin"
    r = ns_run(served.ns, ["curl", "-sS", "--max-time", "60", "-o", str(out), f"http://{HOST}/bytes/{n}"], timeout=90)
    assert r.returncode == 0, r.stderr
    data = out.read_bytes()
    assert len(data) == n
    assert hashlib.sha256(data).hexdigest() == chargen_sha256(n)
    page = ns_run(served.ns, ["curl", "-sS", "-i", f"http://{HOST}/"], timeout=30)
    assert page.returncode == 0 and "200 OK" in page.stdout and "Served by a rump kernel" in page.stdout
    missing = ns_run(served.ns, ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"http://{HOST}/nope"],
                     timeout=30)
    assert missing.stdout == "404"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_http_keepalive_and_sha256_download(served: Served) -> None:
    n = 8 * 1024 * 1024
    code = (
        "import hashlib,http.client,json,sys\n"
        "c=http.client.HTTPConnection(sys.argv[1],80,timeout=60)\n"
        "out=[]\n"
        f"for path in ('/', '/bytes/{n}', '/bytes/0', '/'):\n"
        "    c.request('GET', path); r=c.getresponse(); body=r.read()\n"
        "    out.append([r.status, len(body), hashlib.sha256(body).hexdigest(), r.getheader('Connection')])\n"
        "print(json.dumps({'out': out, 'sock_reused': c.sock is not None}))\n")
    res = served.py(code, timeout=120)
    statuses = [o[0] for o in res["out"]]
    assert statuses == [200, 200, 200, 200]
    assert res["out"][1][1] == n and res["out"][1][2] == chargen_sha256(n)
    assert res["out"][2][1] == 0
    assert all(o[3] == "keep-alive" for o in res["out"]) and res["sock_reused"]
    # and with curl, two URLs over one connection
    r = ns_run(served.ns, ["curl", "-sS", "-o", "/dev/null", "-o", "/dev/null", "-w", "%{num_connects}\n",
                           f"http://{HOST}/", f"http://{HOST}/bytes/1000"], timeout=60)
    assert r.returncode == 0 and r.stdout.split() == ["1", "0"]
