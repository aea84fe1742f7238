"""rump_server processes and rumpclient: processes, blocking calls, bad input, reconnection,
etfs over the wire, commands, and two servers on one shmif bus."""

from __future__ import annotations

import errno
import importlib.util
import os
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

import pytest

from rumpnet.rumpclient import (
    RUMPCLIENT_RETRYCONN_ONCE,
    RumpClient,
    rumpclient_setconnretry,
)
from rumpnet.server.protocol import PROTO_VERSION, decode, frame

SERVER = [sys.executable, "-m", "rumpnet.server.rump_server"]
NET = ["-lrumpnet", "-lrumpnet_net", "-lrumpnet_netinet"]


def _wait_ready(path: str, proc: subprocess.Popen | None, log: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"rump_server exited with {proc.returncode}: {open(log).read()}")
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(path)
            return
        except OSError:
            time.sleep(0.02)
        finally:
            s.close()
    raise AssertionError(f"rump_server at {path} did not come up")


@pytest.fixture
def sockdir():
    d = tempfile.mkdtemp(prefix="rs", dir="/tmp")  # short: unix socket paths are limited
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def start_server(sockdir):
    """``start(*args, name=...) -> (url, Popen)``: a foreground (-s) rump_server, always
    killed at teardown."""
    procs: list[subprocess.Popen] = []

    def start(*args: str, name: str = "k.sock", wait: bool = True) -> tuple[str, subprocess.Popen]:
        path = os.path.join(sockdir, name)
        log = path + ".log"
        with open(log, "w") as f:
            p = subprocess.Popen([*SERVER, "-s", *args, "unix://" + path], stdout=f, stderr=subprocess.STDOUT)
        procs.append(p)
        if wait:
            _wait_ready(path, p, log)
        return "unix://" + path, p

    yield start
    for p in procs:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture(scope="module")
def server():
    """One server shared by the tests that leave it running (each uses its own ports)."""
    d = tempfile.mkdtemp(prefix="rs", dir="/tmp")
    path = os.path.join(d, "shared.sock")
    log = path + ".log"
    with open(log, "w") as f:
        p = subprocess.Popen([*SERVER, "-s", *NET, "unix://" + path], stdout=f, stderr=subprocess.STDOUT)
    try:
        _wait_ready(path, p, log)
        yield "unix://" + path
        assert p.poll() is None, "the shared server died"
    finally:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(d, ignore_errors=True)


def _closed_by_server(s: socket.socket, timeout: float = 5.0) -> bytes:
    """Read until the server closes; returns everything it sent."""
    s.settimeout(timeout)
    got = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return got
        got += chunk


def _handshake(path: str, version: int = PROTO_VERSION) -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    n = struct.unpack(">I", s.recv(4, socket.MSG_WAITALL))[0]
    banner = decode(s.recv(n, socket.MSG_WAITALL))
    assert banner[0] == "rumpnet-sp" and banner[1] == PROTO_VERSION
    s.sendall(frame(("hello", version, {"comm": "raw"})))
    return s


# -- processes and fds -------------------------------------------------------------------------------
def test_clients_are_processes_with_own_fd_tables(server):
    with RumpClient(server) as c1, RumpClient(server) as c2:
        assert c1.pid != c2.pid
        a = c1.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
        b = c2.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
        assert a == b == 0
        c1.rump_sys_bind(a, ("127.0.0.1", 4000))
        c1.rump_sys_close(a)
        assert c2.rump_sys_getsockname(b) == ("0.0.0.0", 0)
        with pytest.raises(OSError) as ei:
            c1.rump_sys_getsockname(a)
        assert ei.value.errno == errno.EBADF
        procs = {pid: fds for pid, _comm, fds in c1.procs()}
        assert procs[c1.pid] == [] and [fd for fd, _ in procs[c2.pid]] == [0]


