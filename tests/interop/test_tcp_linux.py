"""TCP against Linux: a kernel (real clock, serving in the background) with virt0 on a tap
whose other end is in a fresh network namespace. Linux clients (Python sockets, curl)
against our servers, our client against a Linux server, multi-megabyte transfers each
way checked by SHA-256, the options of the handshakes checked in a capture of virt0, and
a RST from Linux (SO_LINGER 0) surfacing as ECONNRESET."""

from __future__ import annotations

import errno
import hashlib
import http.server
import random
import socket
import struct
import sys
import threading

import pytest

from rumpnet.bpf import PcapReader
from rumpnet.netinet import tcp as tcpwire
from rumpnet.socket import create_connection
from rumpnet.testing.netns import (
    have_netns_privileges,
    link_exists,
    ns_python_popen,
    ns_run,
    tap_peer,
)

_ok, _why = have_netns_privileges()
pytestmark = [pytest.mark.interop, pytest.mark.skipif(not _ok, reason=_why)]

LINUX, RUMP = "10.99.43.1", "10.99.43.2"
SIZE = 4 * 1024 * 1024


def _blob(seed: int, n: int = SIZE) -> bytes:
    return random.Random(seed).randbytes(n)


@pytest.fixture
def peer(vnet_real, tmp_path):
    """(kernel, namespace, path of the pcap of virt0 written while the test runs)."""
    k = vnet_real.kernel(seed=43, hostname="rumptcp")  # halted by vnet_real
    pcap_path = tmp_path / "virt0.pcap"
    with tap_peer(k, f"{RUMP}/24", f"{LINUX}/24", prefix="rnt") as (ns, tap):
        cap = k.config.pcap("virt0", str(pcap_path), filter="tcp")
        try:
            yield k, ns, pcap_path
        finally:
            cap.close()
    assert not link_exists(tap)
    assert not ns.exists


def _handshakes(pcap_path) -> list[tuple[str, tcpwire.TcpRepr]]:
    """The SYN and SYN-ACK segments in a capture, as (source address, parsed segment)."""
    out = []
    for _ts, frame in PcapReader(str(pcap_path)):
        if len(frame) < 34 or frame[12:14] != b"\x08\x00" or frame[23] != 6:
            continue
        ihl = (frame[14] & 15) * 4
        src, dst = struct.unpack_from("!II", frame, 26)
        total = struct.unpack_from("!H", frame, 16)[0]
        seg = tcpwire.parse(bytes(frame[14 + ihl:14 + total]), src, dst, True)
        if seg.flags & tcpwire.TH_SYN:
            out.append((socket.inet_ntoa(struct.pack("!I", src)), seg))
    return out


def _assert_options_negotiated(pcap_path, client: str, server: str) -> None:
    hs = _handshakes(pcap_path)
    syns = [s for src, s in hs if src == client and not s.flags & tcpwire.TH_ACK]
    synacks = [s for src, s in hs if src == server and s.flags & tcpwire.TH_ACK]
    assert syns and synacks, hs
    for seg in (syns[0], synacks[0]):
        assert seg.mss is not None and 536 <= seg.mss <= 1460, seg
        assert seg.wscale is not None, seg          # window scaling (RFC 7323)
        assert seg.sack_permitted, seg              # SACK-permitted (RFC 2018)
        assert seg.timestamps is not None, seg      # timestamps (RFC 7323)
    # the SYN-ACK echoes the SYN's timestamp
    assert synacks[0].timestamps[1] == syns[0].timestamps[0]


# -- Linux client, our server ------------------------------------------------------------
LINUX_CLIENT = """
import hashlib, random, socket, sys
host, port, seed, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
data = random.Random(seed).randbytes(size)
s = socket.create_connection((host, port), timeout=30)
s.sendall(data)
s.shutdown(socket.SHUT_WR)
h, n = hashlib.sha256(), 0
while True:
    b = s.recv(1 << 20)
    if not b:
        break
    h.update(b); n += len(b)
print(n, h.hexdigest(), flush=True)
"""


@pytest.mark.timeout(120)
def test_linux_client_bulk_both_ways(peer) -> None:
    k, ns, pcap_path = peer
    ls = k.socket()
    ls.bind(("0.0.0.0", 9001))
    ls.listen(4)
    result: dict[str, object] = {}

    def serve() -> None:
        try:
            conn, addr = ls.accept()
            result["peer"] = addr
            conn.settimeout(60)
            h, n = hashlib.sha256(), 0
            while True:
                b = conn.recv(1 << 20)
                if not b:
                    break
                h.update(b)
                n += len(b)
            result["got"] = (n, h.hexdigest())
            conn.sendall(_blob(2))
            conn.close()
        except BaseException as e:  # reported by the test thread
            result["error"] = e

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    with ns_python_popen(ns, LINUX_CLIENT, args=(RUMP, "9001", "1", str(SIZE))) as p:
        out, err = p.communicate(timeout=90)
    t.join(30)
    ls.close()
    assert "error" not in result, result["error"]
    assert p.popen.returncode == 0, err
    assert result["got"] == (SIZE, hashlib.sha256(_blob(1)).hexdigest())
    n, digest = out.split()
    assert (int(n), digest) == (SIZE, hashlib.sha256(_blob(2)).hexdigest())
    assert result["peer"][0] == LINUX
    _assert_options_negotiated(pcap_path, client=LINUX, server=RUMP)
    st = k.inet.tcp.stats
    assert st.tcps_rcvinternalerr == 0 and st.tcps_rcvbadsum == 0


