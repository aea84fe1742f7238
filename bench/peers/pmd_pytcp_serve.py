"""The benchmark's services on pmd-pytcp 0.3.8 (run in its own venv, as root, with -O).

    python -O pmd_pytcp_serve.py TAP ADDR/LEN

Same protocols as examples/services/services.py: echo TCP+UDP 7, chargen 19 (count line
``N\\n`` first), sink 5001 (read to EOF, answer ``<n> <sha256>``), discard 9. pmd-pytcp runs
on asyncio: its socket calls are coroutines. Prints ``{"ready": true}`` when up.
"""

import asyncio
import hashlib
import json
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pattern import BLOCK, CYCLE  # noqa: E402

CHUNK = 64 * 1024


async def main() -> None:
    tap, addr = sys.argv[1], sys.argv[2]
    from pmd_net_addr import Ip4IfAddr
    from pmd_pytcp import socket, stack

    stack.init()
    from pmd_net_addr import MacAddress

    iface = stack.initialize_interface__tap(interface_name=tap, mac_address=MacAddress("02:00:00:77:77:77"))
    stack.add_interface(**iface, ip4_support=True, ip4_host=Ip4IfAddr(addr), ip4_dhcp=False,
                        ip6_support=False, ip6_host=None, ip6_gua_autoconfig=False)
    await stack.start()

    async def sendall(s, data):
        view = memoryview(data)
        while view:
            n = await s.send(bytes(view))
            view = view[n:]

    async def h_echo(s):
        while True:
            d = await s.recv()
            if not d:
                break
            await sendall(s, d)

    async def h_discard(s):
        while await s.recv():
            pass

    async def h_sink(s):
        h = hashlib.sha256()
        n = 0
        while True:
            d = await s.recv()
            if not d:
                break
            n += len(d)
            h.update(d)
        await sendall(s, f"{n} {h.hexdigest()}\n".encode())

    async def h_chargen(s):
        buf = b""
        while b"\n" not in buf:
            d = await s.recv()
            if not d:
                return
            buf += d
        count = int(buf.partition(b"\n")[0].strip())
        off = 0
        while off < count:
            take = min(CHUNK, count - off)
            st = off % len(CYCLE)
            await sendall(s, BLOCK[st:st + take])
            off += take

    async def conn(handler, s):
        try:
            await handler(s)
        except Exception as e:  # noqa: BLE001
            print("conn error", type(e).__name__, e, file=sys.stderr, flush=True)
        finally:
            try:
                s.close()
            except Exception:  # noqa: BLE001
                pass

    tasks = set()

    async def listener(port, handler):
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.bind(("0.0.0.0", port))
        ls.listen(backlog=128)
        while True:
            s, _ = await ls.accept()
            t = asyncio.ensure_future(conn(handler, s))
            tasks.add(t)
            t.add_done_callback(tasks.discard)

    async def udp_echo():
        us = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        us.bind(("0.0.0.0", 7))
        while True:
            d, a = await us.recvfrom()
            await us.sendto(d, a)

    for port, h in ((7, h_echo), (9, h_discard), (19, h_chargen), (5001, h_sink)):
        tasks.add(asyncio.ensure_future(listener(port, h)))
    tasks.add(asyncio.ensure_future(udp_echo()))
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    await asyncio.sleep(0.5)
    print(json.dumps({"ready": True, "stack": "pmd-pytcp"}), flush=True)
    await done.wait()
    os._exit(0)


if __name__ == "__main__":
    asyncio.run(main())
