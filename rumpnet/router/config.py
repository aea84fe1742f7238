"""The router's configuration file (TOML): checked whole, then applied to a kernel.

::

    hostname = "router"          # the kernel's hostname
    forwarding = true            # net.inet.ip.forwarding and net.inet6.ip6.forwarding
                                 # (true or false; default true)

    [[interface]]                # one table per interface
    name = "virt0"               # a cloner's name and a unit: virtN (host tap), shmifN, wireN
    link = "tun0"                # its linkstr: the host tap, the bus file, the wire's segment
    address = "10.0.1.254/24"    # address/prefix length
    mtu = 1500                   # optional
    aliases = ["10.0.1.253/24"]  # optional
    inet6 = ["fc00:1::1/64"]     # optional: IPv6 addresses/prefix lengths (DAD is awaited)

    [interface.rtadv]            # optional: router advertisements on this interface (rtadvd),
    maxinterval = 30             # rtadvd.conf(5)'s capabilities: maxinterval, mininterval,
    mtu = 1500                   # rltime, mtu, chlim, raflags ("mo"), rtime, retrans,
                                 # pinfoflags, vltime, pltime, addr, prefixlen, noifprefix;
                                 # the prefixes are the interface's global ones unless addr

    [[route]]
    destination = "10.9.0.0/16"  # "default", a network a.b.c.d/n or a host, or IPv6 ones
                                 # (a default route's family is its gateway's)
    gateway = "10.0.2.1"         # required, except for reject or blackhole routes
    reject = false               # optional: -reject
    blackhole = false            # optional: -blackhole

    [[proxy_arp]]
    address = "10.0.1.77"        # published with the MAC of the interface on its subnet,
    mac = "b2:a0:00:00:00:77"    # or this one

    [sysctl]
    "net.inet.ip.mtudisc" = 1

Every error names the field (``interface[0].name``, ``route[1].gateway``) and what it takes
(``forwarding: must be true or false, not 'no'``); a misspelt key names the nearest valid
one (``hostnme: unknown field (did you mean 'hostname'?)``). Nothing is applied unless the
whole file is valid.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from rumpnet.usage import did_you_mean, one_of

TOP: dict[str, type] = {"hostname": str, "forwarding": bool, "interface": list, "route": list, "proxy_arp": list, "sysctl": dict}
INTERFACE: dict[str, type] = {"name": str, "link": str, "address": str, "mtu": int, "aliases": list,
                              "inet6": list, "rtadv": dict}
# rtadvd.conf(5)'s capabilities an [interface.rtadv] table takes (commands/rtadvd.py)
RTADV: dict[str, type] = {"maxinterval": int, "mininterval": int, "rltime": int, "mtu": int, "chlim": int,
                          "raflags": str, "rtime": int, "retrans": int, "pinfoflags": int, "vltime": int,
                          "pltime": int, "addr": str, "prefixlen": int, "noifprefix": bool}
ROUTE: dict[str, type] = {"destination": str, "gateway": str, "reject": bool, "blackhole": bool}
PROXY_ARP: dict[str, type] = {"address": str, "mac": str}
_REQUIRED = {"interface": ("name", "address"), "route": ("destination",), "proxy_arp": ("address",)}
_TABLES: dict[str, dict[str, type]] = {"interface": INTERFACE, "route": ROUTE, "proxy_arp": PROXY_ARP}
_MAC = re.compile(r"^[0-9a-fA-F]{1,2}(:[0-9a-fA-F]{1,2}){5}$")
# TOML's names for what a field takes, for the messages
_KIND = {str: "a string", bool: "true or false", int: "an integer", list: "an array", dict: "a table"}


class ConfigError(ValueError):
    """A bad router file; the message starts with the field's name."""


def _typed(table: dict[str, Any], schema: dict[str, type], where: str) -> None:
    for key, value in table.items():
        field = f"{where}.{key}" if where else key
        kind = schema.get(key)
        if kind is None:
            raise ConfigError(f"{field}: unknown field{did_you_mean(key, schema)} (fields: {one_of(schema)})")
        # bool is an int in Python, and neither a string "no" nor 1 is a boolean in TOML
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ConfigError(f"{field}: must be {_KIND[kind]}, not {value!r}")


def _network(text: str, field: str, host_ok: bool = True) -> None:
    try:
        if "/" in text:
            ipaddress.ip_network(text, strict=False)
        elif host_ok and text != "default":
            ipaddress.ip_address(text)
    except ValueError as e:
        raise ConfigError(f"{field}: {text!r} is not an IPv4 or IPv6 address or network ({e})") from None


