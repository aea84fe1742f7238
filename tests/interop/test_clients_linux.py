"""Real client libraries and servers across a tap (issue 13, parts 4 and 5).

* redis-py with its default options (SO_KEEPALIVE, TCP_NODELAY, TCP_KEEPIDLE 30,
  TCP_KEEPINTVL 5, TCP_KEEPCNT 3) under hijack, against a real ``redis-server`` in the
  namespace, sync and asyncio clients: before the fix the connection failed with "Error
  92 ... Protocol not available" on TCP_KEEPIDLE.
* aiohttp's ``FileResponse`` under hijack, fetched by Linux's ``curl``: before the fix
  the Unix selector loop os.sendfile'd the file into the readiness socketpair and the
  response hung after its headers.

Processes and namespaces are removed at the end, also when a test fails (context
managers: ns_popen kills its process group, NetNS removes the namespace with whatever
still runs in it, tap_peer destroys the interface)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from rumpkern import rump_init
from rumpnet.hijack import hijack
from rumpnet.netinet.in_addr import aton
from rumpnet.testing.netns import have_netns_privileges, ns_popen, ns_run, tap_peer

_ok, _why = have_netns_privileges()
pytestmark = [pytest.mark.interop, pytest.mark.skipif(not _ok, reason=_why), pytest.mark.timeout(180)]

OURS, LINUX = "10.79.13.2", "10.79.13.1"
REDIS_PORT = 6390


def _redis_conn_opts(k) -> list:
    """(keepalive, keepidle, keepintvl, keepcnt, nodelay) of our connections to redis."""
    return [(cb.keepalive, cb.t_keepidle, cb.t_keepintvl, cb.t_keepcnt, cb.nodelay)
            for cb in list(k.inet.tcp.proto.conns.values()) if cb.faddr == aton(LINUX) and cb.fport == REDIS_PORT]


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")
def test_redis_py_defaults_against_redis_server() -> None:
    redis = pytest.importorskip("redis")
    import redis.asyncio as aredis

    value = os.urandom(5 * 1024 * 1024)
    k = rump_init(hostname="redisclient")
    try:
        with tap_peer(k, f"{OURS}/24", f"{LINUX}/24", prefix="rrd") as (ns, _tap), \
                ns_popen(ns, ["redis-server", "--bind", LINUX, "--port", str(REDIS_PORT), "--save", "",
                              "--appendonly", "no", "--protected-mode", "no"]) as srv, hijack(k):
            deadline = time.monotonic() + 20
            client = redis.Redis(host=LINUX, port=REDIS_PORT, socket_timeout=30)
            while True:
                try:
                    assert client.ping()
                    break
                except redis.exceptions.ConnectionError:
                    assert srv.poll() is None and time.monotonic() < deadline, "redis-server did not come up"
                    time.sleep(0.2)
            assert _redis_conn_opts(k) == [(True, 30.0, 5.0, 3, True)]
            assert client.set("big", value)
            assert hashlib.sha256(client.get("big")).digest() == hashlib.sha256(value).digest()
            client.close()

            async def async_client() -> bytes:
                ac = aredis.Redis(host=LINUX, port=REDIS_PORT)
                try:
                    await ac.set("small", b"rump")
                    assert (True, 30.0, 5.0, 3, True) in _redis_conn_opts(k)
                    return await ac.get("small")
                finally:
                    await ac.aclose()

            assert asyncio.run(async_client()) == b"rump"
    finally:
        k.halt()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_aiohttp_file_response_fetched_by_curl(tmp_path: Path, loop_name: str) -> None:
    web = pytest.importorskip("aiohttp.web")
    blob = os.urandom(20 * 1024 * 1024 + 5)
    (tmp_path / "blob.bin").write_bytes(blob)
    k = rump_init(hostname="aiohttp")
    try:
        with tap_peer(k, f"{OURS}/24", f"{LINUX}/24", prefix="rah") as (ns, _tap), hijack(k):
            if loop_name == "uvloop":
                import uvloop

                loop = uvloop.new_event_loop()  # under the hijack: asyncio's selector loop
            else:
                loop = asyncio.new_event_loop()
            async def blob_file(request: object) -> object:
                return web.FileResponse(tmp_path / "blob.bin")

            app = web.Application()
            app.router.add_get("/blob.bin", blob_file)
            runner = web.AppRunner(app)
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.TCPSite(runner, OURS, 8081).start())
            t = threading.Thread(target=loop.run_forever, daemon=True)
            t.start()
            try:
                out = tmp_path / "fetched.bin"
                r = ns_run(ns, ["curl", "-sS", "--max-time", "90", "-o", str(out), "-w", "%{http_code}",
                                f"http://{OURS}:8081/blob.bin"], timeout=120)
                assert r.returncode == 0 and r.stdout == "200", (r.returncode, r.stdout, r.stderr)
                assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(blob).digest()
            finally:
                asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
                loop.call_soon_threadsafe(loop.stop)
                t.join(10)
                loop.close()
    finally:
        k.halt()
