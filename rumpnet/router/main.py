"""``rump_router``: the virtual IP router as a program.

    rump_router --demo [--inet6]             three kernels on in-process wires (no root)
    rump_router --config router.toml [--live] [--server unix:///tmp/r.sock] [--duration S]
    rump_router --example-config             a sample configuration file

With ``--server`` the kernel also serves remote system calls, so the ``rump.*`` tools can
change it while it runs. SIGINT/SIGTERM shut it down cleanly (interfaces detached, taps
closed). Exit status: 0 on a clean stop, 1 when the configuration cannot be applied, 2 for
bad usage.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rumpnet.router.config import EXAMPLE_CONFIG, ConfigError, apply_config
from rumpnet.usage import EXIT_USAGE, version_text

PROG = "rump_router"


def _heading(text: str) -> None:
    print(f"=== {text}")


@dataclass(frozen=True)
class DemoFamily:
    """What the demo does over one address family: the same topology and steps, with
    that family's addresses and tools."""

    addrs: tuple[str, str, str, str]    # h1, the router on net1 and on net2, h2 (ADDR/PLEN)
    ifconfig_af: str                    # ifconfig's address family keyword
    route_af: tuple[str, ...]           # route add's family option
    forwarding: str                     # the sysctl that makes the router forward
    ping: str                           # ping or ping6
    netstat_af: tuple[str, ...]         # netstat -rn's family option
    neighbours: str                     # arp or ndp (-an either way)


DEMO_FAMILIES = {
    "inet": DemoFamily(("10.0.1.1/24", "10.0.1.254/24", "10.0.2.254/24", "10.0.2.1/24"), "inet", (),
                       "net.inet.ip.forwarding", "ping", (), "arp"),
    # issue 15's topology: fc00:0:0:1::/64 - router - fc00:0:0:2::/64
    "inet6": DemoFamily(("fc00:0:0:1::1/64", "fc00:0:0:1::fe/64", "fc00:0:0:2::fe/64", "fc00:0:0:2::1/64"),
                        "inet6", ("-inet6",), "net.inet6.ip6.forwarding", "ping6", ("-f", "inet6"), "ndp"),
}


def _show(k: Any, fam: DemoFamily) -> None:
    _heading(f"{k.hostname}: netstat -rn{''.join(' ' + a for a in fam.netstat_af)}")
    print(k.netstat("-rn", *fam.netstat_af).rstrip())
    _heading(f"{k.hostname}: {fam.neighbours} -an")
    print(getattr(k, fam.neighbours)("-an").rstrip() or f"(no {fam.neighbours.upper()} entries)")
    print()


def _text(out: object) -> str:
    """A command's output (an awaitable only in a coroutine on the loop, never here)."""
    assert isinstance(out, str)
    return out.rstrip()


def demo(family: str = "inet") -> int:
    """Two hosts and a router between two subnets on in-process wires: 10.0.1.0/24 and
    10.0.2.0/24, or with ``family="inet6"`` fc00:0:0:1::/64 and fc00:0:0:2::/64."""
    from rumpkern import rump_init

    fam = DEMO_FAMILIES[family]
    h1 = rump_init(clock="virtual", seed=1, hostname="h1")
    r = rump_init(clock="virtual", seed=1, hostname="router")
    h2 = rump_init(clock="virtual", seed=1, hostname="h2")
    a1, gw1, gw2, a2 = (a.split("/")[0] for a in fam.addrs)
    for k, ifname, seg, addr in zip((h1, r, r, h2), ("wire0", "wire0", "wire1", "wire0"),
                                    ("demo-net1", "demo-net1", "demo-net2", "demo-net2"), fam.addrs, strict=True):
        k.ifconfig(ifname, "create")
        k.ifconfig(ifname, "linkstr", seg)
        k.ifconfig(ifname, fam.ifconfig_af, addr)
        k.ifconfig(ifname, "up")
    for k in (h1, r, h2):
        k.ifconfig("-w", "10")       # IPv6: until duplicate address detection is done
    # Give each wire a little latency (netem on the router's side), so round trips show.
    r.tc("qdisc", "add", "dev", "wire0", "root", "netem", "delay", "2ms", "200us")
    r.tc("qdisc", "add", "dev", "wire1", "root", "netem", "delay", "3ms")
    h1.route("add", *fam.route_af, "default", gw1)
    h2.route("add", *fam.route_af, "default", gw2)
    _heading(f"router: sysctl -w {fam.forwarding}=1")
    print(r.sysctl("-w", f"{fam.forwarding}=1").rstrip())
    print()
    for k, src, dst in ((h1, a1, a2), (h2, a2, a1)):
        _heading(f"{k.hostname} ({src}): {fam.ping} -c 3 {dst}, across the router")
        print(_text(getattr(k, fam.ping)("-c", "3", dst)))
        print()
    for k in (h1, r, h2):
        _show(k, fam)
    _heading("router: ifconfig -a")
    print(r.ifconfig("-a").rstrip())
    print()
    _heading("router: tc -s qdisc show dev wire0")
    print(r.tc("-s", "qdisc", "show", "dev", "wire0").rstrip())
    return 0


