"""Connection faults as toxiproxy defines them: an L4 TCP proxy running inside a kernel.

::

    px = Proxy(k, listen=("10.0.1.1", 8080), upstream=("10.0.2.1", 80), name="web")
    px6 = Proxy(k, listen="[fc00::1]:8080", upstream="10.0.2.1:80")  # either family each side
    px.add_toxic(Toxic("latency", stream="downstream", attributes={"latency": 100, "jitter": 10}))
    px.add_toxic(Toxic("reset_peer", toxicity=0.5, attributes={"timeout": 0}))

The proxy is built on the kernel's own stream-socket system calls, as coroutines on the
scheduler's loop (so on virtual time its delays cost nothing).  Toxics follow toxiproxy's
README (names, attributes and units; ``stream`` is ``upstream`` = client to server or
``downstream`` = server to client, default ``downstream``; ``toxicity`` is the probability
that the toxic applies to a connection, drawn once per connection from the proxy's seeded
generator):

=============  ======================================  =====================================
type           attributes                              effect
=============  ======================================  =====================================
latency        latency, jitter (ms)                    each chunk leaves latency +/- jitter
                                                       after it arrived
bandwidth      rate (KB/s; 0: unlimited)               at most rate*1000 bytes per second
slow_close     delay (ms)                              the close is passed on after delay
timeout        timeout (ms)                            data stops; the connection closes
                                                       after timeout (0: never, data dropped
                                                       until the toxic is removed)
reset_peer     timeout (ms)                            on data, after timeout: TCP RST to
                                                       both peers (SO_LINGER 0 close)
limit_data     bytes                                   the connection closes once that many
                                                       bytes passed
slicer         average_size, size_variation (bytes),   chunks cut into pieces of
               delay (microseconds)                    average_size +/- size_variation,
                                                       delay between them
=============  ======================================  =====================================
"""

from __future__ import annotations

import asyncio
import errno
import math
import random
import socket as pysocket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from rumpkern.sched import Sleep, SyscallCtx
from rumpnet import sys_socket as S  # noqa: N812
from rumpnet.usage import did_you_mean

STREAMS = ("upstream", "downstream")
TOXIC_TYPES: dict[str, tuple[str, ...]] = {
    "latency": ("latency", "jitter"),
    "bandwidth": ("rate",),
    "slow_close": ("delay",),
    "timeout": ("timeout",),
    "reset_peer": ("timeout",),
    "limit_data": ("bytes",),
    "slicer": ("average_size", "size_variation", "delay"),
}

Emit = Callable[[bytes, float], Awaitable[None]]


def parse_hostport(v: Any, field: str = "listen") -> tuple[str, int]:
    """``"10.0.1.1:8080"``, ``"[fc00::1]:8080"`` (brackets, as toxiproxy's Go
    ``net.SplitHostPort`` wants them) or ``("fc00::1", 8080)`` -> tuple; an IPv6 host may
    carry a ``%zone``; ``ValueError`` naming the field."""
    if isinstance(v, (tuple, list)) and len(v) == 2:
        host, port = v
    elif isinstance(v, str) and ":" in v:
        host, _, p = v.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1] or "::"
        elif ":" in host:
            raise ValueError(f"{field}: {v!r}: an IPv6 address goes in brackets ([addr]:port)")
        try:
            port = int(p)
        except ValueError:
            raise ValueError(f"{field}: bad port in {v!r}") from None
    else:
        raise ValueError(f"{field}: {v!r} is not HOST:PORT")
    if host in ("", "localhost"):
        host = "0.0.0.0" if host == "" else "127.0.0.1"
    if family_of(host) is None:
        raise ValueError(f"{field}: {host!r} is not an IPv4 or IPv6 address")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"{field}: port {port!r} is not in 0..65535")
    return host, port


def family_of(host: Any) -> int | None:
    """AF_INET or AF_INET6 for an address (an IPv6 one with or without ``%zone``), None
    for anything else."""
    if not isinstance(host, str):
        return None
    for family, text in ((pysocket.AF_INET, host), (pysocket.AF_INET6, host.partition("%")[0])):
        try:
            pysocket.inet_pton(family, text)
        except OSError:
            continue
        return family
    return None