def test_udp_and_tcp_between_clients(server):
    with RumpClient(server) as c1, RumpClient(server) as c2:
        u = c1.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
        c1.rump_sys_bind(u, ("127.0.0.1", 5353))
        v = c2.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
        assert c2.rump_sys_sendto(v, b"datagram", 0, ("127.0.0.1", 5353)) == 8
        data, addr = c1.rump_sys_recvfrom(u, 100, 0)
        assert data == b"datagram" and addr[0] == "127.0.0.1"
        lst = c1.socket(socket.AF_INET, socket.SOCK_STREAM)
        lst.bind(("127.0.0.1", 8080))
        lst.listen(5)
        cli = c2.socket(socket.AF_INET, socket.SOCK_STREAM)
        cli.connect(("127.0.0.1", 8080))
        conn, peer = lst.accept()
        cli.sendall(b"x" * 100_000)
        got = b""
        while len(got) < 100_000:
            got += conn.recv(65536)
        assert got == b"x" * 100_000 and peer == cli.getsockname()
        for s in (conn, cli, lst):
            s.close()


def test_blocked_recvfrom_blocks_nobody_else(server):
    with RumpClient(server) as c1, RumpClient(server) as c2:
        fd = c1.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
        c1.rump_sys_bind(fd, ("127.0.0.1", 6000))
        result: list = []
        t = threading.Thread(target=lambda: result.append(c1.rump_sys_recvfrom(fd, 100, 0)))
        t.start()
        time.sleep(0.2)
        assert t.is_alive()
        t0 = time.monotonic()
        other = c1.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)  # same client, other thread
        s2 = c2.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
        assert c2.rump_sys___sysctl("kern.hostname")
        assert time.monotonic() - t0 < 2.0
        c2.rump_sys_sendto(s2, b"wake", 0, ("127.0.0.1", 6000))
        t.join(5)
        assert result and result[0][0] == b"wake"
        c1.rump_sys_close(other)


def test_poll_and_sysctl_out_arguments(server):
    from rumpnet.sys_socket import pollfd

    with RumpClient(server) as c:
        fd = c.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
        c.rump_sys_bind(fd, ("127.0.0.1", 7000))
        entries = [pollfd(fd, select_pollin()), [fd, select_pollin()]]
        assert c.rump_sys_poll(entries, None, 0) == 0
        c.rump_sys_sendto(fd, b"self", 0, ("127.0.0.1", 7000))
        assert c.rump_sys_poll(entries, None, 1000) == 2
        assert entries[0].revents & select_pollin() and entries[1][2] & select_pollin()
        oldp = bytearray(64)
        assert c.rump_sys___sysctl("kern.ostype", None, oldp) == "NetBSD"
        assert bytes(oldp).startswith(b"NetBSD\0")


def select_pollin() -> int:
    import select

    return select.POLLIN


def test_killed_client_releases_its_fds(server):
    code = textwrap.dedent(f"""
        import time
        from rumpnet.rumpclient import RumpClient
        c = RumpClient({server!r})
        fd = c.rump_sys_socket(2, 2, 0)
        c.rump_sys_bind(fd, ("127.0.0.1", 7777))
        c.rump_sys_socket(2, 1, 0)
        print(c.pid, flush=True)
        time.sleep(60)
    """)
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) as child:
        try:
            _killed_client(server, child)
        finally:
            if child.poll() is None:
                child.kill()


def _killed_client(server: str, child: subprocess.Popen) -> None:
    assert child.stdout is not None
    pid = int(child.stdout.readline())
    with RumpClient(server) as c:
        procs = {p: fds for p, _comm, fds in c.procs()}
        assert [fd for fd, _kind in procs[pid]] == [0, 1]
        assert "127.0.0.1.7777" in c.netstat("-an")
        child.kill()
        child.wait()
        deadline = time.monotonic() + 5
        while pid in {p for p, _, _ in c.procs()} and time.monotonic() < deadline:
            time.sleep(0.02)
        assert pid not in {p for p, _, _ in c.procs()}
        assert "127.0.0.1.7777" not in c.netstat("-an")
        fd = c.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
        c.rump_sys_bind(fd, ("127.0.0.1", 7777))  # the port is free again


def test_client_closing_while_blocked(server):
    with RumpClient(server) as watcher:
        c = RumpClient(server)
        pid = c.pid
        fd = c.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
        c.rump_sys_bind(fd, ("127.0.0.1", 7100))
        errs: list = []

        def blocked() -> None:
            try:
                c.rump_sys_recvfrom(fd, 10, 0)
            except OSError as e:
                errs.append(e.errno)

        t = threading.Thread(target=blocked)
        t.start()
        time.sleep(0.2)
        c.close()
        t.join(5)
        assert errs == [errno.ENOTCONN]
        deadline = time.monotonic() + 5
        while pid in {p for p, _, _ in watcher.procs()} and time.monotonic() < deadline:
            time.sleep(0.02)
        s = watcher.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
        watcher.rump_sys_bind(s, ("127.0.0.1", 7100))


