"""A real-clock kernel lives on its own, as a rump kernel with its threads does: Linux on
the other side of a tap pings it, fetches from it with curl, and receives what it was
sent, while the application sleeps or waits for a subprocess, with no serve_background().
RUMP_THREADS=0 (``threads=False``) keeps the kernel driven by the calls made to it."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from rumpkern import rump_init
from rumpnet import streams
from rumpnet.testing.netns import have_netns_privileges, ns_python_popen, ns_run, tap_peer

_ok, _why = have_netns_privileges()
pytestmark = [pytest.mark.interop, pytest.mark.skipif(not _ok, reason=_why), pytest.mark.timeout(90)]

KADDR, LADDR = "10.215.0.2", "10.215.0.1"


@pytest.fixture
def served() -> Iterator[tuple[Any, Any]]:
    """A default real-clock kernel (no serve_background) on a tap to a Linux namespace."""
    k = rump_init(clock="real", seed=7)
    try:
        with tap_peer(k, f"{KADDR}/24", f"{LADDR}/24", serve=False) as (ns, _tap):
            yield k, ns
    finally:
        k.halt()


def _echo_replies(k: Any) -> int:
    return int(k.inet.icmpstat.icps_outhist[0])  # ICMP_ECHOREPLY sent


def test_linux_pings_a_kernel_while_the_application_sleeps(served) -> None:
    k, ns = served
    assert k.sched.background  # serving itself: nobody called serve_background()
    p = subprocess.Popen(["ip", "netns", "exec", ns.name, "ping", "-c", "3", "-i", "0.2", "-W", "2", KADDR],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(2.0)  # the application is outside any call of the kernel
        out, _ = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0 and "3 received" in out, out
    assert _echo_replies(k) >= 3


def test_linux_fetches_with_curl_while_the_application_waits_for_it(served) -> None:
    k, ns = served
    body = b"served while the application waits in subprocess.run\n"

    async def handle(reader: Any, writer: Any) -> None:
        while (await reader.readline()) not in (b"\r\n", b"\n", b""):
            pass
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    loop = k.sched.loop
    server = asyncio.run_coroutine_threadsafe(streams.start_server(k, handle, "0.0.0.0", 8080), loop).result(10)
    try:
        r = ns_run(ns, ["curl", "-s", "--max-time", "10", f"http://{KADDR}:8080/"], timeout=20)
        assert r.returncode == 0 and r.stdout.encode() == body, (r.returncode, r.stdout, r.stderr)
    finally:
        asyncio.run_coroutine_threadsafe(server.__aexit__(None, None, None), loop).result(10)


def test_data_sent_before_a_sleep_reaches_linux(served) -> None:
    """send, shutdown, close, then only sleep: the kernel keeps sending (and
    retransmitting) what the socket buffer holds until Linux has it all."""
    k, ns = served
    size = 2 * 1024 * 1024
    code = ("import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);"
            "s.bind((sys.argv[1],5001)); s.listen(1); print('ready',flush=True); c,_=s.accept(); n=0\n"
            "while True:\n d=c.recv(65536)\n if not d: break\n n+=len(d)\nprint(n,flush=True)")
    with ns_python_popen(ns, code, args=(LADDR,)) as peer:
        assert peer.stdout.readline().strip() == "ready"
        fd = k.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
        k.rump_sys_connect(fd, (LADDR, 5001))
        sent = 0
        chunk = b"z" * 65536
        while sent < size:
            sent += k.rump_sys_send(fd, chunk, 0)
        k.rump_sys_shutdown(fd, socket.SHUT_WR)
        k.rump_sys_close(fd)
        deadline = time.monotonic() + 30
        while peer.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)  # no call into the kernel from here on
        out, err = peer.communicate(timeout=5)
    assert out.strip().splitlines()[-1] == str(size), err


def test_a_kernel_driven_by_calls_answers_nothing_while_the_application_sleeps() -> None:
    """The opt-out (RUMP_THREADS=0): the calls made to the kernel drive it, so between
    calls it is frozen and Linux's ping gets no answer."""
    k = rump_init(clock="real", seed=8, threads=False)
    try:
        with tap_peer(k, f"{KADDR}/24", f"{LADDR}/24", serve=False) as (ns, _tap):
            assert not k.sched.background
            r = ns_run(ns, ["ping", "-c", "1", "-W", "1", KADDR], timeout=20)
            assert r.returncode != 0 and "0 received" in r.stdout, r.stdout
            assert _echo_replies(k) == 0
    finally:
        k.halt()
