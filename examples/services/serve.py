"""Serve echo, discard, chargen, HTTP and a checksum sink from a rump kernel on a host tap.

    python examples/services/serve.py --tap tun0 --address 10.99.0.2/24 [--gateway 10.99.0.1]

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

virtif modes: ``--vnet-hdr`` opens the tap with ``IFF_VNET_HDR``; ``--offload MODE``
asks the driver for an offload mode (TSO/checksum) when this build's ``VirtifDriver``
has one (``--list-modes`` shows what is available).
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import signal
import sys
import threading
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from services import DEFAULT_PORTS, start_host_services, start_services  # noqa: E402

import rumpkern  # noqa: E402,F401  (before rumpnet.virtif: importing that first can be circular)


def virtif_modes() -> dict[str, Any]:
    """What this build's VirtifDriver offers: its constructor keywords and offload modes."""
    from rumpnet.virtif.if_virt import VirtifDriver

    params = inspect.signature(VirtifDriver.__init__).parameters
    modes: list[str] = []
    for name in ("OFFLOAD_MODES", "offload_modes", "MODES"):
        val = getattr(VirtifDriver, name, None) or getattr(sys.modules[VirtifDriver.__module__], name, None)
        if isinstance(val, (list, tuple, set, frozenset, dict)):
            modes = [str(m) for m in val]
            break
    return {"params": sorted(p for p in params if p != "self"), "offload_modes": modes,
            "offload_param": next((p for p in ("offload", "offload_mode", "tso") if p in params), None)}


def make_driver(tap: str, vnet_hdr: bool, offload: str | None) -> Any:
    """A VirtifDriver for ``tap``: plain, with the vnet header, or with an offload mode
    (``offload_mode`` on the driver then says what the host granted)."""
    from rumpnet.virtif.if_virt import VirtifDriver

    if offload is None:
        return VirtifDriver(tap, vnet_hdr=True) if vnet_hdr else VirtifDriver(tap)
    info = virtif_modes()
    if info["offload_param"] != "offload":
        raise SystemExit(f"this VirtifDriver has no offload mode (keywords: {info['params']})")
    drv: Any = VirtifDriver
    return drv(tap, offload=offload)


def boot(tap: str, address: str, gateway: str | None = None, mtu: int | None = None, vnet_hdr: bool = False,
         offload: str | None = None, seed: int | None = None) -> tuple[Any, Any]:
    """Boot a real-clock kernel with ``virt0`` on ``tap``; returns (kernel, driver or None)."""
    from rumpkern import rump_init

    k = rump_init(clock="real", seed=seed)
    k.config.if_create("virt0")
    drv = None
    if vnet_hdr or offload:
        drv = make_driver(tap, vnet_hdr, offload)

        assert drv is not None

        def attach() -> None:
            ifp = k.ifnet.lookup("virt0")
            ifp.attach_driver(drv)  # what if_set_linkstr does, with our driver
            ifp.linkstr = tap

        k.sched.run(attach)
    else:
        # Plain frames: virt interfaces ask the host for offloads by default.
        k.config.if_set_linkstr("virt0", f"{tap},nooffload")
        drv = k.ifnet.lookup("virt0").driver
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
    ap.add_argument("--mtu", type=int, help="virt0's MTU")
    ap.add_argument("--vnet-hdr", action="store_true", help="open the tap with IFF_VNET_HDR")
    ap.add_argument("--offload", metavar="MODE", help="virtif offload mode, if this build has one")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--port-offset", type=int, default=0, help="add this to every port")
    ap.add_argument("--host-stack", action="store_true", help="serve on the host's sockets instead")
    ap.add_argument("--stats", action="store_true", help="print netstat -s to stderr on exit")
    ap.add_argument("--list-modes", action="store_true", help="print the virtif modes available and exit")
    args = ap.parse_args(argv)

    if args.list_modes:
        print(json.dumps(virtif_modes()))
        return 0
    ports = {name: p + args.port_offset for name, p in DEFAULT_PORTS.items()}
    done = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    if args.host_stack:
        async def host_main() -> None:
            servers = await start_host_services(ports)
            print(json.dumps({"ready": True, "stack": "host", "ports": ports}), flush=True)
            while not done.is_set():
                await asyncio.sleep(0.1)
            for s in servers:
                s.close()

        try:
            import uvloop  # type: ignore[import-not-found]

            uvloop.run(host_main())
        except ImportError:
            asyncio.run(host_main())
        return 0

    if not args.tap or not args.address:
        ap.error("--tap and --address are required")
    k, drv = boot(args.tap, args.address, args.gateway, args.mtu, args.vnet_hdr, args.offload, args.seed)
    k.serve_background()
    handle = start_services(k, ports)
    ifp = k.ifnet.lookup("virt0")
    print(json.dumps({"ready": True, "stack": "rumpnet", "tap": getattr(drv, "tapname", args.tap),
                      "address": args.address, "mtu": ifp.mtu, "ports": ports,
                      "vnet_hdr": bool(getattr(drv, "vnet_hdr", False)),
                      "offload_mode": getattr(drv, "offload_mode", None)}), flush=True)
    try:
        while not done.wait(0.5):
            pass
    finally:
        handle.close()
        if args.stats:
            print(k.netstat("-s"), file=sys.stderr, flush=True)
        k.halt()
        k.stop_background()
    return 0


if __name__ == "__main__":
    sys.exit(main())
