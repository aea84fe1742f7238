"""The HTTP control API on 127.0.0.1: round trips, validation (nothing half-applied), 404s."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rumpnet.faults.http_api import HttpApi
from rumpnet.faults.network import Network

SCENARIO = """
seed = 4
[hosts.c]
[hosts.p]
[hosts.s]
[links.front]
hosts = ["c", "p"]
subnet = "10.0.1.0/24"
[links.back]
hosts = ["p", "s"]
subnet = "10.0.2.0/24"
[proxies.web]
host = "p"
listen = "10.0.1.2:8080"
upstream = "10.0.2.2:80"
enabled = false
"""


@pytest.fixture
def api() -> Iterator[tuple[HttpApi, Network]]:
    net = Network.from_toml(SCENARIO)
    srv = HttpApi(net, port=0).start()
    try:
        yield srv, net
    finally:
        srv.stop()
        net.close()


def call(srv: HttpApi, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(srv.url + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            raw = r.read()
            return r.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, json.loads(raw) if raw else None


def test_bound_to_loopback_only(api: tuple[HttpApi, Network]) -> None:
    srv, _ = api
    assert srv.server.server_address[0] == "127.0.0.1"
    with pytest.raises(ValueError, match="loopback"):
        HttpApi(api[1], host="0.0.0.0")


def test_proxy_and_toxic_round_trips(api: tuple[HttpApi, Network]) -> None:
    srv, net = api
    st, body = call(srv, "GET", "/proxies")
    assert st == 200 and body["web"]["listen"] == "10.0.1.2:8080" and body["web"]["enabled"] is False
    toxic = {"name": "slow", "type": "latency", "stream": "upstream", "toxicity": 0.5,
             "attributes": {"latency": 100, "jitter": 10}}
    st, body = call(srv, "POST", "/proxies/web/toxics", toxic)
    assert st == 200 and body == toxic
    st, body = call(srv, "POST", "/proxies/web/toxics", {"type": "bandwidth", "attributes": {"rate": 10}})
    assert st == 200 and body["name"] == "bandwidth_downstream" and body["stream"] == "downstream"
    assert call(srv, "POST", "/proxies/web/toxics", toxic)[0] == 409
    st, body = call(srv, "GET", "/proxies/web/toxics")
    assert [t["name"] for t in body] == ["slow", "bandwidth_downstream"]
    st, body = call(srv, "POST", "/proxies/web/toxics/slow", {"attributes": {"latency": 200}})
    assert st == 200 and body["attributes"] == {"latency": 200, "jitter": 10}
    assert call(srv, "GET", "/proxies/web/toxics/slow")[1]["attributes"]["latency"] == 200
    assert call(srv, "DELETE", "/proxies/web/toxics/slow") == (204, None)
    assert call(srv, "GET", "/proxies/web/toxics/slow")[0] == 404
    assert [t.name for t in net.proxies["web"].toxics.values()] == ["bandwidth_downstream"]
    assert call(srv, "POST", "/reset") == (204, None)
    assert net.proxies["web"].toxics == {}


def test_bad_toxics_are_rejected_whole(api: tuple[HttpApi, Network]) -> None:
    srv, net = api
    px = net.proxies["web"]
    cases = [
        (b"{not json", "body: bad JSON"),
        (b"[1, 2]", "body: must be a JSON object"),
        ({"type": "bandwidth", "attributes": {"rate": -1}}, "attributes.rate: negative"),
        ({"type": "latency", "toxicity": 1.5}, "toxicity: probability 1.5"),
        ({"type": "latency", "stream": "sideways"}, "stream:"),
        ({"type": "teleport"}, "type: unknown toxic type"),
        ({"type": "latency", "attributes": {"latency": "slow"}}, "attributes.latency: not an integer"),
        ({"type": "latency", "attributes": {"speed": 1}}, "attributes.speed: not an attribute"),
        ({"attributes": {}}, "type: missing"),
    ]
    for body, msg in cases:
        st, resp = call(srv, "POST", "/proxies/web/toxics", body)
        assert st == 400, (body, resp)
        assert resp["error"].startswith(msg), resp
    assert px.toxics == {}
    call(srv, "POST", "/proxies/web/toxics", {"name": "l", "type": "latency", "attributes": {"latency": 5}})
    st, resp = call(srv, "POST", "/proxies/web/toxics/l", {"attributes": {"latency": 7, "jitter": -1}})
    assert st == 400 and resp["error"].startswith("attributes.jitter")
    assert px.toxics["l"].attributes == {"latency": 5, "jitter": 0}


def test_unknown_names_are_404(api: tuple[HttpApi, Network]) -> None:
    srv, _ = api
    for method, path, body in [("GET", "/proxies/nope", None), ("DELETE", "/proxies/nope", None),
                               ("GET", "/proxies/nope/toxics", None),
                               ("POST", "/proxies/nope/toxics", {"type": "latency"}),
                               ("DELETE", "/proxies/web/toxics/nope", None),
                               ("GET", "/links/nope", None), ("POST", "/links/nope/netem", {"loss": 0.1}),
                               ("GET", "/nothing", None)]:
        st, resp = call(srv, method, path, body)
        assert st == 404, (method, path, resp)
        assert "not found" in resp["error"]


def test_proxy_create_validation(api: tuple[HttpApi, Network]) -> None:
    srv, net = api
    for body, msg in [({"listen": "10.0.1.2:81", "upstream": "10.0.2.2:80"}, "name:"),
                      ({"name": "x", "upstream": "10.0.2.2:80"}, "listen: missing"),
                      ({"name": "x", "listen": "10.0.1.2:81", "upstream": "nowhere"}, "upstream:"),
                      ({"name": "x", "listen": "10.0.1.2:70000", "upstream": "10.0.2.2:80"}, "listen: port"),
                      ({"name": "x", "listen": "10.0.1.2:81", "upstream": "10.0.2.2:80", "enabled": "yes"}, "enabled:"),
                      ({"name": "x", "listen": "10.0.1.2:81", "upstream": "10.0.2.2:80", "host": "q"}, "host:"),
                      ({"name": "x", "listen": "10.9.9.9:81", "upstream": "10.0.2.2:80"}, "listen: no host"),
                      ({"name": "x", "listen": "10.0.1.2:81", "upstream": "10.0.2.2:80", "colour": 1}, "colour:")]:
        st, resp = call(srv, "POST", "/proxies", body)
        assert st == 400 and resp["error"].startswith(msg), (body, resp)
    assert list(net.proxies) == ["web"]
    st, resp = call(srv, "POST", "/proxies", {"name": "web", "listen": "10.0.1.2:82", "upstream": "10.0.2.2:80"})
    assert st == 409
    st, resp = call(srv, "POST", "/proxies", {"name": "off", "listen": "10.0.1.2:83", "upstream": "10.0.2.2:80",
                                              "enabled": False})
    assert st == 201 and resp["host"] == "p" and resp["enabled"] is False
    assert call(srv, "DELETE", "/proxies/off") == (204, None)
    assert "off" not in net.proxies


def test_link_netem_round_trip_and_validation(api: tuple[HttpApi, Network]) -> None:
    srv, net = api
    st, links = call(srv, "GET", "/links")
    assert st == 200 and set(links) == {"front", "back"}
    assert links["front"]["hosts"]["c"]["address"] == "10.0.1.1"
    st, body = call(srv, "POST", "/links/front/netem", {"netem": "delay 10ms", "loss": "2%", "direction": "c->p"})
    assert st == 200 and body["netem"] == {"c->p": "limit 1000 delay 10ms loss 2%"}
    before = [r.params for r in net.link("front").runners("both")]
    for req, msg in [({"loss": 1.5}, "loss: probability 150% is over 100%"),
                     ({"loss": -0.1}, "loss: negative"),
                     ({"rate": -8}, "rate: negative"),
                     ({"delay": "10ms", "jitter": "1ms", "distribution": "gauss"}, "distribution: unknown"),
                     ({"netem": "delay 10ms distribution gauss"}, "netem:"),
                     ({"speed": 1}, "speed: not a netem parameter"),
                     ({"loss": "1%", "direction": "c->x"}, "direction:"),
                     ({"partition": "yes"}, "partition:"),
                     (b"{", "body: bad JSON")]:
        st, resp = call(srv, "POST", "/links/front/netem", req)
        assert st == 400 and resp["error"].startswith(msg), (req, resp)
    assert [r.params for r in net.link("front").runners("both")] == before
    st, body = call(srv, "POST", "/links/front/netem", {"partition": True})
    assert st == 200 and body["partitioned"] is True
    st, body = call(srv, "POST", "/links/front/netem", {"update": True, "duplicate": "1%", "direction": "c->p"})
    assert body["netem"]["c->p"] == "limit 1000 delay 10ms loss 2% duplicate 1% partition"
    assert call(srv, "POST", "/reset") == (204, None)
    assert call(srv, "GET", "/links/front")[1]["netem"] == {}


def test_counters_over_http(api: tuple[HttpApi, Network]) -> None:
    srv, net = api
    c, p = net.host("c"), net.host("p")
    call(srv, "POST", "/links/front/netem", {"loss": 1.0, "direction": "c->p"})
    fd = c.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    for _ in range(5):
        c.rump_sys_sendto(fd, b"x", 0, (p.addr("front"), 9))
    net.run_for(0.1)
    st, body = call(srv, "GET", "/links/front")
    assert body["counters"]["drop_loss"] >= 5 and body["counters"]["dropped"] >= 5


def test_module_entry_point_runs_a_harness(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(SCENARIO)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "rumpnet.faults.http_api", "--scenario", str(path),
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert f"127.0.0.1:{port}" in line, (line, proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/links", timeout=5) as r:
                    links = json.loads(r.read())
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        assert set(links) == {"front", "back"}
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def test_module_entry_point_rejects_a_bad_scenario(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[hosts.a]\n[hosts.b]\n[links.l]\nhosts = ["a", "b"]\nloss = 2.0\n')
    out = subprocess.run([sys.executable, "-m", "rumpnet.faults.http_api", "--scenario", str(path), "--port", "0"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "links.l.loss: probability 200% is over 100%" in out.stderr


def test_proxy_traffic_with_toxics_over_http(api: tuple[HttpApi, Network]) -> None:
    srv, net = api
    c, s = net.host("c"), net.host("s")
    lfd = s.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    s.rump_sys_bind(lfd, ("0.0.0.0", 80))
    s.rump_sys_listen(lfd, 4)
    assert call(srv, "POST", "/proxies/web", {"enabled": True})[1]["enabled"] is True
    st, _ = call(srv, "POST", "/proxies/web/toxics", {"type": "latency", "attributes": {"latency": 250}})
    assert st == 200
    cfd = c.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    c.rump_sys_connect(cfd, ("10.0.1.2", 8080))
    sfd, _ = s.rump_sys_accept(lfd)
    assert call(srv, "GET", "/proxies/web")[1]["connections"] == 1
    t0 = net.now()
    s.rump_sys_send(sfd, b"slow answer", 0)
    assert c.rump_sys_recv(cfd, 100, 0) == b"slow answer"
    assert net.now() - t0 >= 0.25 - 1e-6
    call(srv, "POST", "/proxies/web/toxics", {"type": "reset_peer", "stream": "upstream"})
    c.rump_sys_send(cfd, b"x", 0)
    with pytest.raises(OSError) as ei:
        c.rump_sys_recv(cfd, 100, 0)
    assert ei.value.errno == errno.ECONNRESET


def test_a_bare_number_string_is_a_percentage(api: tuple[HttpApi, Network]) -> None:
    # "loss": "1" used to mean 100% loss (a fraction); tc units say 1%
    srv, net = api
    st, body = call(srv, "POST", "/links/front/netem", {"loss": "1", "direction": "c->p"})
    assert st == 200 and body["netem"] == {"c->p": "limit 1000 loss 1%"}
    assert net.link("front").runners("c->p")[0].params.loss == 0.01
    st, body = call(srv, "POST", "/links/front/netem", {"loss": 1})
    assert st == 400 and body["error"].startswith('loss: 1 is ambiguous: write "1%"')


def _raw(srv: HttpApi, request: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


@pytest.mark.parametrize("method, path, status", [
    ("PUT", "/proxies", 405), ("PATCH", "/links/front/netem", 405), ("OPTIONS", "/version", 405),
    ("PUT", "/nowhere", 404), ("BREW", "/proxies", 501), ("GET", "/links/nosuch", 404),
])
def test_every_method_and_path_answers_in_json(api: tuple[HttpApi, Network], method: str, path: str, status: int) -> None:
    srv, _ = api
    st, headers, body = _raw(srv, f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
    assert st == status and headers["Content-Type"] == "application/json", (st, headers, body)
    obj = json.loads(body)
    assert obj["status"] == status and obj["error"], obj
    st, headers, body = _raw(srv, b"GET /version HTTP/1.1\r\nContent-Length: lots\r\nConnection: close\r\n\r\n")
    assert st == 400 and json.loads(body)["error"].startswith("Content-Length: not a number")