# -- bad input -----------------------------------------------------------------------------------------
BAD_INPUTS = {
    "http": (False, b"GET / HTTP/1.0\r\n\r\n"),
    "huge_length": (True, struct.pack(">I", 0x7FFFFFFF) + b"x" * 100),
    "truncated": (True, struct.pack(">I", 100) + b"x" * 10),
    "bad_tag": (True, struct.pack(">I", 2) + b"\xff\x00"),
    "lying_count": (True, struct.pack(">I", 5) + b"l\xff\xff\xff\xff"),
    "too_deep": (True, struct.pack(">I", 501) + b"l\x00\x00\x00\x01" * 100 + b"N"),
    "trailing": (True, struct.pack(">I", 2) + b"NN"),
    "not_a_call": (True, frame(("call", "one", 2, 3))),
    "unknown_call": (True, frame(("call", 1, "rump_sys_nosuch", ()))),
    "etfs_register_is_local_only": (True, frame(("call", 1, "rump_pub_etfs_register", ("/x", "/etc/passwd", 0)))),
    "reboot_name": (True, frame(("call", 1, "__init__", ()))),
    "bad_utf8": (True, struct.pack(">I", 6) + b"s\x00\x00\x00\x01\xff"),
}


@pytest.mark.parametrize("index, name", list(enumerate(sorted(BAD_INPUTS))))
def test_bad_input_closes_only_that_connection(server, index, name):
    handshake, data = BAD_INPUTS[name]
    path = server[len("unix://"):]
    with RumpClient(server) as good:
        fd = good.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
        if handshake:
            s = _handshake(path)
        else:
            s = socket.socket(socket.AF_UNIX)
            s.connect(path)
        with s:
            s.sendall(data)
            if name == "truncated":
                s.shutdown(socket.SHUT_WR)
            _closed_by_server(s)
        good.rump_sys_bind(fd, ("127.0.0.1", 7200 + index))
        with RumpClient(server) as again:
            assert again.rump_sys___sysctl("kern.ostype") == "NetBSD"


def test_error_replies_keep_the_connection(server):
    with RumpClient(server) as c:
        for call in (lambda: c.rump_sys_bind(0, ("127.0.0.1", 1)),  # EBADF
                     lambda: c.rump_sys_socket(12345, 2, 0),  # EAFNOSUPPORT
                     lambda: c.rump_sys_bind("x", "y"),  # bad types reach the kernel
                     lambda: c.call("rump_sys_close"),  # wrong argument count (server side)
                     lambda: c.call("rump_sys_socket", 2, 2, 0, 9, 9)):
            with pytest.raises(OSError):
                call()
        assert c.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0) == 0


def test_version_mismatch_is_refused(server):
    s = _handshake(server[len("unix://"):], version=99)
    with s:
        reply = _closed_by_server(s)
    assert decode(reply[4:])[2] == errno.EPROTONOSUPPORT


# -- command line and daemon ------------------------------------------------------------------------
def test_usage_errors(capsys):
    from rumpnet.server.rump_server import main, main_all

    for args in ([], ["a", "b"], ["-c", "zero", "unix:///tmp/x"], ["-d", "key=/x", "unix:///tmp/x"],
                 ["-r", "lots", "unix:///tmp/x"], ["http://nope"]):
        assert main(args) == 2, args
        assert "usage: rump_server" in capsys.readouterr().err
    assert main_all(["-q", "unix:///tmp/x"]) == 2
    assert "usage: rump_allserver" in capsys.readouterr().err
    r = subprocess.run([*SERVER, "-x", "unix:///tmp/x"], capture_output=True, text=True, timeout=20)
    assert r.returncode == 2 and "usage: rump_server" in r.stderr


def test_unknown_component_fails(sockdir):
    r = subprocess.run([*SERVER, "-s", "-lrumpnet_nosuch", f"unix://{sockdir}/x"], capture_output=True, text=True,
                       timeout=20)
    assert r.returncode == 1 and "nosuch" in r.stderr