def format_hostport(addr: tuple[Any, ...]) -> str:
    """``10.0.1.1:8080`` or ``[fc00::1]:8080``."""
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass
class Toxic:
    """One toxic: ``Toxic("latency", attributes={"latency": 100})``; validated."""

    type: str
    name: str = ""
    stream: str = "downstream"
    toxicity: float = 1.0
    attributes: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.type not in TOXIC_TYPES:
            raise ValueError(f"type: unknown toxic type {self.type!r} (one of {', '.join(TOXIC_TYPES)})")
        if self.stream not in STREAMS:
            raise ValueError(f"stream: {self.stream!r} is not 'upstream' or 'downstream'")
        if not self.name:
            self.name = f"{self.type}_{self.stream}"
        if not isinstance(self.name, str):
            raise ValueError(f"name: not a string: {self.name!r}")
        t = self.toxicity
        if isinstance(t, bool) or not isinstance(t, (int, float)) or math.isnan(t):
            raise ValueError(f"toxicity: not a number: {t!r}")
        if not 0.0 <= t <= 1.0:
            raise ValueError(f"toxicity: probability {t!r} is not in 0..1")
        self.toxicity = float(t)
        if not isinstance(self.attributes, dict):
            raise ValueError("attributes: must be an object")
        names = TOXIC_TYPES[self.type]
        attrs = dict.fromkeys(names, 0)
        for k, v in self.attributes.items():
            if k not in names:
                raise ValueError(f"attributes.{k}: not an attribute of {self.type} (attributes: {', '.join(names)})")
            if isinstance(v, float) and float(v).is_integer():
                v = int(v)
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(f"attributes.{k}: not an integer: {v!r}")
            if v < 0:
                raise ValueError(f"attributes.{k}: negative value {v}")
            attrs[k] = v
        self.attributes = attrs

    def to_json(self) -> dict[str, Any]:
        """The toxic as toxiproxy's JSON gives it (name, type, stream, toxicity, attributes)."""
        return {"name": self.name, "type": self.type, "stream": self.stream, "toxicity": self.toxicity,
                "attributes": dict(self.attributes)}

    def updated(self, body: dict[str, Any]) -> Toxic:
        """A copy with ``toxicity``/``attributes``/``stream`` changed (toxiproxy's update)."""
        _known_fields(body)
        if "type" in body and body["type"] != self.type:
            raise ValueError("type: a toxic's type cannot change")
        if "name" in body and body["name"] != self.name:
            raise ValueError("name: a toxic's name cannot change")
        attrs = dict(self.attributes)
        newattrs = body.get("attributes", {})
        if not isinstance(newattrs, dict):
            raise ValueError("attributes: must be an object")
        attrs.update(newattrs)
        return Toxic(self.type, self.name, body.get("stream", self.stream), body.get("toxicity", self.toxicity), attrs)

    # -- behaviour (called by a connection's pump, on the scheduler's loop) ----------------
    def a(self, name: str) -> int:
        """Attribute ``name`` of the toxic (the attributes carry toxiproxy's defaults for those not given)."""
        return self.attributes[name]

    async def pipe(self, conn: Connection, data: bytes, ts: float, emit: Emit) -> None:
        """Apply this toxic to ``data`` of ``conn`` (arrived at ``ts``), handing what goes on, and when, to ``emit``."""
        kind = self.type
        loop = conn.loop
        if kind == "latency":
            lat, jit = self.a("latency"), self.a("jitter")
            delay = lat + (conn.rng.randrange(-jit, jit + 1) if jit else 0)
            wait = ts + delay / 1000.0 - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            await emit(data, ts)
        elif kind == "bandwidth":
            rate = self.a("rate")  # KB/s, toxiproxy's KB is 1000 bytes
            if rate <= 0:
                await emit(data, ts)
                return
            step = rate * 100  # bytes per 100 ms
            while len(data) > step:
                await asyncio.sleep(0.1)
                await emit(data[:step], ts)
                data = data[step:]
            await asyncio.sleep(len(data) / (rate * 1000.0))
            await emit(data, ts)
        elif kind == "timeout":
            conn.arm_timeout(self)
            return  # data dropped
        elif kind == "reset_peer":
            t = self.a("timeout")
            if t:
                await asyncio.sleep(t / 1000.0)
            conn.reset()
        elif kind == "limit_data":
            limit = self.a("bytes")
            key = (self.name, "limit")
            done = conn.counts.get(key, 0)
            left = limit - done
            if left > 0:
                part = data[:left]
                conn.counts[key] = done + len(part)
                await emit(part, ts)
                left -= len(part)
            if left <= 0:
                conn.close()
        elif kind == "slicer":
            avg, var, delay = self.a("average_size"), self.a("size_variation"), self.a("delay")
            if avg <= 0:
                await emit(data, ts)
                return
            i = 0
            while i < len(data):
                size = max(1, avg + (conn.rng.randrange(-var, var + 1) if var else 0))
                await emit(data[i:i + size], ts)
                i += size
                if delay and i < len(data):
                    await asyncio.sleep(delay / 1e6)
        else:  # slow_close acts on close only
            await emit(data, ts)

    async def on_close(self, conn: Connection) -> None:
        """What the toxic does when its side of the connection ends (slow_close delays the EOF)."""
        if self.type == "slow_close" and self.a("delay"):
            await asyncio.sleep(self.a("delay") / 1000.0)