def _address(text: str, field: str, prefix: bool, version: int | None = 4) -> None:
    """An address (``prefix``: with its prefix length) of IPv4, IPv6 (``version``) or
    either (None)."""
    family = {4: "IPv4", 6: "IPv6", None: "IPv4 or IPv6"}[version]
    if prefix and "/" not in text:
        raise ConfigError(f"{field}: {text!r} needs a prefix length (such as {text}/{64 if version == 6 else 24})")
    try:
        a = ipaddress.ip_interface(text) if prefix else ipaddress.ip_address(text)
    except ValueError as e:
        raise ConfigError(f"{field}: {text!r} is not an {family} {'address/prefix' if prefix else 'address'} ({e})") from None
    if version is not None and a.version != version:
        raise ConfigError(f"{field}: {text!r} is not an {family} {'address/prefix' if prefix else 'address'}")


def _rtadv(ifc: dict[str, Any], where: str) -> None:
    """``[interface.rtadv]``: known capabilities of the right types, in rtadvd's ranges."""
    from rumpnet.commands.rtadvd import check_caps

    caps = ifc["rtadv"]
    _typed(caps, RTADV, f"{where}.rtadv")
    if "addr" in caps:
        _address(caps["addr"], f"{where}.rtadv.addr", prefix=False, version=6)
    try:
        check_caps(ifc["name"], caps, ifc.get("mtu", 65535))
    except OSError as e:
        raise ConfigError(f"{where}.rtadv: {str(e.strerror).removeprefix('rtadvd: ')}") from None


def _interface(ifc: dict[str, Any], where: str, cloners: list[str]) -> None:
    name = ifc["name"]
    m = re.fullmatch(r"([a-z]+)(\d+)", name)
    if m is None or m.group(1) not in cloners:
        kinds = ", ".join(f"{c}N" for c in cloners)
        raise ConfigError(f"{where}.name: {name!r} is not an interface this router can create ({kinds})")
    _address(ifc["address"], f"{where}.address", prefix=True)
    for i, alias in enumerate(ifc.get("aliases", [])):
        if not isinstance(alias, str):
            raise ConfigError(f"{where}.aliases[{i}]: must be a string, not {alias!r}")
        _address(alias, f"{where}.aliases[{i}]", prefix=True)
    if "mtu" in ifc and not 68 <= ifc["mtu"] <= 65535:
        raise ConfigError(f"{where}.mtu: {ifc['mtu']} is not in 68..65535")
    for i, addr in enumerate(ifc.get("inet6", [])):
        if not isinstance(addr, str):
            raise ConfigError(f"{where}.inet6[{i}]: must be a string, not {addr!r}")
        _address(addr, f"{where}.inet6[{i}]", prefix=True, version=6)
    if "rtadv" in ifc:
        _rtadv(ifc, where)


def _route(rt: dict[str, Any], where: str) -> None:
    _network(rt["destination"], f"{where}.destination")
    if "gateway" in rt:
        _address(rt["gateway"], f"{where}.gateway", prefix=False, version=6 if _is_inet6_route(rt) else 4)
    elif not (rt.get("reject") or rt.get("blackhole")):
        raise ConfigError(f"{where}.gateway: missing (a route needs a gateway; "
                          "reject and blackhole routes may leave it out)")


def _is_inet6_route(rt: dict[str, Any]) -> bool:
    """An IPv6 destination, or ``default`` through an IPv6 gateway."""
    return ":" in rt["destination"] or (rt["destination"] == "default" and ":" in rt.get("gateway", ""))


def validate(cfg: dict[str, Any], cloners: list[str]) -> None:
    """Check a parsed router file; ``cloners`` are the interface kinds the kernel has."""
    _typed(cfg, TOP, "")
    if not cfg.get("interface"):
        raise ConfigError("interface: at least one [[interface]] table is required")
    names: set[str] = set()
    for section, schema in _TABLES.items():
        for i, table in enumerate(cfg.get(section, [])):
            where = f"{section}[{i}]"
            if not isinstance(table, dict):
                raise ConfigError(f"{where}: must be a table ([[{section}]]), not {table!r}")
            _typed(table, schema, where)
            for key in _REQUIRED[section]:
                if key not in table:
                    raise ConfigError(f"{where}.{key}: missing")
            if section == "interface":
                _interface(table, where, cloners)
                if table["name"] in names:
                    raise ConfigError(f"{where}.name: {table['name']!r} is configured twice")
                names.add(table["name"])
            elif section == "route":
                _route(table, where)
            else:
                _address(table["address"], f"{where}.address", prefix=False)
                if "mac" in table and not _MAC.match(table["mac"]):
                    raise ConfigError(f"{where}.mac: {table['mac']!r} is not a MAC address (b2:a0:00:00:00:77)")
    for key, value in cfg.get("sysctl", {}).items():
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ConfigError(f"sysctl.{key}: must be an integer or a string, not {value!r}")