def test_detaches_once_ready(sockdir):
    path = os.path.join(sockdir, "d.sock")
    r = subprocess.run([*SERVER, *NET, "-lrumpnet_shmif", f"unix://{path}"], capture_output=True, timeout=20)
    assert r.returncode == 0 and r.stdout == b"" and r.stderr == b""
    pid = None
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        with RumpClient(f"unix://{path}") as c:  # no waiting: ready when the parent exits
            pid = c.server_info["server_pid"]
            assert pid != os.getpid()
            assert set(c.server_info["components"]) >= {"net", "netinet", "shmif"}
            c.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
            c.halt()
        deadline = time.monotonic() + 5
        while os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not os.path.exists(path)
        pid = None
    finally:
        if pid is not None:
            os.kill(pid, signal.SIGKILL)


def test_tcp_url_and_allserver(sockdir):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    script = os.path.join(os.path.dirname(sys.executable), "rump_allserver")
    cmd, env = ([script], os.environ) if os.path.exists(script) else (SERVER, dict(os.environ, RUMP_ALLSERVER="1"))
    p = subprocess.Popen([*cmd, "-s", f"tcp://127.0.0.1:{port}/"], env=env, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                c = RumpClient(f"tcp://127.0.0.1:{port}/")
                break
            except OSError:
                assert time.monotonic() < deadline and p.poll() is None
                time.sleep(0.05)
        with c:
            comps = set(c.server_info["components"])
            assert {"net", "netinet", "shmif", "virtif"} <= comps and "sockin" not in comps
    finally:
        p.terminate()
        p.wait(5)


# -- reconnection -------------------------------------------------------------------------------------
def test_reconnect_after_server_restart(start_server, sockdir):
    url, p = start_server(*NET)
    c = RumpClient(url, retry=10)
    try:
        old_pid = c.pid
        fd = c.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
        c.rump_sys_bind(fd, ("127.0.0.1", 9000))
        p.terminate()
        p.wait(5)
        threading.Timer(0.5, lambda: start_server(*NET, wait=False)).start()
        fd2 = c.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)  # waits for the new server
        assert fd2 == 0  # a new process with an empty fd table
        c.rump_sys_bind(fd2, ("127.0.0.1", 9000))
        assert c.pid >= 2 and c.pid == old_pid  # the first client of a fresh kernel again
    finally:
        c.close()


def test_no_reconnect_and_once(start_server):
    url, p = start_server(*NET)
    c0 = RumpClient(url)  # default: no reconnection
    c1 = RumpClient(url, retry=RUMPCLIENT_RETRYCONN_ONCE)
    p.terminate()
    p.wait(5)
    for c in (c0, c1):
        with pytest.raises(OSError) as ei:
            c.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
        assert ei.value.errno == errno.ENOTCONN
    start_server(*NET)
    with pytest.raises(OSError):
        c1.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)  # it gave up after its one attempt
    c0.setconnretry(5)
    assert c0.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0) == 0
    c0.close()
    c1.close()
    with pytest.raises(OSError) as ei:
        rumpclient_setconnretry(-4)
    assert ei.value.errno == errno.EINVAL


def test_retryconn_die_exits_the_process(start_server):
    url, p = start_server(*NET)
    code = textwrap.dedent(f"""
        import time
        from rumpnet import rumpclient
        rumpclient.rumpclient_setconnretry(rumpclient.RUMPCLIENT_RETRYCONN_DIE)
        rumpclient.init({url!r})
        print(rumpclient.rump_sys_socket(2, 2, 0), flush=True)
        time.sleep(30)
    """)
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as child:
        try:
            assert child.stdout.readline().strip() == "0"
            p.terminate()
            assert child.wait(10) == 1
            assert "lost" in child.stderr.read()
        finally:
            if child.poll() is None:
                child.kill()


