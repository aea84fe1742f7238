"""Declarative scenarios: a TOML file describing hosts, links, impairments and a schedule.

::

    seed = 42                     # optional (overridable: Network.from_toml(path, seed=7))
    clock = "virtual"             # or "real"
    schedule = "at 5s partition lan for 3s; at 8s wan loss 10%"   # or a list of statements

    [hosts.a]
    [hosts.r]
    router = true                 # forwarding on; hosts on its links route through it
    [hosts.b]
    routes = [{ dst = "10.0.9.0/24", gateway = "10.0.2.1" }]
    sysctl = { "net.inet.ip.ttl" = 32 }

    [links.lan]
    hosts = ["a", "r"]
    subnet = "10.0.1.0/24"        # default 10.0.N.0/24 (N = the link's number)
    mtu = 1500
    addresses = { a = "10.0.1.10" }   # the others are given out in order
    subnet6 = "fc00:0:0:1::/64"   # optional: dual stack (IPv6 addresses ::1, ::2, ...
    addresses6 = { a = "fc00:0:0:1::10" }   # or these; routers forward IPv6 too)
    netem = "delay 10ms 2ms"      # tc-netem(8) options, both directions ...
    loss = "1%"                   # ... and/or single parameters (tc units or SI numbers)

    [links.lan.directions."a->r"] # one direction (A->B, A->*, *->B), on top of the
    duplicate = "5%"              # link-wide fields: a->r gets delay, loss and duplicate

    [proxies.web]                 # a toxiproxy-style TCP proxy (needs netinet TCP)
    host = "a"
    listen = "10.0.1.1:8080"
    upstream = "10.0.2.2:80"
    toxics = [{ type = "latency", stream = "downstream", attributes = { latency = 100 } }]

A bad file raises :class:`ScenarioError` naming the field (``links.lan.loss: probability
150% is over 100%``) before anything is built; if building fails anyway, what was built is
torn down, so nothing is ever half-applied.
"""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path
from typing import Any

from rumpnet.faults.params import FIELDS, impairment
from rumpnet.usage import did_you_mean

_TOP = {"seed", "clock", "schedule", "hosts", "links", "proxies", "name", "description"}
_HOST = {"router", "hostname", "routes", "sysctl"}
_LINK_STRUCT = {"hosts", "subnet", "mtu", "addresses", "subnet6", "addresses6", "directions"}
_PROXY = {"host", "listen", "upstream", "enabled", "toxics"}


class ScenarioError(ValueError):
    """A scenario file is invalid; the message starts with the field's dotted name."""


def load(source: str | Path | dict[str, Any]) -> dict[str, Any]:
    """Parse and validate a scenario (a path, TOML text or an already-parsed dict)."""
    if isinstance(source, dict):
        doc = source
    else:
        text: str
        if isinstance(source, Path) or ("\n" not in source and "=" not in source):
            try:
                text = Path(source).read_text()
            except OSError as e:
                raise ScenarioError(f"file: cannot read {str(source)!r}: {e.strerror}") from None
        else:
            text = source
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ScenarioError(f"toml: {e}") from None
    validate(doc)
    return doc


def _err(field: str, msg: str) -> ScenarioError:
    return ScenarioError(f"{field}: {msg}")


def _table(doc: dict[str, Any], key: str, field: str) -> dict[str, Any]:
    v = doc.get(key, {})
    if not isinstance(v, dict):
        raise _err(field, f"must be a table, not {type(v).__name__}")
    return v


def _unknown(d: dict[str, Any], allowed: set[str], field: str) -> None:
    for k in d:
        if k not in allowed:
            raise _err(f"{field}.{k}" if field else k, f"unknown field{did_you_mean(k, allowed)}")


def validate(doc: dict[str, Any]) -> None:
    """Check a parsed scenario; ScenarioError naming the first bad field."""
    _unknown(doc, _TOP, "")
    seed = doc.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise _err("seed", f"not an integer: {seed!r}")
    if doc.get("clock", "virtual") not in ("virtual", "real"):
        raise _err("clock", f"must be 'virtual' or 'real', not {doc.get('clock')!r}")
    sched = doc.get("schedule", "")
    if not isinstance(sched, str) and not (isinstance(sched, list) and all(isinstance(s, str) for s in sched)):
        raise _err("schedule", "must be a string or a list of strings")
    hosts = _validate_hosts(doc)
    _validate_links(doc, hosts)
    _validate_proxies(doc, hosts)


