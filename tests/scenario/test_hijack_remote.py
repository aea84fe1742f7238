"""hijack onto a rump_server (through rumpclient): the same programs, the kernel elsewhere."""

from __future__ import annotations

import asyncio
import functools
import http.server
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from rumpnet.hijack import HijackSocket, hijack

rumpclient = pytest.importorskip("rumpnet.rumpclient")

ROOT = Path(__file__).resolve().parents[2]
SERVER = [sys.executable, "-m", "rumpnet.server.rump_server"]


def _wait_ready(path: str, proc: subprocess.Popen, log: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"rump_server exited with {proc.returncode}: {open(log).read()}")
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(path)
            return
        except OSError:
            time.sleep(0.02)
        finally:
            s.close()
    raise AssertionError("rump_server did not come up")


@pytest.fixture(params=["netinet", "sockin"])
def server_url(request):
    d = tempfile.mkdtemp(prefix="hj", dir="/tmp")
    path = os.path.join(d, "k.sock")
    log = path + ".log"
    libs = ["-lrumpnet", "-lrumpnet_net"] + (["-lrumpnet_netinet"] if request.param == "netinet" else ["-lrumpnet_sockin"])
    with open(log, "w") as f:
        p = subprocess.Popen([*SERVER, "-s", *libs, "unix://" + path], stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        _wait_ready(path, p, log)
        yield "unix://" + path, request.param
    finally:
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        shutil.rmtree(d, ignore_errors=True)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_remote_udp_and_select(server_url):
    url, _ = server_url
    with rumpclient.RumpClient(url) as c, hijack(c):
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        assert isinstance(rx, HijackSocket)
        rx.bind(("127.0.0.1", 0))
        assert select.select([rx], [], [], 0)[0] == []
        tx.sendto(b"remote", rx.getsockname())
        assert select.select([rx], [], [], 10)[0] == [rx]
        assert rx.recv(100) == b"remote"
        assert select.select([rx], [], [], 0)[0] == []
        rx.settimeout(0.2)
        with pytest.raises(TimeoutError):
            rx.recv(10)
        tx.sendto(b"late", rx.getsockname())  # the watcher must notice after the timeout
        rx.settimeout(10)
        assert rx.recv(10) == b"late"
        rx.close()
        tx.close()


def test_remote_http_and_asyncio(server_url, tmp_path):
    url, kind = server_url
    body = os.urandom(200_000)
    (tmp_path / "f.bin").write_bytes(body)
    with rumpclient.RumpClient(url) as c, hijack(c):
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(tmp_path)))
        t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05})
        t.start()
        try:
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with opener.open(f"http://127.0.0.1:{srv.server_address[1]}/f.bin", timeout=30) as resp:
                assert resp.read() == body
        finally:
            srv.shutdown()
            srv.server_close()
            t.join()

        async def main():
            async def echo(r, w):
                w.write(await r.readline())
                await w.drain()
                w.close()

            server = await asyncio.start_server(echo, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(b"over the wire to the server\n")
            await w.drain()
            assert await asyncio.wait_for(r.readline(), 20) == b"over the wire to the server\n"
            w.close()
            server.close()
            await server.wait_closed()

        asyncio.run(main())


def test_cli_with_server(server_url, tmp_path):
    url, _ = server_url
    script = tmp_path / "p.py"
    script.write_text("import socket\n"
                      "r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); r.bind(('127.0.0.1', 0))\n"
                      "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b'x', r.getsockname())\n"
                      "print(type(r).__name__, r.recv(1))\n")
    env = dict(os.environ, RUMP_SERVER=url)
    env.pop("RUMPHIJACK", None)
    out = subprocess.run([sys.executable, "-m", "rumpnet.hijack", "--", str(script)], capture_output=True,
                         text=True, timeout=60, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "HijackSocket b'x'"