def apply_config(k: Any, cfg: dict[str, Any]) -> None:
    """Configure kernel ``k`` from a router file (validated first: nothing is applied
    unless the whole file is valid)."""
    validate(cfg, [c for c in k.ifnet.cloners if c != "lo"])
    for ifc in cfg["interface"]:
        name = ifc["name"]
        k.ifconfig(name, "create")
        if "link" in ifc:
            k.ifconfig(name, "linkstr", ifc["link"])
        if "mtu" in ifc:
            k.ifconfig(name, "mtu", str(ifc["mtu"]))
        k.ifconfig(name, "inet", ifc["address"])
        for alias in ifc.get("aliases", []):
            k.ifconfig(name, "inet", alias, "alias")
        for addr in ifc.get("inet6", []):
            k.ifconfig(name, "inet6", addr, "alias")
        k.ifconfig(name, "up")
    forwarding = 1 if cfg.get("forwarding", True) else 0
    k.sysctl("-w", f"net.inet.ip.forwarding={forwarding}")
    if k.inet6 is not None:
        k.sysctl("-w", f"net.inet6.ip6.forwarding={forwarding}")
    if any("inet6" in ifc or "rtadv" in ifc for ifc in cfg["interface"]):
        k.ifconfig("-w", "10")    # IPv6 addresses through DAD before routes use them
    for name, value in cfg.get("sysctl", {}).items():
        k.sysctl("-w", f"{name}={value}")
    for rt in cfg.get("route", []):
        args = ["add"]
        if rt.get("reject"):
            args.append("-reject")
        if rt.get("blackhole"):
            args.append("-blackhole")
        # route(8)'s convention for reject/blackhole routes: the loopback address as gateway
        if _is_inet6_route(rt):
            args += ["-inet6", rt["destination"], rt.get("gateway", "::1")]
        else:
            args += [rt["destination"], rt.get("gateway", "127.0.0.1")]
        k.route(*args)
    for pa in cfg.get("proxy_arp", []):
        k.arp("-s", pa["address"], pa.get("mac") or _facing_mac(k, pa["address"]), "pub")
    _start_rtadv(k, cfg)


def _start_rtadv(k: Any, cfg: dict[str, Any]) -> None:
    """rtadvd on the interfaces with an ``[interface.rtadv]`` table (the prefixes
    advertised are the interface's global ones unless the table names ``addr``)."""
    rtadv = {ifc["name"]: ifc["rtadv"] for ifc in cfg["interface"] if "rtadv" in ifc}
    if not rtadv:
        return
    if k.inet6 is None:
        raise ConfigError("interface.rtadv: this kernel has no IPv6 (netinet6)")
    from rumpnet.commands import on_cpu
    from rumpnet.commands.rtadvd import start

    proc = k.curproc
    on_cpu(k, lambda: start(k, k.inet6, proc, rtadv, list(rtadv)))


def _facing_mac(k: Any, address: str) -> str:
    """The MAC of the interface on ``address``'s subnet (to publish it)."""
    from rumpnet.netconfig import format_mac
    from rumpnet.netinet.in_addr import aton

    ifa = k.inet.ifa_on_link(aton(address))
    if ifa is None:
        raise ConfigError(f"proxy_arp {address}: not on any connected network")
    return format_mac(ifa.ifp.lladdr)


EXAMPLE_CONFIG = """\
# A router between two host taps (run as root; the taps tun0/tun1 are created).
hostname = "router"
forwarding = true

[[interface]]
name = "virt0"
link = "tun0"
address = "10.0.1.254/24"
inet6 = ["fc00:1::fe/64"]

[interface.rtadv]
maxinterval = 30
mtu = 1500

[[interface]]
name = "virt1"
link = "tun1"
address = "10.0.2.254/24"
inet6 = ["fc00:2::fe/64"]
mtu = 1500

[[route]]
destination = "10.9.0.0/16"
gateway = "10.0.2.1"

[[route]]
destination = "fc00:9::/32"
gateway = "fc00:2::1"

[[proxy_arp]]
address = "10.0.1.77"
mac = "b2:a0:00:00:00:77"

[sysctl]
"net.inet.ip.mtudisc" = 1
"""
