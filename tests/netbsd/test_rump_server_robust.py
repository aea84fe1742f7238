"""rump_server robustness, in the style of the NetBSD ports here (real processes,
``rump.*`` tools): bad input on the unix socket (garbage, truncated frames, huge
lengths, unknown calls, wrong arguments) never takes the server down -- ``rump.sysctl
kern.hostname`` still answers afterwards -- and a client killed with SIGKILL leaves no
sockets behind (``rump.netstat -a`` shows none of them).
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import sys
import time

from rumpnet.server.protocol import PROTO_VERSION, decode, frame

SOCK = "unix://commsock"


def _connect(atf) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(atf.path("commsock"))
    return s


def _read_frame(s: socket.socket):
    hdr = b""
    while len(hdr) < 4:
        chunk = s.recv(4 - len(hdr))
        if not chunk:
            return None
        hdr += chunk
    n = struct.unpack(">I", hdr)[0]
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return decode(data)


def _drain(s: socket.socket) -> None:
    """Read until the server closes the connection (it must, within the timeout)."""
    while True:
        try:
            if not s.recv(65536):
                return
        except ConnectionResetError:
            return


def _handshake(atf) -> socket.socket:
    s = _connect(atf)
    banner = _read_frame(s)
    assert banner[0] == "rumpnet-sp"
    s.sendall(frame(("hello", PROTO_VERSION, {"comm": "badinput", "pid": os.getpid()})))
    assert _read_frame(s)[0] == "welcome"
    return s


def _alive(atf) -> None:
    atf.check("-s exit:0 -o 'match:^kern.hostname = ' rump.sysctl kern.hostname")


def test_bad_input_does_not_take_the_server_down(atf):
    atf.export(RUMP_SERVER=SOCK)
    atf.check(f"-s exit:0 rump_server -lrumpnet -lrumpnet_net -lrumpnet_netinet -lrumpnet_shmif {SOCK}")
    _alive(atf)
    keep = []  # connections left open while others misbehave

    # garbage before the handshake
    s = _connect(atf)
    s.sendall(b"GET / HTTP/1.0\r\n\r\n" + os.urandom(4096))
    _drain(s)
    s.close()
    # a huge frame length (the length alone closes the connection)
    s = _connect(atf)
    s.sendall(b"\xff\xff\xff\xff" + b"x" * 100)
    _drain(s)
    s.close()
    # a truncated frame, then EOF
    s = _connect(atf)
    s.sendall(struct.pack(">I", 1000) + b"\x00" * 10)
    s.shutdown(socket.SHUT_WR)
    _drain(s)
    s.close()
    # a truncated header left hanging (kept open during the rest)
    s = _connect(atf)
    s.sendall(b"\x00\x00")
    keep.append(s)
    _alive(atf)

    # after the handshake: a malformed value, an unknown tag, bad UTF-8, deep nesting
    for payload in (b"t\x00\x00\x00\x05", b"?", b"s\x00\x00\x00\x02\xff\xfe", b"l\x00\x00\x00\x01" * 100,
                    b"i\x00", b"s\xff\xff\xff\xff"):
        s = _handshake(atf)
        s.sendall(struct.pack(">I", len(payload)) + payload)
        reply = _read_frame(s)
        assert reply is None or reply[0] == "err", reply
        _drain(s)
        s.close()
    # a well-formed message that is not a call
    s = _handshake(atf)
    s.sendall(frame(("hello", 1, {})))
    assert _read_frame(s)[0] == "err"
    _drain(s)
    s.close()
    # an unknown call: ENOSYS, connection closed
    s = _handshake(atf)
    s.sendall(frame(("call", 7, "rump_sys_nosuchcall", ())))
    reply = _read_frame(s)
    assert reply[0] == "err" and reply[1] == 7 and reply[2] == 38, reply  # ENOSYS
    _drain(s)
    s.close()
    # wrong arguments to a real call: an error reply, and the connection stays usable
    s = _handshake(atf)
    s.sendall(frame(("call", 1, "rump_sys_socket", ("a", None, 3.5))))
    assert _read_frame(s)[0] == "err"
    s.sendall(frame(("call", 2, "rump_sys_bind", (12345, ("300.1.2.3", -1)))))
    assert _read_frame(s)[0] == "err"
    s.sendall(frame(("call", 3, "command", ("ifconfig", ["-a"]))))
    ok = _read_frame(s)
    assert ok[0] == "ok" and "lo0" in ok[2], ok
    keep.append(s)
    # a client that vanishes in the middle of a frame
    s = _handshake(atf)
    s.sendall(struct.pack(">I", 50) + b"t\x00\x00")
    s.close()

    _alive(atf)
    atf.check("-s exit:0 -o match:lo0 rump.ifconfig -a")
    for s in keep:
        s.close()
    _alive(atf)


CLIENT = r"""
import socket, struct, sys, time
from rumpnet import rumpclient
c = rumpclient.init()
lst = c.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
c.rump_sys_bind(lst, ("127.0.0.1", 7777))
c.rump_sys_listen(lst, 5)
u = c.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
c.rump_sys_bind(u, ("127.0.0.1", 7778))
t = c.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
c.rump_sys_bind(t, ("127.0.0.1", 7779))
c.rump_sys_connect(t, ("127.0.0.1", 7777))
a, _ = c.rump_sys_accept(lst)
# no TIME_WAIT when they are closed: RST (SO_LINGER 0), so netstat -a shows nothing left
for fd in (t, a):
    c.rump_sys_setsockopt(fd, socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
print("ready", flush=True)
time.sleep(600)
"""


def test_killed_client_leaves_no_sockets(atf):
    atf.export(RUMP_SERVER=SOCK)
    atf.check(f"-s exit:0 rump_server -lrumpnet -lrumpnet_net -lrumpnet_netinet {SOCK}")
    p = atf.spawn(f"{sys.executable} -c '{CLIENT}'")
    assert p.stdout is not None
    line = p.stdout.readline()
    assert line.strip() == "ready", line + (p.stdout.read() if p.poll() is not None else "")

    res = atf.check("-s exit:0 -o 'match:127.0.0.1.7777 +\\*\\.\\* +LISTEN' -o 'match:127.0.0.1.7778' "
                    "-o 'match:127.0.0.1.7779 +127.0.0.1.7777 +ESTABLISHED' rump.netstat -a -n")
    assert res.stdout.count("ESTABLISHED") == 2, res.stdout

    os.kill(p.pid, signal.SIGKILL)
    p.wait(5)
    deadline = time.monotonic() + 5
    while True:
        res = atf.run("rump.netstat -a -n")
        if res.status == 0 and not any(f".{port}" in res.stdout for port in (7777, 7778, 7779)):
            break
        assert time.monotonic() < deadline, "sockets of the killed client remain:\n" + res.stdout
        time.sleep(0.1)
    atf.check("-s exit:0 -o not-match:7777 -o not-match:7778 -o not-match:7779 rump.netstat -a -n")
    # and the server's kernel has no process left holding files
    from rumpnet.rumpclient import RumpClient

    with RumpClient(atf._abs_url(SOCK)) as c:
        others = [(pid, comm, fds) for pid, comm, fds in c.procs() if pid != c.pid and fds]
    assert others == [], others