TOXIC_FIELDS = ("name", "type", "stream", "toxicity", "attributes")


def _known_fields(body: dict[str, Any]) -> None:
    for k in body:
        if k not in TOXIC_FIELDS:
            raise ValueError(f"{k}: unknown field{did_you_mean(k, TOXIC_FIELDS)}")


def toxic_from_json(body: Any) -> Toxic:
    """A toxic from toxiproxy's JSON shape; ``ValueError`` naming the field."""
    if not isinstance(body, dict):
        raise ValueError("toxic: must be an object")
    _known_fields(body)
    if "type" not in body:
        raise ValueError("type: missing")
    return Toxic(body["type"], body.get("name") or "", body.get("stream", "downstream"),
                 body.get("toxicity", 1.0), body.get("attributes", {}) or {})


def _now_call(k: Any, fn: Callable[..., Any], *args: Any) -> Any:
    """A system call that does not sleep, made directly (we are on the kernel's CPU)."""
    try:
        return fn(SyscallCtx(), k.procs.proc0, *args)
    except Sleep:
        return None


class Connection:
    """One proxied connection: client fd, upstream fd, a pump per direction."""

    def __init__(self, proxy: Proxy, cfd: int, client: Any, number: int) -> None:
        self.proxy = proxy
        self.k = proxy.kernel
        self.loop = proxy.kernel.sched.loop
        self.cfd = cfd
        self.ufd: int | None = None
        self.client = client
        self.rng = random.Random(f"{proxy.rng_base}:{number}")
        self.active: dict[str, bool] = {}  # toxic name -> applies to this connection
        self.counts: dict[tuple[str, str], int] = {}
        self.tasks: list[asyncio.Task[Any]] = []
        self.timers: dict[str, Any] = {}
        self.eof: set[str] = set()
        self.closed = False

    def toxics(self, stream: str) -> list[Toxic]:
        """The toxics that apply to this connection in one direction (drawn once per connection from their toxicity)."""
        out = []
        for t in self.proxy.toxics.values():
            if t.stream != stream:
                continue
            on = self.active.get(t.name)
            if on is None:
                on = self.active[t.name] = t.toxicity >= 1.0 or self.rng.random() < t.toxicity
            if on:
                out.append(t)
        return out

    def toxics_changed(self) -> None:
        """Follow a change of the proxy's toxics: cancel the timers of removed ones, arm the timeouts of those that now apply."""
        for name in list(self.timers):
            if name not in self.proxy.toxics:
                self.timers.pop(name).cancel()
        for stream in STREAMS:
            for t in self.toxics(stream):
                if t.type == "timeout":
                    self.arm_timeout(t)

    def arm_timeout(self, t: Toxic) -> None:
        """Close the connection after toxic ``t``'s ``timeout`` (ms; 0: never), once."""
        if t.name in self.timers or not t.a("timeout"):
            return
        self.timers[t.name] = self.loop.call_later(t.a("timeout") / 1000.0, self.close)

    async def run(self) -> None:
        """Pump both directions until the connection ends."""
        k = self.k
        try:
            ufd = await k.rump_sys_socket(family_of(self.proxy.upstream[0]), pysocket.SOCK_STREAM, 0)
            self.ufd = ufd
            await k.rump_sys_connect(ufd, self.proxy.upstream)
            for fd in (self.cfd, ufd):  # as Go (toxiproxy) does: no Nagle on proxied sockets
                _now_call(k, S.sys_setsockopt, fd, pysocket.IPPROTO_TCP, pysocket.TCP_NODELAY, 1)
        except OSError:
            self.close()
            return
        if self.closed:
            return
        self.toxics_changed()
        up: asyncio.Queue[tuple[bytes | None, float]] = asyncio.Queue(64)
        down: asyncio.Queue[tuple[bytes | None, float]] = asyncio.Queue(64)
        for coro in (self._read(self.cfd, up), self._pump("upstream", up, ufd),
                     self._read(ufd, down), self._pump("downstream", down, self.cfd)):
            self.tasks.append(self.loop.create_task(coro))

    async def _read(self, fd: int, q: asyncio.Queue[tuple[bytes | None, float]]) -> None:
        while not self.closed:
            try:
                data = await self.k.rump_sys_recv(fd, 65536, 0)
            except OSError as e:
                await q.put((None if e.errno in (errno.ECONNRESET, errno.ETIMEDOUT) else b"", self.loop.time()))
                return
            await q.put((data, self.loop.time()))
            if not data:
                return

    async def _pump(self, stream: str, q: asyncio.Queue[tuple[bytes | None, float]], dst: int) -> None:
        while not self.closed:
            data, ts = await q.get()
            if data is None:
                self.reset()
                return
            if not data:
                for t in self.toxics(stream):
                    await t.on_close(self)
                if self.closed:
                    return
                self.eof.add(stream)
                if len(self.eof) == 2:
                    self.close()
                else:
                    try:
                        await self.k.rump_sys_shutdown(dst, pysocket.SHUT_WR)
                    except OSError:
                        pass
                return
            await self._through(self.toxics(stream), 0, data, ts, dst)

    async def _through(self, chain: list[Toxic], i: int, data: bytes, ts: float, dst: int) -> None:
        if self.closed:
            return
        if i == len(chain):
            await self._send_all(dst, data)
            return

        async def emit(d: bytes, t: float) -> None:
            await self._through(chain, i + 1, d, t, dst)

        await chain[i].pipe(self, data, ts, emit)

    async def _send_all(self, fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view and not self.closed:
            try:
                n = await self.k.rump_sys_send(fd, view, 0)
            except OSError:
                self.reset()
                return
            view = view[n:]

    def _close_fds(self, linger0: bool) -> None:
        for fd in (self.cfd, self.ufd):
            if fd is None:
                continue
            if linger0:
                try:
                    _now_call(self.k, S.sys_setsockopt, fd, pysocket.SOL_SOCKET, pysocket.SO_LINGER, (1, 0))
                except OSError:
                    pass
            try:
                _now_call(self.k, S.sys_close, fd)
            except OSError:
                pass

    def _finish(self, linger0: bool) -> None:
        if self.closed:
            return
        self.closed = True
        for h in self.timers.values():
            h.cancel()
        self.timers.clear()
        me = asyncio.current_task() if self.loop.is_running() else None
        for t in self.tasks:
            if t is not me and not t.done():
                t.cancel()
        self._close_fds(linger0)
        if self in self.proxy.connections:
            self.proxy.connections.remove(self)

    def close(self) -> None:
        """Close both sides (FIN)."""
        self._finish(False)

    def reset(self) -> None:
        """Reset both sides (RST: SO_LINGER 0 then close)."""
        self._finish(True)


class Proxy:
    """A toxiproxy-style proxy listening in a kernel (or a network host)."""

    def __init__(self, kernel: Any, listen: Any, upstream: Any, name: str = "proxy", enabled: bool = True,
                 rng: random.Random | None = None) -> None:
        self.kernel = getattr(kernel, "kernel", kernel)  # a Host or a Kernel
        self.name = name
        self.listen = parse_hostport(listen, "listen")
        self.upstream = parse_hostport(upstream, "upstream")
        self.toxics: dict[str, Toxic] = {}
        self.connections: list[Connection] = []
        rng = rng or random.Random(f"rumpnet.faults.proxy:{self.kernel.seed}:{name}")
        self.rng_base = rng.getrandbits(64)
        self.nconn = 0
        self.lfd: int | None = None
        self._task: asyncio.Task[Any] | None = None
        self._enabled = False
        if enabled:
            self.start()

    @classmethod
    def create(cls, net: Any, name: str, listen: Any, upstream: Any, host: str | None = None,
               enabled: bool = True) -> Proxy:
        """A proxy registered in ``net.proxies``; ``host`` defaults to the host that owns the
        listen address."""
        if name in net.proxies:
            raise ValueError(f"name: proxy {name!r} exists")
        laddr = parse_hostport(listen, "listen")
        parse_hostport(upstream, "upstream")
        if host is None:
            owners = [h for h in net.hosts.values() if any(p.addr == laddr[0] for p in h.ports.values())]
            if not owners:
                raise ValueError(f"listen: no host has address {laddr[0]} (give 'host')")
            h = owners[0]
        else:
            if host not in net.hosts:
                raise ValueError(f"host: no host {host!r}")
            h = net.hosts[host]
        px = cls(h.kernel, laddr, upstream, name=name, enabled=False, rng=net.runner_rng(f"proxy:{name}"))
        px.host = h.name
        if enabled:
            px.start()
        net.proxies[name] = px
        return px

    host: str | None = None

    # -- lifetime ------------------------------------------------------------------------------
    @property
    def enabled(self) -> bool:
        """True while the proxy listens; setting it False closes its connections, True listens again."""
        return self._enabled

    def _on_cpu(self, fn: Callable[[], Any]) -> Any:
        sched = self.kernel.sched
        return sched.run(fn)

    def start(self) -> None:
        """Listen (``OSError`` as the socket calls give it, e.g. no TCP in the kernel)."""
        if self._enabled:
            return
        k = self.kernel

        def go() -> None:
            fd = _now_call(k, S.sys_socket, family_of(self.listen[0]), pysocket.SOCK_STREAM, 0)
            try:
                _now_call(k, S.sys_setsockopt, fd, pysocket.SOL_SOCKET, pysocket.SO_REUSEADDR, 1)
                _now_call(k, S.sys_bind, fd, self.listen)
                _now_call(k, S.sys_listen, fd, 128)
                self.listen = tuple(_now_call(k, S.sys_getsockname, fd))[:2]
            except OSError:
                _now_call(k, S.sys_close, fd)
                raise
            self.lfd = fd
            self._task = k.sched.loop.create_task(self._accept_loop(fd))

        self._on_cpu(go)
        self._enabled = True

    def stop(self) -> None:
        """Stop listening and close every connection (toxiproxy's disable)."""
        if not self._enabled:
            return

        def go() -> None:
            if self._task is not None:
                self._task.cancel()
            if self.lfd is not None:
                try:
                    _now_call(self.kernel, S.sys_close, self.lfd)
                except OSError:
                    pass
            self.lfd = None
            for c in list(self.connections):
                c.close()

        self._on_cpu(go)
        self._enabled = False
        sched = self.kernel.sched
        if not sched.holds_cpu() and not sched.background and not sched.loop.is_running():
            sched.run_for(0)  # let the cancelled tasks finish (no "Task was destroyed" at exit)

    async def _accept_loop(self, lfd: int) -> None:
        k = self.kernel
        while self.lfd == lfd:
            try:
                cfd, addr = await k.rump_sys_accept(lfd)
            except OSError:
                if self.lfd != lfd:
                    return
                await asyncio.sleep(0.01)
                continue
            self.nconn += 1
            conn = Connection(self, cfd, addr, self.nconn)
            self.connections.append(conn)
            k.sched.loop.create_task(conn.run())

    # -- toxics --------------------------------------------------------------------------------
    def add_toxic(self, toxic: Toxic | dict[str, Any]) -> Toxic:
        """Add ``toxic`` (applied after those already there; ValueError if its name is taken)."""
        t = toxic if isinstance(toxic, Toxic) else toxic_from_json(toxic)
        if t.name in self.toxics:
            raise KeyError(f"toxic {t.name!r} exists")
        self.toxics[t.name] = t
        self._changed()
        return t

    def update_toxic(self, name: str, body: dict[str, Any]) -> Toxic:
        """Change the toxic called ``name`` from a toxiproxy JSON body (attributes, toxicity, stream)."""
        t = self.toxics[name].updated(body)
        self.toxics[name] = t
        self._changed()
        return t

    def remove_toxic(self, name: str) -> None:
        """Remove the toxic called ``name`` (KeyError if there is none)."""
        del self.toxics[name]
        self._changed()

    def reset(self) -> None:
        """toxiproxy's ``POST /reset`` for this proxy: no toxics, enabled."""
        self.toxics.clear()
        self._changed()
        self.start()

    def _changed(self) -> None:
        def go() -> None:
            for c in list(self.connections):
                c.toxics_changed()

        if self.connections:
            self._on_cpu(go)

    def to_json(self) -> dict[str, Any]:
        """The proxy as toxiproxy's JSON gives it (name, listen, upstream, enabled, toxics)."""
        return {"name": self.name, "listen": format_hostport(self.listen),
                "upstream": format_hostport(self.upstream), "enabled": self._enabled,
                "host": self.host, "connections": len(self.connections),
                "toxics": [t.to_json() for t in self.toxics.values()]}

    def __repr__(self) -> str:
        return f"<Proxy {self.name} {self.listen} -> {self.upstream}>"