# -- etfs over the wire --------------------------------------------------------------------------------
def test_drivespec_files_are_the_only_host_files(start_server, sockdir):
    img = os.path.join(sockdir, "disk.img")
    url, _ = start_server(*NET, "-d", f"key=/disk,hostpath={img},size=64k", "-d",
                          f"key=/conf,hostpath={img},type=reg", name="e.sock")
    assert os.path.getsize(img) == 65536
    with RumpClient(url) as c:
        fd = c.rump_sys_open("/disk", os.O_RDWR)
        assert c.rump_sys_pwrite(fd, b"remote", 100) == 6
        assert c.rump_sys_pread(fd, 6, 100) == b"remote"
        st = c.rump_sys_fstat(fd)
        assert stat.S_ISBLK(st.st_mode) and st.st_size == 65536
        c.rump_sys_close(fd)
        for path in ("/etc/passwd", img, "/disk/../etc/passwd"):
            with pytest.raises(OSError) as ei:
                c.rump_sys_open(path, os.O_RDONLY)
            assert ei.value.errno == errno.ENOENT
    with open(img, "rb") as f:
        f.seek(100)
        assert f.read(6) == b"remote"


def test_large_data_is_split_into_frames(start_server, sockdir):
    big = os.path.join(sockdir, "big")
    open(big, "wb").close()
    url, _ = start_server("-c", "2", "-r", "64m", "-v", "-m", "rumpvfs", "-d", f"key=/big,hostpath={big},type=reg",
                          name="b.sock")
    payload = os.urandom(9 * 1024 * 1024)  # more than one frame holds
    with RumpClient(url) as c:
        fd = c.rump_sys_open("/big", os.O_RDWR)
        assert c.rump_sys_write(fd, payload) == len(payload)
        c.rump_sys_lseek(fd, 0, os.SEEK_SET)
        got = b""
        while chunk := c.rump_sys_read(fd, len(payload)):
            got += chunk
        assert got == payload
        c.rump_sys_close(fd)


def test_init_from_environment(server, monkeypatch):
    from rumpnet import rumpclient

    monkeypatch.delenv("RUMP_SERVER", raising=False)
    with pytest.raises(OSError) as ei:
        RumpClient()
    assert ei.value.errno == errno.ENOENT
    monkeypatch.setenv("RUMP_SERVER", server)
    c = rumpclient.init()
    try:
        assert rumpclient.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0) == 0
        assert c.hostname == "rump0"
    finally:
        c.close()
    with pytest.raises(OSError) as ei:
        RumpClient("http://nope")
    assert ei.value.errno == errno.EINVAL


def test_random_garbage_after_handshake(server):
    import random

    rng = random.Random(7)
    path = server[len("unix://"):]
    with RumpClient(server) as good:
        for _ in range(30):
            body = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
            s = _handshake(path)
            with s:
                s.recv(4096)  # welcome
                s.sendall(struct.pack(">I", len(body)) + body)
                _closed_by_server(s)
        assert good.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0) == 0


# -- commands and two servers on a shmif bus -----------------------------------------------------------
def test_commands_and_cli(server):
    with RumpClient(server) as c:
        assert "lo0" in c.ifconfig("-a")
        assert c.sysctl("kern.ostype").strip().endswith("NetBSD")
        with pytest.raises(OSError) as ei:
            c.ifconfig("nosuch0", "up")
        assert ei.value.errno
    env = dict(os.environ, RUMP_SERVER=server)
    cli = [sys.executable, "-c", "import sys; from rumpnet.commands import cli; sys.exit(cli.ifconfig_main())"]
    r = subprocess.run([*cli, "lo0"], env=env, capture_output=True, text=True, timeout=20)
    assert r.returncode == 0 and "lo0" in r.stdout
    r = subprocess.run([*cli, "nosuch0", "up"], env=env, capture_output=True, text=True, timeout=20)
    assert r.returncode == 1 and r.stderr.startswith("rump.ifconfig: ")
    r = subprocess.run([*cli, "-z"], env=env, capture_output=True, text=True, timeout=20)
    assert r.returncode == 2 and "usage" in r.stderr