def _validate_hosts(doc: dict[str, Any]) -> dict[str, Any]:
    hosts = _table(doc, "hosts", "hosts")
    for name, h in hosts.items():
        f = f"hosts.{name}"
        if not isinstance(h, dict):
            raise _err(f, "must be a table")
        _bad_name(name, f)
        _unknown(h, _HOST, f)
        if not isinstance(h.get("router", False), bool):
            raise _err(f"{f}.router", f"not a boolean: {h['router']!r}")
        if "hostname" in h and not isinstance(h["hostname"], str):
            raise _err(f"{f}.hostname", "not a string")
        routes = h.get("routes", [])
        if not isinstance(routes, list):
            raise _err(f"{f}.routes", "must be a list of {dst, gateway} tables")
        for i, rt in enumerate(routes):
            rf = f"{f}.routes[{i}]"
            if not isinstance(rt, dict) or set(rt) != {"dst", "gateway"}:
                raise _err(rf, "must be a table with exactly 'dst' and 'gateway'")
            if rt["dst"] != "default":
                try:
                    ipaddress.IPv4Network(rt["dst"], strict=False)
                except (ValueError, TypeError):
                    raise _err(f"{rf}.dst", f"{rt['dst']!r} is not 'default' or an IPv4 network") from None
            try:
                ipaddress.IPv4Address(rt["gateway"])
            except (ValueError, TypeError):
                raise _err(f"{rf}.gateway", f"{rt['gateway']!r} is not an IPv4 address") from None
        sysctl = h.get("sysctl", {})
        if not isinstance(sysctl, dict):
            raise _err(f"{f}.sysctl", "must be a table of name = value")
    return hosts


def _validate_links(doc: dict[str, Any], hosts: dict[str, Any]) -> None:
    links = _table(doc, "links", "links")
    for i, (name, lk) in enumerate(links.items()):
        f = f"links.{name}"
        if not isinstance(lk, dict):
            raise _err(f, "must be a table")
        _bad_name(name, f)
        members = lk.get("hosts")
        if not isinstance(members, list) or len(members) < 2 or not all(isinstance(m, str) for m in members):
            raise _err(f"{f}.hosts", "must list at least two host names")
        for m in members:
            if m not in hosts:
                raise _err(f"{f}.hosts", f"no host {m!r} (declare [hosts.{m}])")
        if len(set(members)) != len(members):
            raise _err(f"{f}.hosts", "a host is named twice")
        subnet = lk.get("subnet", f"10.0.{i + 1}.0/24")
        try:
            net4 = ipaddress.IPv4Network(subnet, strict=True)
        except (ValueError, TypeError) as e:
            raise _err(f"{f}.subnet", str(e)) from None
        mtu = lk.get("mtu", 1500)
        if isinstance(mtu, bool) or not isinstance(mtu, int) or not 68 <= mtu <= 65521:
            raise _err(f"{f}.mtu", f"{mtu!r} is not an integer in 68..65521")
        _check_addresses(lk, "addresses", f, name, net4, members)
        _validate_subnet6(lk, f, name, members, mtu)
        params = {k: v for k, v in lk.items() if k not in _LINK_STRUCT}
        for key in params:
            if key not in FIELDS and key != "netem":
                raise _err(f"{f}.{key}", "not a netem parameter or link field"
                           f"{did_you_mean(key, (*FIELDS, 'netem', *_LINK_STRUCT))}")
        _impair_fields(params, f)
        dirs = lk.get("directions", {})
        if not isinstance(dirs, dict):
            raise _err(f"{f}.directions", "must be a table of direction = impairment")
        for d, spec in dirs.items():
            df = f"{f}.directions.{d}"
            if not isinstance(spec, dict):
                raise _err(df, "must be a table of netem parameters")
            _check_direction(d, members, df)
            _impair_fields(spec, df)


def _validate_proxies(doc: dict[str, Any], hosts: dict[str, Any]) -> None:
    proxies = _table(doc, "proxies", "proxies")
    for name, p in proxies.items():
        f = f"proxies.{name}"
        if not isinstance(p, dict):
            raise _err(f, "must be a table")
        _unknown(p, _PROXY, f)
        from rumpnet.faults.toxics import parse_hostport, toxic_from_json

        for key in ("listen", "upstream"):
            if key not in p:
                raise _err(f"{f}.{key}", "missing")
            try:
                parse_hostport(p[key], key)
            except ValueError as e:
                raise _err(f"{f}.{key}", str(e).split(": ", 1)[-1]) from None
        if "host" in p and p["host"] not in hosts:
            raise _err(f"{f}.host", f"no host {p['host']!r}")
        if not isinstance(p.get("enabled", True), bool):
            raise _err(f"{f}.enabled", "not a boolean")
        toxics = p.get("toxics", [])
        if not isinstance(toxics, list):
            raise _err(f"{f}.toxics", "must be a list of toxic tables")
        seen: set[str] = set()
        for i, t in enumerate(toxics):
            try:
                tx = toxic_from_json(t)
            except ValueError as e:
                raise ScenarioError(f"{f}.toxics[{i}].{e}") from None
            if tx.name in seen:
                raise _err(f"{f}.toxics[{i}].name", f"{tx.name!r} given twice")
            seen.add(tx.name)


def _impair_fields(spec: dict[str, Any], field: str) -> None:
    try:
        impairment(spec)
    except ValueError as e:
        raise ScenarioError(f"{field}.{e}") from None


