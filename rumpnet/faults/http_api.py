"""A small HTTP control API for a harness, in the spirit of toxiproxy's (port 8474 there).

::

    api = HttpApi(net, port=0).start()        # 127.0.0.1 only, its own thread
    api.url                                    # "http://127.0.0.1:PORT"
    api.stop()

    python -m rumpnet.faults.http_api --scenario file.toml --port 8474

Endpoints (JSON in and out):

    GET    /version
    GET    /proxies                     {name: proxy}
    POST   /proxies                     {"name", "listen", "upstream", "enabled"?, "host"?} -> 201
    GET    /proxies/{name}
    POST   /proxies/{name}              {"enabled"?: bool}              (toxiproxy's update)
    DELETE /proxies/{name}                                              -> 204
    GET    /proxies/{name}/toxics       [toxic]
    POST   /proxies/{name}/toxics       {"name"?, "type", "stream"?, "toxicity"?, "attributes"}
    GET    /proxies/{name}/toxics/{t}
    POST   /proxies/{name}/toxics/{t}   {"attributes"?, "toxicity"?, "stream"?}
    DELETE /proxies/{name}/toxics/{t}                                   -> 204
    POST   /reset                       every proxy enabled without toxics, every link clear -> 204
    GET    /links                       {name: {hosts, subnet, netem, partitioned, counters}}
    GET    /links/{name}
    POST   /links/{name}/netem          {"direction"?, "netem"?: "tc options", FIELD: value...,
                                         "partition"?: bool, "update"?: bool}

Bad input gives status 400 and ``{"error": "FIELD: message", "status": 400}`` (nothing
applied); unknown names 404; an existing name on create 409; a proxy that cannot listen
(no TCP in the kernel, address in use) 503 with the errno's message.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from rumpkern._version import __version__
from rumpnet.faults.params import check, impairment
from rumpnet.usage import version_text

MAX_BODY = 1 << 20  # a control request is small; a larger body is refused, not read


class ApiError(Exception):
    """An error answer: HTTP ``status`` and the message (``FIELD: what is wrong``)."""

    def __init__(self, status: int, msg: str) -> None:
        super().__init__(msg)
        self.status = status
        self.msg = msg


def _body_object(raw: bytes, allow_empty: bool = False) -> dict[str, Any]:
    if not raw.strip():
        if allow_empty:
            return {}
        raise ApiError(400, "body: a JSON object is required")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError(400, f"body: bad JSON: {e}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "body: must be a JSON object")
    return body


class Harness:
    """The operations behind the endpoints (usable without HTTP); one lock serialises them."""

    def __init__(self, net: Any) -> None:
        self.net = net
        self.lock = threading.Lock()

    # -- proxies --------------------------------------------------------------------------------
    def _proxy(self, name: str) -> Any:
        px = self.net.proxies.get(name)
        if px is None:
            raise ApiError(404, f"proxy {name!r} not found")
        return px

    def proxies(self) -> dict[str, Any]:
        """GET /proxies."""
        return {n: p.to_json() for n, p in self.net.proxies.items()}

    def create_proxy(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST /proxies: a new proxy from ``{name, listen, upstream, enabled?, host?}``."""
        from rumpnet.faults.toxics import Proxy, parse_hostport

        for k in body:
            if k not in ("name", "listen", "upstream", "enabled", "host"):
                raise ApiError(400, f"{k}: unknown field")
        name = body.get("name")
        if not isinstance(name, str) or not name or "/" in name:
            raise ApiError(400, "name: a non-empty string without '/' is required")
        for key in ("listen", "upstream"):
            if key not in body:
                raise ApiError(400, f"{key}: missing")
            try:
                parse_hostport(body[key], key)
            except ValueError as e:
                raise ApiError(400, str(e)) from None
        enabled = body.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ApiError(400, f"enabled: not a boolean: {enabled!r}")
        host = body.get("host")
        if host is not None and host not in self.net.hosts:
            raise ApiError(400, f"host: no host {host!r}")
        if name in self.net.proxies:
            raise ApiError(409, f"proxy {name!r} already exists")
        try:
            px = Proxy.create(self.net, name, body["listen"], body["upstream"], host=host, enabled=enabled)
        except ValueError as e:
            raise ApiError(400, str(e)) from None
        except OSError as e:
            raise ApiError(503, f"listen: {e.strerror or e}") from None
        return px.to_json()

    def update_proxy(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST /proxies/{name}: ``{enabled}``."""
        px = self._proxy(name)
        for k in body:
            if k not in ("enabled", "name"):
                raise ApiError(400, f"{k}: cannot be changed (only 'enabled')")
        if "enabled" in body:
            en = body["enabled"]
            if not isinstance(en, bool):
                raise ApiError(400, f"enabled: not a boolean: {en!r}")
            try:
                px.start() if en else px.stop()
            except OSError as e:
                raise ApiError(503, f"listen: {e.strerror or e}") from None
        return px.to_json()  # type: ignore[no-any-return]

    def delete_proxy(self, name: str) -> None:
        """DELETE /proxies/{name}."""
        px = self._proxy(name)
        px.stop()
        del self.net.proxies[name]

    def toxics(self, name: str) -> list[dict[str, Any]]:
        """GET /proxies/{name}/toxics."""
        return [t.to_json() for t in self._proxy(name).toxics.values()]

    def add_toxic(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST /proxies/{name}/toxics."""
        from rumpnet.faults.toxics import toxic_from_json

        px = self._proxy(name)
        try:
            t = toxic_from_json(body)
        except ValueError as e:
            raise ApiError(400, str(e)) from None
        if t.name in px.toxics:
            raise ApiError(409, f"toxic {t.name!r} already exists")
        return px.add_toxic(t).to_json()  # type: ignore[no-any-return]

    def toxic(self, name: str, toxic: str) -> dict[str, Any]:
        """GET /proxies/{name}/toxics/{toxic}."""
        px = self._proxy(name)
        if toxic not in px.toxics:
            raise ApiError(404, f"toxic {toxic!r} not found")
        return px.toxics[toxic].to_json()  # type: ignore[no-any-return]

    def update_toxic(self, name: str, toxic: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST /proxies/{name}/toxics/{toxic}."""
        px = self._proxy(name)
        if toxic not in px.toxics:
            raise ApiError(404, f"toxic {toxic!r} not found")
        try:
            return px.update_toxic(toxic, body).to_json()  # type: ignore[no-any-return]
        except ValueError as e:
            raise ApiError(400, str(e)) from None

    def delete_toxic(self, name: str, toxic: str) -> None:
        """DELETE /proxies/{name}/toxics/{toxic}."""
        px = self._proxy(name)
        if toxic not in px.toxics:
            raise ApiError(404, f"toxic {toxic!r} not found")
        px.remove_toxic(toxic)

    def reset(self) -> None:
        """POST /reset: every proxy enabled without toxics, every link clear."""
        for px in self.net.proxies.values():
            try:
                px.reset()
            except OSError:
                pass
        self.net.clear()

    # -- links ------------------------------------------------------------------------------------
    def _link(self, name: str) -> Any:
        lk = self.net.links.get(name)
        if lk is None:
            raise ApiError(404, f"link {name!r} not found")
        return lk

    def links(self) -> dict[str, Any]:
        """GET /links."""
        return {n: lk.describe() for n, lk in self.net.links.items()}

    def link(self, name: str) -> dict[str, Any]:
        """GET /links/{name}."""
        return self._link(name).describe()  # type: ignore[no-any-return]

    def link_netem(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST /links/{name}/netem: impair (or with ``update``, change) the link from a JSON body."""
        from rumpnet.faults.network import _fresh

        lk = self._link(name)
        body = dict(body)
        direction = body.pop("direction", "both")
        if not isinstance(direction, str):
            raise ApiError(400, f"direction: not a string: {direction!r}")
        partition = body.pop("partition", None)
        if partition is not None and not isinstance(partition, bool):
            raise ApiError(400, f"partition: not a boolean: {partition!r}")
        update = body.pop("update", False)
        if not isinstance(update, bool):
            raise ApiError(400, f"update: not a boolean: {update!r}")
        for k in ("drop_match",):
            if k in body:
                raise ApiError(400, f"{k}: not settable over HTTP (use 'netem': 'match ...')")
        try:
            runners = lk.runners(direction)
            changes = impairment(body)
            news = []
            for r in runners:
                p = check(changes, r.params) if update else (_fresh(r.params, changes) if body else r.params)
                if partition is not None:
                    p = p.replace(partition=partition)
                news.append((r, p))
        except ValueError as e:
            raise ApiError(400, str(e)) from None
        self.net._apply(news)
        return lk.describe()  # type: ignore[no-any-return]


class _Handler(BaseHTTPRequestHandler):
    server_version = f"rumpnet-faults/{__version__}"
    harness: Harness

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet by default
        pass

    def _send(self, status: int, obj: Any = None) -> None:
        data = b"" if obj is None else json.dumps(obj, sort_keys=False).encode() + b"\n"
        self.send_response(status)
        if obj is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data and self.command != "HEAD":
            self.wfile.write(data)

    def _dispatch(self, method: str) -> None:
        h = type(self).harness
        parts = [unquote(p) for p in urlsplit(self.path).path.split("/") if p]
        try:
            n = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self._send(400, {"error": f"Content-Length: not a number: {self.headers.get('Content-Length')!r}",
                             "status": 400})
            return
        raw = self.rfile.read(n) if 0 < n <= MAX_BODY else b""
        if n > MAX_BODY:
            self._send(413, {"error": f"body: {n} bytes is over the limit of {MAX_BODY}", "status": 413})
            return
        try:
            with h.lock:
                status, obj = self._route(h, method, parts, raw)
        except ApiError as e:
            status, obj = e.status, {"error": e.msg, "status": e.status}
        except Exception as e:  # noqa: BLE001 - a harness bug must not kill the server
            status, obj = 500, {"error": f"{type(e).__name__}: {e}", "status": 500}
        self._send(status, obj)

    def _route(self, h: Harness, m: str, p: list[str], raw: bytes) -> tuple[int, Any]:
        if p == ["version"] and m == "GET":
            return 200, {"version": f"rumpnet-faults {__version__}", "seed": h.net.seed}
        if p == ["reset"] and m == "POST":
            h.reset()
            return 204, None
        if p and p[0] == "proxies":
            if len(p) == 1:
                if m == "GET":
                    return 200, h.proxies()
                if m == "POST":
                    return 201, h.create_proxy(_body_object(raw))
            elif len(p) == 2:
                if m == "GET":
                    return 200, h._proxy(p[1]).to_json()
                if m == "POST":
                    return 200, h.update_proxy(p[1], _body_object(raw))
                if m == "DELETE":
                    h.delete_proxy(p[1])
                    return 204, None
            elif len(p) == 3 and p[2] == "toxics":
                if m == "GET":
                    return 200, h.toxics(p[1])
                if m == "POST":
                    h._proxy(p[1])
                    return 200, h.add_toxic(p[1], _body_object(raw))
            elif len(p) == 4 and p[2] == "toxics":
                if m == "GET":
                    return 200, h.toxic(p[1], p[3])
                if m == "POST":
                    h._proxy(p[1])
                    return 200, h.update_toxic(p[1], p[3], _body_object(raw))
                if m == "DELETE":
                    h.delete_toxic(p[1], p[3])
                    return 204, None
        if p and p[0] == "links":
            if len(p) == 1 and m == "GET":
                return 200, h.links()
            if len(p) == 2 and m == "GET":
                return 200, h.link(p[1])
            if len(p) == 3 and p[2] == "netem" and m == "POST":
                h._link(p[1])
                return 200, h.link_netem(p[1], _body_object(raw))
        if p and p[0] in ("proxies", "links", "reset", "version"):
            raise ApiError(405, f"{m} {self.path}: method not allowed")
        raise ApiError(404, f"{self.path}: not found")

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own errors (an unknown method, a bad request line) in the API's
        JSON shape: ``{"error": ..., "status": N}``."""
        self.close_connection = True
        msg = message or self.responses.get(code, ("error",))[0]
        data = json.dumps({"error": msg, "status": code}).encode() + b"\n"
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Connection", "close")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD" and code >= 200 and code not in (204, 304):
            self.wfile.write(data)


# Every method gets the API's JSON answers; those it has no use for (PUT, PATCH, ...)
# answer 405 on a known path and 404 elsewhere, never http.server's HTML page.
for _method in ("GET", "POST", "DELETE", "PUT", "PATCH", "OPTIONS", "HEAD"):
    setattr(_Handler, f"do_{_method}", lambda self, m=_method: self._dispatch(m))


class HttpApi:
    """The HTTP server, bound to 127.0.0.1, serving from its own thread."""

    def __init__(self, net: Any, port: int = 0, host: str = "127.0.0.1") -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"host: the control API listens on loopback only, not {host!r}")
        self.net = net
        self.harness = Harness(net)
        handler = type("Handler", (_Handler,), {"harness": self.harness})
        self.server = ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True
        self.thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port the API listens on (the chosen one when asked for port 0)."""
        return self.server.server_address[1]

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HttpApi:
        """Serve from a thread of its own; returns self."""
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       name="rumpnet-http-api", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        self.server.shutdown()
        self.server.server_close()
        if self.thread is not None:
            self.thread.join()
            self.thread = None

    def __enter__(self) -> HttpApi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """``python -m rumpnet.faults.http_api --scenario FILE [--port N] [--seed N] [--clock real|virtual]``."""
    ap = argparse.ArgumentParser(prog="python -m rumpnet.faults.http_api",
                                 description="Run a fault-injection harness from a scenario file, with an HTTP control API.")
    ap.add_argument("--scenario", help="scenario TOML file (required)")
    ap.add_argument("--port", type=int, default=8474, help="port on 127.0.0.1 (default 8474, as toxiproxy)")
    ap.add_argument("--seed", type=int, default=None, help="override the scenario's seed")
    ap.add_argument("--clock", choices=("virtual", "real"), default="real",
                    help="the network's clock (default real: clients outside the process wait in real time)")
    ap.add_argument("--version", action="version", version=version_text(ap.prog).rstrip())
    args = ap.parse_args(argv)  # (an unknown option is named before a missing --scenario)
    if not args.scenario:
        ap.error("the following arguments are required: --scenario")
    from rumpnet.faults.network import Network
    from rumpnet.faults.scenario import ScenarioError

    try:
        net = Network.from_toml(args.scenario, seed=args.seed, clock=args.clock)
    except ScenarioError as e:
        print(f"{ap.prog}: {args.scenario}: {e}", file=sys.stderr, flush=True)
        return 1
    net.sched.start_background()
    try:
        api = HttpApi(net, port=args.port).start()
    except OSError as e:
        print(f"{ap.prog}: cannot listen on 127.0.0.1:{args.port}: {e.strerror or e}", file=sys.stderr, flush=True)
        net.close()
        return 1
    print(f"rumpnet fault harness: seed {net.seed}, {len(net.hosts)} hosts, {len(net.links)} links; "
          f"API on {api.url}", flush=True)
    import signal

    def _term(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        api.stop()
        net.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
