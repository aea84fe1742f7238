#!/usr/bin/env python3
"""A virtual IP router on a rump kernel.

    router.py --demo                       three kernels on in-process wires (no root)
    router.py --config router.toml [--live] [--server unix:///tmp/r.sock]

The configuration file names interfaces (host taps ``virtN``, shmif buses ``shmifN`` or
in-process ``wireN``), their links and addresses, static routes, proxy-ARP entries and
sysctl settings. With ``--server`` the kernel also serves remote system calls, so the
``rump.*`` tools can change it while it runs. SIGINT/SIGTERM shut it down cleanly
(interfaces detached, taps closed).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

from rumpkern import Kernel, rump_init

USAGE_EXIT = 2

EXAMPLE_CONFIG = """\
# A router between two host taps (run as root; the taps tun0/tun1 are created).
hostname = "router"
forwarding = true

[[interface]]
name = "virt0"
link = "tun0"
address = "10.0.1.254/24"

[[interface]]
name = "virt1"
link = "tun1"
address = "10.0.2.254/24"
mtu = 1500

[[route]]
destination = "10.9.0.0/16"
gateway = "10.0.2.1"

[[proxy_arp]]
address = "10.0.1.77"
mac = "b2:a0:00:00:00:77"

[sysctl]
"net.inet.ip.mtudisc" = 1
"""


class ConfigError(ValueError):
    pass


def _need(table: dict[str, Any], key: str, where: str, kind: type) -> Any:
    if key not in table:
        raise ConfigError(f"{where}.{key}: missing")
    value = table[key]
    if not isinstance(value, kind):
        raise ConfigError(f"{where}.{key}: expected {kind.__name__}, got {type(value).__name__}")
    return value


def apply_config(k: Kernel, cfg: dict[str, Any]) -> None:
    """Configure kernel ``k`` from a parsed router file (validated before anything is applied)."""
    ifaces = cfg.get("interface", [])
    routes = cfg.get("route", [])
    proxies = cfg.get("proxy_arp", [])
    sysctls = cfg.get("sysctl", {})
    if not isinstance(ifaces, list) or not ifaces:
        raise ConfigError("interface: at least one [[interface]] table is required")
    for i, ifc in enumerate(ifaces):
        _need(ifc, "name", f"interface[{i}]", str)
        _need(ifc, "address", f"interface[{i}]", str)
        if "mtu" in ifc and not isinstance(ifc["mtu"], int):
            raise ConfigError(f"interface[{i}].mtu: expected int")
    for i, rt in enumerate(routes):
        _need(rt, "destination", f"route[{i}]", str)
    for i, pa in enumerate(proxies):
        _need(pa, "address", f"proxy_arp[{i}]", str)
    if not isinstance(sysctls, dict):
        raise ConfigError("sysctl: expected a table")
    for ifc in ifaces:
        name = ifc["name"]
        k.ifconfig(name, "create")
        if "link" in ifc:
            k.ifconfig(name, "linkstr", ifc["link"])
        if "mtu" in ifc:
            k.ifconfig(name, "mtu", str(ifc["mtu"]))
        k.ifconfig(name, "inet", ifc["address"])
        for alias in ifc.get("aliases", []):
            k.ifconfig(name, "inet", alias, "alias")
        k.ifconfig(name, "up")
    if cfg.get("forwarding", True):
        k.sysctl("-w", "net.inet.ip.forwarding=1")
    for name, value in sysctls.items():
        k.sysctl("-w", f"{name}={value}")
    for rt in routes:
        args = ["add"]
        if rt.get("reject"):
            args.append("-reject")
        if rt.get("blackhole"):
            args.append("-blackhole")
        args.append(rt["destination"])
        args.append(rt.get("gateway", "127.0.0.1"))
        k.route(*args)
    for pa in proxies:
        mac = pa.get("mac")
        if mac is None:
            # Publish the address with the MAC of the interface facing its subnet.
            from rumpnet.netconfig import format_mac
            from rumpnet.netinet.in_addr import aton

            ifa = k.inet.ifa_on_link(aton(pa["address"]))
            if ifa is None:
                raise ConfigError(f"proxy_arp {pa['address']}: not on any connected network")
            mac = format_mac(ifa.ifp.lladdr)
        k.arp("-s", pa["address"], mac, "pub")


def show(k: Kernel, title: str) -> None:
    print(f"=== {title}: {k.hostname}")
    print(k.netstat("-rn").rstrip())
    print(k.arp("-an").rstrip() or "(arp cache empty)")
    print()


def demo() -> int:
    """Two hosts and a router between 10.0.1.0/24 and 10.0.2.0/24 on in-process wires."""
    h1 = rump_init(clock="virtual", seed=1, hostname="h1")
    r = rump_init(clock="virtual", seed=1, hostname="router")
    h2 = rump_init(clock="virtual", seed=1, hostname="h2")
    for k, ifname, seg, addr in ((h1, "wire0", "demo-net1", "10.0.1.1/24"),
                                 (r, "wire0", "demo-net1", "10.0.1.254/24"),
                                 (r, "wire1", "demo-net2", "10.0.2.254/24"),
                                 (h2, "wire0", "demo-net2", "10.0.2.1/24")):
        k.ifconfig(ifname, "create")
        k.ifconfig(ifname, "linkstr", seg)
        k.ifconfig(ifname, "inet", addr)
        k.ifconfig(ifname, "up")
    # Give each wire a little latency (netem on the router's side), so round trips show.
    r.tc("qdisc", "add", "dev", "wire0", "root", "netem", "delay", "2ms", "200us")
    r.tc("qdisc", "add", "dev", "wire1", "root", "netem", "delay", "3ms")
    h1.route("add", "default", "10.0.1.254")
    h2.route("add", "default", "10.0.2.254")
    print(r.sysctl("-w", "net.inet.ip.forwarding=1").rstrip())
    print()
    print(h1.ping("-c", "3", "10.0.2.1").rstrip())
    print()
    print(h2.ping("-c", "3", "10.0.1.1").rstrip())
    print()
    for k in (h1, r, h2):
        show(k, "routes and ARP cache")
    print(r.ifconfig("-a").rstrip())
    print()
    print(r.tc("-s", "qdisc", "show", "dev", "wire0").rstrip())
    return 0


def live_view(k: Kernel, stop: threading.Event) -> None:
    from rich.console import Group
    from rich.live import Live
    from rich.table import Table

    def render() -> Group:
        ift = Table(title=f"{k.hostname}: interfaces")
        for col in ("name", "flags", "mtu", "address", "ipkts", "opkts", "ierrs", "oerrs"):
            ift.add_column(col)
        for ifp in k.ifnet.all():
            st = ifp.stats
            addr = ", ".join(f"{a.addr >> 24}.{(a.addr >> 16) & 255}.{(a.addr >> 8) & 255}.{a.addr & 255}/{a.plen}" for a in ifp.addrs)
            ift.add_row(ifp.name, hex(ifp.flags), str(ifp.mtu), addr, str(st.ipackets), str(st.opackets),
                        str(st.ierrors), str(st.oerrors))
        rtt = Table(title="routes")
        from rumpnet.netconfig import describe_route

        for col in ("destination", "gateway", "flags", "interface", "use"):
            rtt.add_column(col)
        for rt in k.config.routes():
            d = describe_route(rt)
            rtt.add_row(d["destination"], d["gateway"], d["flags"], str(d["interface"]), str(d["use"]))
        return Group(ift, rtt)

    with Live(render(), refresh_per_second=2) as live:
        while not stop.wait(0.5):
            live.update(render())


def run(config_path: str, live: bool, server: str | None, duration: float | None) -> int:
    try:
        cfg = tomllib.loads(Path(config_path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        print(f"router: {config_path}: {e}", file=sys.stderr)
        return 1
    k = rump_init(hostname=str(cfg.get("hostname", "router")))
    try:
        apply_config(k, cfg)
    except (ConfigError, OSError) as e:
        print(f"router: {config_path}: {e}", file=sys.stderr)
        k.halt()
        return 1
    k.serve_background()
    srv = None
    if server:
        from rumpnet.server.rump_server import serve_kernel

        srv = serve_kernel(k, server)
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    print(f"router {k.hostname} up; {'Ctrl-C' if sys.stdin.isatty() else 'SIGTERM'} to stop", file=sys.stderr)
    deadline = time.monotonic() + duration if duration else None
    view: threading.Thread | None = None
    if live:
        view = threading.Thread(target=live_view, args=(k, stop), daemon=True)
        view.start()
    while not stop.wait(0.2):
        if deadline is not None and time.monotonic() >= deadline:
            break
        if srv is not None and srv.stop_event.is_set():
            break  # rump.halt from a client
    stop.set()
    if view is not None:
        view.join(5)  # the live view draws its last frame (all it draws without a tty)
    if srv is not None:
        srv.close()
    k.stop_background()
    k.halt()
    print(f"router {k.hostname} stopped", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="router", description="A virtual IP router on a rump kernel.")
    p.add_argument("--demo", action="store_true", help="run the three-kernel demo on in-process wires and exit")
    p.add_argument("--config", metavar="FILE", help="router configuration (TOML)")
    p.add_argument("--live", action="store_true", help="show a live view of interfaces, counters and routes")
    p.add_argument("--server", metavar="URL", help="also serve remote system calls at URL (unix:// or tcp://)")
    p.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this many seconds")
    p.add_argument("--example-config", action="store_true", help="print an example configuration and exit")
    args = p.parse_args(argv)
    if args.example_config:
        print(EXAMPLE_CONFIG, end="")
        return 0
    if args.demo:
        return demo()
    if not args.config:
        p.print_usage(sys.stderr)
        print("router: one of --demo or --config is required", file=sys.stderr)
        return USAGE_EXIT
    return run(args.config, args.live, args.server, args.duration)


if __name__ == "__main__":
    sys.exit(main())