# -- curl against a tiny HTTP server on the kernel -----------------------------------------
BODY = _blob(3, 2 * 1024 * 1024)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802
        body = BODY if self.path == "/blob" else b"hello, curl\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


class _Srv:
    server_name, server_port = "rump", 8080


@pytest.mark.timeout(120)
def test_curl_against_http_server_on_kernel(peer, tmp_path) -> None:
    k, ns, _ = peer
    ls = k.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", 8080))
    ls.listen(8)
    errors: list[BaseException] = []
    stop = threading.Event()

    def serve() -> None:
        ls.settimeout(0.5)
        while not stop.is_set():
            try:
                conn, addr = ls.accept()
            except TimeoutError:
                continue
            except OSError as e:
                if not stop.is_set():
                    errors.append(e)
                return

            def handle(conn=conn, addr=addr) -> None:
                try:
                    conn.settimeout(30)
                    _Handler(conn, addr, _Srv())
                except BaseException as e:  # noqa: BLE001
                    errors.append(e)
                finally:
                    conn.close()

            threading.Thread(target=handle, daemon=True).start()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        out = tmp_path / "blob"
        r = ns_run(ns, ["curl", "-s", "-S", "--max-time", "60", "-o", str(out), "-w", "%{http_code}",
                        f"http://{RUMP}:8080/blob"], timeout=90)
        assert r.returncode == 0, r.stderr
        assert r.stdout == "200"
        assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(BODY).digest()
        # several small requests on one keep-alive connection, and in parallel
        r = ns_run(ns, ["curl", "-s", "-S", "--max-time", "30"] + [f"http://{RUMP}:8080/{i}" for i in range(5)],
                   timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout == "hello, curl\n" * 5
        r = ns_run(ns, ["curl", "-s", "-S", "--max-time", "30", "--parallel", "--parallel-max", "8"]
                   + [f"http://{RUMP}:8080/p{i}" for i in range(8)], timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout == "hello, curl\n" * 8
    finally:
        stop.set()
        t.join(5)
        ls.close()
    assert not errors, errors


@pytest.mark.timeout(120)
def test_curl_against_asyncio_streams_server(peer, tmp_path) -> None:
    """The same with an HTTP server written on rumpnet.streams, running as coroutines on
    the kernel's (background-served) loop."""
    import asyncio

    from rumpnet import streams

    k, ns, _ = peer
    loop = k.sched.loop

    async def handle(reader, writer) -> None:
        try:
            while True:
                request = await reader.readline()
                if not request:
                    break
                while (await reader.readline()) not in (b"\r\n", b""):
                    pass
                path = request.split()[1].decode()
                body = BODY if path == "/blob" else f"streams says {path}\n".encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
                writer.write(body)
                await writer.drain()
        finally:
            writer.close()
            await writer.wait_closed()

    server = asyncio.run_coroutine_threadsafe(
        streams.start_server(k, handle, "0.0.0.0", 8082), loop).result(10)
    try:
        out = tmp_path / "blob"
        r = ns_run(ns, ["curl", "-s", "-S", "--max-time", "60", "-o", str(out), "-w", "%{http_code}",
                        f"http://{RUMP}:8082/blob"], timeout=90)
        assert r.returncode == 0 and r.stdout == "200", r.stderr
        assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(BODY).digest()
        r = ns_run(ns, ["curl", "-s", "-S", "--max-time", "30", "--parallel"]
                   + [f"http://{RUMP}:8082/x{i}" for i in range(6)], timeout=60)
        assert r.returncode == 0, r.stderr
        assert sorted(r.stdout.splitlines()) == sorted(f"streams says /x{i}" for i in range(6))
    finally:
        async def stop() -> None:
            server.close()
            await server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)


# -- our client, Linux server -------------------------------------------------------------
LINUX_SERVER = """
import hashlib, random, socket, struct, sys
host, port, seed, size, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind((host, port))
ls.listen(1)
print("ready", flush=True)
c, addr = ls.accept()
c.settimeout(30)
if mode == "rst":
    c.recv(100)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()
    print("reset", flush=True)
    sys.exit(0)
h, n = hashlib.sha256(), 0
while n < size:
    b = c.recv(1 << 20)
    if not b:
        break
    h.update(b); n += len(b)
c.sendall(random.Random(seed).randbytes(size))
c.shutdown(socket.SHUT_WR)
c.recv(1)
print(n, h.hexdigest(), flush=True)
"""


@pytest.mark.timeout(120)
def test_our_client_linux_server_bulk_both_ways(peer) -> None:
    k, ns, pcap_path = peer
    with ns_python_popen(ns, LINUX_SERVER, args=(LINUX, "9002", "5", str(SIZE), "bulk")) as p:
        assert p.stdout.readline().strip() == "ready"
        s = create_connection(k, (LINUX, 9002), timeout=30)
        s.sendall(_blob(4))
        h, n = hashlib.sha256(), 0
        while True:
            b = s.recv(1 << 20)
            if not b:
                break
            h.update(b)
            n += len(b)
        s.close()
        out, err = p.communicate(timeout=60)
    assert (n, h.hexdigest()) == (SIZE, hashlib.sha256(_blob(5)).hexdigest())
    got_n, digest = out.split()
    assert (int(got_n), digest) == (SIZE, hashlib.sha256(_blob(4)).hexdigest()), err
    _assert_options_negotiated(pcap_path, client=RUMP, server=LINUX)
    st = k.inet.tcp.stats
    assert st.tcps_rcvinternalerr == 0 and st.tcps_rcvbadsum == 0
    assert st.tcps_rcvbyte >= SIZE and st.tcps_sndbyte >= SIZE


@pytest.mark.timeout(60)
def test_linux_rst_is_econnreset(peer) -> None:
    k, ns, _ = peer
    with ns_python_popen(ns, LINUX_SERVER, args=(LINUX, "9003", "0", "0", "rst")) as p:
        assert p.stdout.readline().strip() == "ready"
        fd = k.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
        k.rump_sys_setsockopt(fd, socket.SOL_SOCKET, socket.SO_RCVTIMEO, 20.0)
        k.rump_sys_connect(fd, (LINUX, 9003))
        k.rump_sys_send(fd, b"please reset me", 0)
        assert p.stdout.readline().strip() == "reset"
        # a reader blocked in recv (or arriving after the RST) gets ECONNRESET once
        with pytest.raises(OSError) as ei:
            k.rump_sys_recv(fd, 100, 0)
        assert ei.value.errno == errno.ECONNRESET
        assert k.rump_sys_recv(fd, 100, 0) == b""
        with pytest.raises(OSError) as ei:
            k.rump_sys_send(fd, b"x", 0)
        assert ei.value.errno == errno.EPIPE
        k.rump_sys_close(fd)
    assert k.inet.tcp.stats.tcps_rcvrst >= 1


LINUX_RESETTING_CLIENT = """
import socket, struct, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20)
s.sendall(b"hello")
s.recv(100)
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
s.close()
print("reset", flush=True)
"""


@pytest.mark.timeout(60)
def test_linux_client_rst_is_econnreset_on_our_server(peer) -> None:
    k, ns, _ = peer
    ls = k.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    k.rump_sys_bind(ls, ("0.0.0.0", 9004))
    k.rump_sys_listen(ls, 1)
    k.rump_sys_setsockopt(ls, socket.SOL_SOCKET, socket.SO_RCVTIMEO, 20.0)
    with ns_python_popen(ns, LINUX_RESETTING_CLIENT, args=(RUMP, "9004")) as p:
        fd, addr = k.rump_sys_accept(ls)
        assert addr[0] == LINUX
        k.rump_sys_setsockopt(fd, socket.SOL_SOCKET, socket.SO_RCVTIMEO, 20.0)
        assert k.rump_sys_recv(fd, 5, socket.MSG_WAITALL) == b"hello"
        k.rump_sys_send(fd, b"bye", 0)
        assert p.stdout.readline().strip() == "reset"
        with pytest.raises(OSError) as ei:
            while True:
                if k.rump_sys_recv(fd, 100, 0) == b"":
                    pytest.fail("EOF instead of ECONNRESET")
        assert ei.value.errno == errno.ECONNRESET
    k.rump_sys_close(fd)
    k.rump_sys_close(ls)


def test_linux_sees_rst_for_closed_port(peer) -> None:
    """ECONNREFUSED on the Linux side: our kernel answers a SYN to a closed port with RST."""
    k, ns, _ = peer
    r = ns_run(ns, [sys.executable, "-c",
                    "import socket,sys\n"
                    "try:\n"
                    f"    socket.create_connection(('{RUMP}', 9999), timeout=10)\n"
                    "except ConnectionRefusedError:\n"
                    "    print('refused')\n"], timeout=30)
    assert r.stdout.strip() == "refused", r.stdout + r.stderr
    assert k.inet.tcp.stats.tcps_noport >= 1


@pytest.mark.timeout(180)
def test_lossy_link_bulk_both_ways_with_linux(peer) -> None:
    """Loss and delay on both directions of the tap, reordering towards Linux (netem on
    virt0's egress and ingress; Linux's sch_netem may be missing): SACK recovery
    interoperates, both streams arrive intact."""
    from rumpnet.faults.netem import Netem, NetemParams
    from rumpnet.faults.runner import QdiscRunner

    k, ns, pcap_path = peer
    size = 1024 * 1024  # (real clock: losses cost RTOs of a second; keep it short)

    def impair() -> None:
        ifp = k.ifnet.lookup("virt0")
        # (no reordering towards us: netem's reorder lets a retransmission overtake
        # originals sent before it, whose older timestamps PAWS then rightly drops,
        # RFC 7323 5.3; correct, but slow on a real clock)
        for direction, out, reorder in (("egress", ifp.link_transmit, 0.1), ("ingress", ifp.link_deliver, 0.0)):
            nm = Netem(NetemParams(delay=0.005, loss=0.03, reorder=reorder), k.rng)
            ifp.set_qdisc(direction, QdiscRunner(nm, k.sched, out))

    k.sched.run(impair)
    with ns_python_popen(ns, LINUX_SERVER, args=(LINUX, "9005", "7", str(size), "bulk")) as p:
        assert p.stdout.readline().strip() == "ready"
        s = create_connection(k, (LINUX, 9005), timeout=60)
        s.sendall(_blob(6, size))
        h, n = hashlib.sha256(), 0
        while True:
            b = s.recv(1 << 20)
            if not b:
                break
            h.update(b)
            n += len(b)
        s.close()
        out, err = p.communicate(timeout=90)
    assert (n, h.hexdigest()) == (size, hashlib.sha256(_blob(7, size)).hexdigest())
    got_n, digest = out.split()
    assert (int(got_n), digest) == (size, hashlib.sha256(_blob(6, size)).hexdigest()), err
    st = k.inet.tcp.stats
    assert st.tcps_sndrexmitpack > 0 and st.tcps_sack_rcv_opts > 0  # Linux SACKed our losses
    assert st.tcps_rcvoopack > 0                                     # and we reassembled Linux's
    assert st.tcps_rcvinternalerr == 0


@pytest.mark.timeout(60)
def test_handshake_options_in_tcpdump_capture(peer, tmp_path) -> None:
    """Linux's own view: tcpdump -w on the tap inside the namespace sees window scaling,
    SACK-permitted and timestamps in our SYN and in Linux's SYN-ACK (and the reverse)."""
    import signal
    import time

    from rumpnet.testing.netns import ns_popen

    k, ns, _ = peer
    tap = k.ifnet.lookup("virt0").linkstr  # the tap (its Linux end is in ns)
    path = tmp_path / "linux.pcap"
    with ns_popen(ns, ["tcpdump", "-i", tap, "-n", "-U", "--immediate-mode", "-Z", "root", "-w", str(path), "tcp"]) as dump:
        # tcpdump says "listening on ..." on stderr once the capture runs
        line = dump.popen.stderr.readline()
        assert "listening on" in line, line
        with ns_python_popen(ns, LINUX_SERVER, args=(LINUX, "9006", "8", "1000", "bulk")) as p:
            assert p.stdout.readline().strip() == "ready"
            s = create_connection(k, (LINUX, 9006), timeout=20)
            s.sendall(_blob(9, 1000))
            assert len(s.makefile("rb").read()) == 1000
            s.close()
            p.communicate(timeout=20)
        # our server, Linux's client
        ls = k.socket()
        ls.bind(("0.0.0.0", 9007))
        ls.listen(1)
        with ns_python_popen(ns, LINUX_CLIENT, args=(RUMP, "9007", "1", "100")) as p:
            conn, _ = ls.accept()
            conn.settimeout(20)
            while conn.recv(1000):
                pass
            conn.close()
            p.communicate(timeout=20)
        ls.close()
        time.sleep(0.3)
        dump.popen.send_signal(signal.SIGINT)  # tcpdump flushes and reports its counts
        _, err = dump.popen.communicate(timeout=10)
    assert path.stat().st_size > 24, err
    _assert_options_negotiated(path, client=RUMP, server=LINUX)
    hs = _handshakes(path)
    # the second handshake (Linux -> us) is in the capture too (hs: the SYN segments)
    assert any(src == LINUX and not seg.flags & tcpwire.TH_ACK for src, seg in hs)
    assert any(src == RUMP and seg.flags & tcpwire.TH_ACK and seg.wscale is not None
               and seg.sack_permitted and seg.timestamps is not None for src, seg in hs)