def live_view(k: Any, stop: threading.Event) -> None:
    """Interfaces (IPv4 and IPv6 addresses), counters, routes and IPv6 neighbours, redrawn
    twice a second (``rich``), with the flags and gateways as ifconfig and netstat -rn
    print them."""
    from rich.console import Group
    from rich.live import Live
    from rich.table import Table

    from rumpnet.commands.ifconfig import flags_text
    from rumpnet.netconfig import describe_route, format_mac
    from rumpnet.netconfig6 import describe_route6
    from rumpnet.netinet.in_addr import ntoa
    from rumpnet.netinet6 import in6, scope6
    from rumpnet.netinet6.nd6 import ND6_STATE_LETTER

    def render() -> Group:
        ift = Table(title=f"{k.hostname}: interfaces")
        for col in ("name", "flags", "mtu", "address", "ipkts", "opkts", "ierrs", "oerrs"):
            ift.add_column(col)
        for ifp in k.ifnet.all():
            st = ifp.stats
            addr = ", ".join([f"{ntoa(a.addr)}/{a.plen}" for a in ifp.addrs]
                             + [f"{in6.ntop(a.addr)}/{a.plen}" for a in (k.inet6.addresses(ifp) if k.inet6 else [])])
            ift.add_row(ifp.name, flags_text(ifp.flags).removeprefix("flags="), str(ifp.mtu), addr, str(st.ipackets), str(st.opackets),
                        str(st.ierrors), str(st.oerrors))
        rtt = Table(title="routes (netstat -rn)")
        for col in ("destination", "gateway", "flags", "interface", "use"):
            rtt.add_column(col)
        described = [describe_route(rt) for rt in k.config.routes()]
        if k.inet6 is not None:
            described += [describe_route6(rt) for rt in k.config.routes6()]   # netstat's Internet6
        for d in described:
            rtt.add_row(d["destination"], d["gateway"], d["flags"], str(d["interface"]), str(d["use"]))
        parts = [ift, rtt]
        if k.inet6 is not None:
            ndt = Table(title="neighbours (ndp -an)")
            for col in ("neighbour", "link-layer address", "interface", "state", "router"):
                ndt.add_column(col)
            for e in k.config.ndp_entries():
                ndt.add_row(scope6.format_scoped(e.addr, e.ifp.index, k.inet6.ifname),
                            format_mac(e.lladdr) if e.lladdr else "(incomplete)", e.ifp.name,
                            ND6_STATE_LETTER.get(e.state, "?"), "R" if e.isrouter else "")
            parts.append(ndt)
        return Group(*parts)

    with Live(render(), refresh_per_second=2) as live:
        while not stop.wait(0.5):
            live.update(render())


def _load(path: str) -> dict[str, Any]:
    try:
        return tomllib.loads(Path(path).read_text())
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror or e}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"not TOML: {e}") from None


def run(config_path: str, live: bool, server: str | None, duration: float | None) -> int:
    """Boot, configure, serve until stopped (a signal, ``rump.halt``, the duration)."""
    from rumpkern import rump_init

    try:
        cfg = _load(config_path)
    except ConfigError as e:
        print(f"{PROG}: {config_path}: {e}", file=sys.stderr)
        return 1
    hostname = cfg.get("hostname", "router")
    k = rump_init(hostname=hostname if isinstance(hostname, str) else "router")
    try:
        apply_config(k, cfg)
    except (ConfigError, OSError) as e:
        print(f"{PROG}: {config_path}: {e.strerror if isinstance(e, OSError) and e.strerror else e}", file=sys.stderr)
        k.halt()
        return 1
    k.serve_background()
    srv = None
    if server:
        from rumpnet.server.rump_server import serve_kernel

        try:
            srv = serve_kernel(k, server)
        except OSError as e:
            print(f"{PROG}: {e.strerror or e}", file=sys.stderr)
            k.stop_background()
            k.halt()
            return 1
    return _serve(k, srv, live, duration)


def _serve(k: Any, srv: Any, live: bool, duration: float | None) -> int:
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


def _url(text: str) -> str:
    from rumpnet.server.protocol import parse_url

    try:
        parse_url(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, not {text}")
    return value


def parser() -> argparse.ArgumentParser:
    """The command line of rump_router."""
    p = argparse.ArgumentParser(prog=PROG, description="A virtual IP router on a rump kernel.")
    p.add_argument("--demo", action="store_true", help="run the three-kernel demo on in-process wires and exit")
    p.add_argument("--inet6", action="store_true",
                   help="with --demo: run it over IPv6 (fc00:0:0:1::/64 - router - fc00:0:0:2::/64, ping6, ndp)")
    p.add_argument("--config", metavar="FILE", help="router configuration (TOML; see --example-config)")
    p.add_argument("--live", action="store_true", help="show a live view of interfaces, counters and routes")
    p.add_argument("--server", metavar="URL", type=_url,
                   help="also serve remote system calls at URL (unix://path or tcp://127.0.0.1:port/)")
    p.add_argument("--duration", type=_seconds, metavar="SECONDS", help="stop after this many seconds")
    p.add_argument("--example-config", action="store_true", help="print an example configuration and exit")
    p.add_argument("--version", action="version", version=version_text(PROG).rstrip())
    return p


def main(argv: list[str] | None = None) -> int:
    """``rump_router``: see the module docstring; returns the exit status."""
    p = parser()
    args = p.parse_args(argv)
    if args.example_config:
        print(EXAMPLE_CONFIG, end="")
        return 0
    if args.demo:
        if args.config or args.live or args.server:
            p.error("--demo runs on its own (no --config, --live or --server)")
        return demo("inet6" if args.inet6 else "inet")
    if args.inet6:
        p.error("--inet6 goes with --demo (a configuration file says its own families)")
    if not args.config:
        p.print_usage(sys.stderr)
        print(f"{PROG}: one of --demo or --config is required", file=sys.stderr)
        return EXIT_USAGE
    return run(args.config, args.live, args.server, args.duration)


if __name__ == "__main__":
    sys.exit(main())
