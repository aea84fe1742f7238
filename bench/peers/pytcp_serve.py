"""The benchmark's services on PyTCP 2.7.6 (run in its own venv, as root, with -O).

    python -O pytcp_serve.py TAP ADDR/LEN

Same protocols as examples/services/services.py: echo TCP+UDP 7, chargen 19 (count line
``N\\n`` first), sink 5001 (read to EOF, answer ``<n> <sha256>``), discard 9. One thread per
listener and per connection (PyTCP's sockets block). Prints ``{"ready": true}`` when up.
"""

import hashlib
import json
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pattern import BLOCK, CYCLE  # noqa: E402

CHUNK = 64 * 1024


def main() -> None:
    tap, addr = sys.argv[1], sys.argv[2]
    from pytcp import TcpIpStack, config
    from pytcp.lib import socket

    stack = TcpIpStack(interface=tap, ip4_address=addr)
    config.IP6_SUPPORT = False
    config.IP6_LLA_AUTOCONFIG = False
    stack.start()

    def sendall(s, data):
        view = memoryview(data)
        while view:
            n = s.send(bytes(view))
            view = view[n:]

    def recv_line(s, buf):
        while b"\n" not in buf:
            d = s.recv()
            if not d:
                return None, buf
            buf += d
        line, _, rest = buf.partition(b"\n")
        return line, rest

    def h_echo(s):
        while True:
            d = s.recv()
            if not d:
                break
            sendall(s, d)

    def h_discard(s):
        while s.recv():
            pass

    def h_sink(s):
        h = hashlib.sha256()
        n = 0
        while True:
            d = s.recv()
            if not d:
                break
            n += len(d)
            h.update(d)
        sendall(s, f"{n} {h.hexdigest()}\n".encode())

    def h_chargen(s):
        line, _ = recv_line(s, b"")
        if line is None:
            return
        count = int(line.strip())
        off = 0
        while off < count:
            take = min(CHUNK, count - off)
            st = off % len(CYCLE)
            sendall(s, BLOCK[st:st + take])
            off += take

    def conn(handler, s):
        try:
            handler(s)
        except Exception as e:  # noqa: BLE001
            print("conn error", type(e).__name__, e, file=sys.stderr, flush=True)
        finally:
            try:
                s.close()
            except Exception:  # noqa: BLE001
                pass

    def listener(port, handler):
        ls = socket.socket(family=socket.AF_INET4, type=socket.SOCK_STREAM)
        ls.bind(("0.0.0.0", port))
        ls.listen()
        while True:
            s, _ = ls.accept()
            threading.Thread(target=conn, args=(handler, s), daemon=True).start()

    def udp_echo():
        us = socket.socket(family=socket.AF_INET4, type=socket.SOCK_DGRAM)
        us.bind(("0.0.0.0", 7))
        while True:
            try:
                d, a = us.recvfrom(None, 1.0)
            except socket.ReceiveTimeout:
                continue
            us.sendto(d, a)

    for port, h in ((7, h_echo), (9, h_discard), (19, h_chargen), (5001, h_sink)):
        threading.Thread(target=listener, args=(port, h), daemon=True).start()
    threading.Thread(target=udp_echo, daemon=True).start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: done.set())
    signal.signal(signal.SIGINT, lambda *a: done.set())
    time.sleep(0.5)
    print(json.dumps({"ready": True, "stack": "pytcp"}), flush=True)
    while not done.wait(0.5):
        pass
    os._exit(0)


if __name__ == "__main__":
    main()