def _check_direction(d: str, members: list[str], field: str) -> None:
    t = d.replace(" ", "")
    if t in ("both", "all"):
        return
    if "->" not in t:
        raise _err(field, "a direction is 'A->B', 'A->*' or '*->B'")
    src, dst = t.split("->", 1)
    for h in (src, dst):
        if h != "*" and h not in members:
            raise _err(field, f"host {h!r} is not on this link")
    if src == dst:
        raise _err(field, "goes nowhere")
    if src != "*" and dst != "*" and len(members) > 2:
        pass  # b's ingress on a larger segment: allowed


def _bad_name(name: str, field: str) -> None:
    if not name or any(c in name for c in " ;:*") or "->" in name:
        raise _err(field, f"bad name {name!r} (no spaces, ';', ':', '*' or '->')")


def _validate_subnet6(lk: dict[str, Any], f: str, name: str, members: list[str], mtu: int) -> None:
    """A dual-stack link's ``subnet6`` (an IPv6 prefix) and ``addresses6``."""
    from rumpnet.faults.addressing import subnet6_of

    if "subnet6" not in lk and "addresses6" not in lk:
        return
    subnet6 = lk.get("subnet6")
    try:
        net6 = subnet6_of(name, subnet6 if isinstance(subnet6, str) else None, mtu)
    except ValueError as e:
        field = "mtu" if "mtu:" in str(e) else "subnet6"
        raise _err(f"{f}.{field}", str(e).split(": ", 2)[-1] if subnet6 is not None else "must be an IPv6 prefix "
                   "(fc00:0:0:1::/64)") from None
    _check_addresses(lk, "addresses6", f, name, net6, members)


def _check_addresses(lk: dict[str, Any], key: str, f: str, name: str,
                     net: ipaddress.IPv4Network | ipaddress.IPv6Network, members: list[str]) -> None:
    """A link's ``addresses`` or ``addresses6`` table: hosts of the link, addresses of ``net``."""
    from rumpnet.faults.addressing import assign_addresses

    addrs = lk.get(key, {})
    if not isinstance(addrs, dict):
        raise _err(f"{f}.{key}", "must be a table host = address")
    try:
        assign_addresses(name, net, members, addrs, key)
    except ValueError as e:
        raise _err(f"{f}.{key}", str(e).split(": ", 1)[-1]) from None


def build(doc: dict[str, Any], seed: int | None = None, clock: str | None = None) -> Any:
    """A :class:`~rumpnet.faults.network.Network` from a validated scenario."""
    from rumpnet.faults.network import Network

    net = Network(seed=doc.get("seed", 0) if seed is None else seed, clock=clock or doc.get("clock", "virtual"))
    field = "hosts"
    try:
        for name, h in doc.get("hosts", {}).items():
            field = f"hosts.{name}"
            net.add_host(name, router=h.get("router", False), hostname=h.get("hostname"))
        for i, (name, lk) in enumerate(doc.get("links", {}).items()):
            field = f"links.{name}"
            members = lk["hosts"]
            link = net.add_link(name, members[0], members[1:], subnet=lk.get("subnet", f"10.0.{i + 1}.0/24"),
                                mtu=lk.get("mtu", 1500), addresses=lk.get("addresses"),
                                subnet6=lk.get("subnet6"), addresses6=lk.get("addresses6"))
            params = {k: v for k, v in lk.items() if k not in _LINK_STRUCT}
            if params:
                link.impair(params)
            for d, spec in lk.get("directions", {}).items():
                # A direction's table adds to the link-wide fields (as update does), so
                # [links.lan.directions."a->r"] duplicate = "5%" keeps lan's loss and delay.
                field = f"links.{name}.directions.{d}"
                link.update(direction=d, **spec)
        for name, h in doc.get("hosts", {}).items():
            for i, rt in enumerate(h.get("routes", [])):
                field = f"hosts.{name}.routes[{i}]"
                net.route(name, rt["dst"], rt["gateway"])
            for key, value in h.get("sysctl", {}).items():
                field = f"hosts.{name}.sysctl.{key}"
                net.host(name).kernel.config.sysctl_set(key, value)
        field = "schedule"
        sched = doc.get("schedule", "")
        text = sched if isinstance(sched, str) else ";".join(sched)
        if text.strip():
            net.parse_schedule(text)  # validate every statement before arming any
        for name, p in doc.get("proxies", {}).items():
            field = f"proxies.{name}"
            from rumpnet.faults.toxics import Proxy, toxic_from_json

            px = Proxy.create(net, name, p["listen"], p["upstream"], host=p.get("host"),
                              enabled=p.get("enabled", True))
            for t in p.get("toxics", []):
                px.add_toxic(toxic_from_json(t))
        if text.strip():
            net.schedule(text)
    except (ValueError, KeyError, OSError) as e:
        net.close()
        msg = str(e.args[0] if isinstance(e, KeyError) and e.args else (e.strerror if isinstance(e, OSError) and e.strerror else e))
        if msg.startswith(f"{field}: "):  # already named (the schedule's own errors say "schedule: ...")
            msg = msg[len(field) + 2:]
        raise _err(field, msg) from None
    except BaseException:
        net.close()
        raise
    return net
