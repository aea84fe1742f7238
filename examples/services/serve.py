"""Serve echo, discard, chargen, HTTP and a checksum sink from a rump kernel on a host tap.

    python examples/services/serve.py --tap tun0 --address 10.99.0.2/24 [--gateway 10.99.0.1]
                                      [--address6 fc00:99::2/64]

boots a kernel (real clock) whose ``virt0`` is bound to host tap ``--tap`` (created if it
does not exist) and serves, on the kernel's own TCP/IP:

* echo (TCP and UDP 7), discard (TCP 9), chargen (TCP 19; send ``N\\n`` first to get
  exactly N bytes, otherwise it streams until you close), HTTP (TCP 80: ``GET /``,
  ``GET /bytes/N``; HTTP/1.1 keep-alive) and sink (TCP 5001: send data, half-close, read
  ``<nbytes> <sha256>``). See ``services.py`` for the details.

When it is ready it prints one JSON line (``{"ready": true, "tap": ..., ...}``) on stdout;
it runs until SIGINT or SIGTERM. The host side of the tap is yours to configure (address,
or move it into a network namespace). ``--host-stack`` serves the same services on the
host's own sockets instead (for comparisons; no tap involved).

``--address6 ADDR/PLEN`` also gives ``virt0`` an IPv6 address (ready once DAD is done)
and serves every service over IPv6 too (on ``::``, beside IPv4's on ``0.0.0.0``); with
``--host-stack`` (any value: the host's addresses are the namespace's) it serves on ``::``
as well.

``--sysctl NAME=VALUE`` (repeatable) sets the kernel's sysctls before it serves;
``--congestion NAME`` picks Linux's congestion control for the ``--host-stack`` listeners.

virtif modes: plain frames by default (``linkstr TAP,nooffload``); ``--offload MODE``
(``tso``, ``csum`` or ``none``) asks the host for that offload mode
(``linkstr TAP,offload=MODE``; the driver steps down if the host refuses).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket as pysocket
import sys
import threading
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from services import DEFAULT_PORTS, start_host_services, start_services  # noqa: E402

import rumpkern  # noqa: E402,F401  (before rumpnet.virtif: importing that first can be circular)


def boot(tap: str, address: str, gateway: str | None = None, mtu: int | None = None,
         offload: str | None = None, seed: int | None = None) -> tuple[Any, Any]:
    """Boot a real-clock kernel with ``virt0`` on ``tap``; returns (kernel, driver)."""
    from rumpkern import rump_init
    from rumpnet.net_kernel import net_kernel

    k = rump_init(clock="real", seed=seed)
    k.config.if_create("virt0")
    k.config.if_set_linkstr("virt0", f"{tap},offload={offload}" if offload else f"{tap},nooffload")
    drv = net_kernel(k).ifnet.lookup("virt0").driver
    if mtu:
        k.config.if_set_mtu("virt0", mtu)
    k.config.addr_add("virt0", address)
    k.config.if_up("virt0")
    if gateway:
        k.config.route_add("default", gateway)
    return k, drv


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tap", help="host tap to bind virt0 to (created if absent)")
    ap.add_argument("--address", help="the kernel's address on virt0, ADDR/LEN")
    ap.add_argument("--gateway", help="default route via this address")
    ap.add_argument("--address6", help="also an IPv6 address on virt0, ADDR/PLEN, and the services over IPv6")
    ap.add_argument("--mtu", type=int, help="virt0's MTU")
    ap.add_argument("--offload", metavar="MODE", choices=("tso", "csum", "none"),
                    help="virtif offload mode to ask the host for (default: plain frames)")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--sysctl", metavar="NAME=VALUE", action="append", default=[],
                    help="set a sysctl of the kernel before serving (repeatable), "
                         "e.g. net.inet.tcp.congctl=cubic")
    ap.add_argument("--port-offset", type=int, default=0, help="add this to every port")
    ap.add_argument("--host-stack", action="store_true", help="serve on the host's sockets instead")
    ap.add_argument("--congestion", metavar="NAME",
                    help="with --host-stack: Linux congestion control of the listening sockets "
                         "(TCP_CONGESTION; accepted connections inherit it)")
    ap.add_argument("--stats", action="store_true", help="print netstat -s to stderr on exit")
    args = ap.parse_args(argv)

    ports = {name: p + args.port_offset for name, p in DEFAULT_PORTS.items()}
    done = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    if args.host_stack:
        async def host_main() -> None:
            servers = await start_host_services(ports)
            if args.address6:
                servers += await start_host_services(ports, "::")
            if args.congestion:
                for srv in servers:
                    for sock in getattr(srv, "sockets", None) or ():
                        if sock.type == pysocket.SOCK_STREAM:
                            sock.setsockopt(pysocket.IPPROTO_TCP, pysocket.TCP_CONGESTION,
                                            args.congestion.encode())
            print(json.dumps({"ready": True, "stack": "host", "ports": ports}), flush=True)
            while not done.is_set():
                await asyncio.sleep(0.1)
            for s in servers:
                s.close()

        try:
            import uvloop  # type: ignore[import-not-found, unused-ignore]  # the fast extra

            uvloop.run(host_main())
        except ImportError:
            asyncio.run(host_main())
        return 0

    if not args.tap or not args.address:
        ap.error("--tap and --address are required")
    k, drv = boot(args.tap, args.address, args.gateway, args.mtu, args.offload, args.seed)
    for assignment in args.sysctl:
        if "=" not in assignment:
            ap.error(f"--sysctl {assignment!r}: want NAME=VALUE")
        try:
            k.sysctl("-w", assignment)
        except OSError as e:
            ap.error(f"--sysctl {assignment}: {e.strerror}")
    if args.address6:
        k.ifconfig("virt0", "inet6", args.address6)
        k.ifconfig("-w", "10")          # DAD done: the address answers
    k.serve_background()
    handles = [start_services(k, ports)] + ([start_services(k, ports, "::")] if args.address6 else [])
    ifp = k.ifnet.lookup("virt0")
    print(json.dumps({"ready": True, "stack": "rumpnet", "tap": getattr(drv, "tapname", args.tap),
                      "address": args.address, "address6": args.address6, "mtu": ifp.mtu, "ports": ports,
                      "vnet_hdr": bool(getattr(drv, "vnet_hdr", False)),
                      "offload_mode": getattr(drv, "offload_mode", None)}), flush=True)
    try:
        while not done.wait(0.5):
            pass
    finally:
        for handle in handles:
            handle.close()
        if args.stats:
            print(k.netstat("-s"), file=sys.stderr, flush=True)
        k.halt()
        k.stop_background()
    return 0


if __name__ == "__main__":
    sys.exit(main())