def test_cli_halt(start_server):
    url, p = start_server(*NET, name="h.sock")
    env = dict(os.environ, RUMP_SERVER=url)
    halt = [sys.executable, "-c", "import sys; from rumpnet.commands import cli; sys.exit(cli.halt_main())"]
    r = subprocess.run(halt, env=env, capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    assert p.wait(10) == 0
    r = subprocess.run(halt, env=env, capture_output=True, text=True, timeout=20)
    assert r.returncode == 1 and r.stderr.startswith("rump.halt: ")


def _two_servers_on_a_bus(start_server, sockdir) -> list[RumpClient]:
    bus = os.path.join(sockdir, "bus")
    urls = [start_server(*NET, "-lrumpnet_shmif", name=f"s{i}.sock")[0] for i in (1, 2)]
    clients = [RumpClient(u) for u in urls]
    for c, addr in zip(clients, ("10.1.0.1", "10.1.0.2")):
        c.ifconfig("shmif0", "create")
        c.ifconfig("shmif0", "linkstr", bus)
        c.ifconfig("shmif0", "inet", f"{addr}/24")
    return clients


def test_two_servers_on_one_shmif_bus_udp(start_server, sockdir):
    clients = _two_servers_on_a_bus(start_server, sockdir)
    try:
        a = clients[1].rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
        clients[1].rump_sys_bind(a, ("10.1.0.2", 4242))
        b = clients[0].rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
        clients[0].rump_sys_sendto(b, b"over the bus", 0, ("10.1.0.2", 4242))
        port = clients[0].rump_sys_getsockname(b)[1]
        assert clients[1].rump_sys_recvfrom(a, 100, 0) == (b"over the bus", ("10.1.0.1", port))
    finally:
        for c in clients:
            c.close()


def test_two_servers_on_one_shmif_bus_ping(start_server, sockdir):
    if importlib.util.find_spec("rumpnet.commands.ping") is None:
        pytest.skip("rumpnet.commands.ping (the in-kernel ping) is not in this tree yet")
    clients = _two_servers_on_a_bus(start_server, sockdir)
    try:
        out = clients[0].ping("-c", "2", "-i", "0.2", "10.1.0.2")
        assert "2 packets received" in out
        out = clients[1].ping("-c", "1", "10.1.0.1")
        assert "1 packets received" in out
    finally:
        for c in clients:
            c.close()


def test_port_0_prints_the_url_it_got_and_listen_errors_name_the_url(sockdir):
    # issue 16: tcp://127.0.0.1:0/ never said which port it got
    r = subprocess.run([*SERVER, *NET, "tcp://127.0.0.1:0/"], capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    url = r.stdout.strip()
    assert url.startswith("tcp://127.0.0.1:") and url.endswith("/") and not url.endswith(":0/"), url
    with RumpClient(url) as c:
        assert "netinet" in c.server_info["components"]
        c.halt()
    # a unix path that cannot be made is named, not a bare "No such file or directory"
    bad = f"unix://{sockdir}/no/such/dir/s"
    r = subprocess.run([*SERVER, "-s", bad], capture_output=True, text=True, timeout=20)
    assert r.returncode == 1 and f"rump_server: {bad}: cannot listen: No such file or directory" in r.stderr
    # and a client names the server that is not there
    with pytest.raises(OSError) as ei:
        RumpClient(bad)
    assert bad in str(ei.value.strerror)


def test_route_runs_in_the_client_through_a_routing_socket(server):
    """route(8) in this process, the kernel in the server: every call a system call through
    the client (a PF_ROUTE socket and sysctl net.route), none a kernel object."""
    from rumpnet.commands.route import route
    from rumpnet.route_msg import AF_INET, PF_ROUTE, RTA_DST, RTM_ADD, RtMsghdr, SockaddrIn, decode_msg

    with RumpClient(server) as c:
        fd = c.rump_sys_socket(PF_ROUTE, socket.SOCK_RAW, AF_INET)
        assert route(c, ["add", "-net", "10.99.0.0/16", "127.0.0.1", "-reject"]) == \
            "add net 10.99.0.0: gateway 127.0.0.1\n"
        shown = route(c, ["-n", "show", "-inet"])
        assert "10.99/16           127.0.0.1          UGRS" in shown, shown
        msg = decode_msg(c.rump_sys_read(fd, 4096))
        assert isinstance(msg, RtMsghdr) and (msg.rtm_type, msg.addrs[RTA_DST]) == (RTM_ADD, SockaddrIn(0x0A630000))
        with pytest.raises(OSError) as ei:
            route(c, ["add", "-net", "10.99.0.0/16", "127.0.0.1", "-reject"])
        assert ei.value.errno == errno.EEXIST and "File exists" in str(ei.value)
        assert route(c, ["delete", "-net", "10.99.0.0/16"]) == "delete net 10.99.0.0\n"
        c.rump_sys_close(fd)
