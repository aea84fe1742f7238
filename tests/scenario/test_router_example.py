"""The router (rump_router, rumpnet.router; examples/router/router.py wraps it): the demo
(the README's first command), the configured router, and its configuration checks."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROUTER = Path(__file__).resolve().parents[2] / "examples" / "router" / "router.py"


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROUTER), *args], capture_output=True, text=True, timeout=timeout)


def test_demo_pings_across_the_router_and_exits_0() -> None:
    r = run("--demo")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert out.count("3 packets transmitted, 3 packets received, 0.0% packet loss") == 2
    assert "net.inet.ip.forwarding: 0 -> 1" in out
    assert "default            10.0.1.254         UGS" in out
    assert "10.0.1/24          link#2             UC" in out
    assert "? (10.0.2.1) at " in out  # the router's ARP cache learned h2
    assert "qdisc netem 8001: root" in out
    # headings say which host does what (issue 16: the output had none)
    assert "=== h1 (10.0.1.1): ping -c 3 10.0.2.1, across the router" in out
    assert "=== router: netstat -rn" in out and "=== router: arp -an" in out


def test_demo_over_ipv6_pings6_across_the_router_and_exits_0() -> None:
    r = run("--demo", "--inet6")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert out.count("3 packets transmitted, 3 packets received, 0.0% packet loss") == 2
    assert "net.inet6.ip6.forwarding: 0 -> 1" in out and "net.inet.ip.forwarding" not in out
    assert "=== h1 (fc00:0:0:1::1): ping6 -c 3 fc00:0:0:2::1, across the router" in out
    assert re.search(r"^16 bytes from fc00:0:0:2::1, icmp_seq=0 hlim=63 time=", out, re.M)
    assert re.search(r"^default +fc00:0:0:1::fe +UGS ", out, re.M)
    assert re.search(r"^fc00:0:0:2::/64 +link#3 +UC ", out, re.M)         # the router's second link
    assert "=== router: ndp -an" in out and re.search(r"^fc00:0:0:2::1 +([0-9a-f]{2}:){5}[0-9a-f]{2} +wire1 ", out, re.M)
    assert "qdisc netem 8001: root" in out
    bad = run("--inet6")
    assert bad.returncode == 2 and "--inet6 goes with --demo" in bad.stderr


def test_the_console_script_is_the_same_program() -> None:
    exe = Path(sys.executable).parent / "rump_router"
    r = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("rump_router (rumpnet) ")
    r = subprocess.run([str(exe), "--example-config"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and '[[interface]]' in r.stdout


def test_usage_errors_exit_2() -> None:
    r = run()
    assert r.returncode == 2
    assert "usage:" in r.stderr
    r = run("--bogus")
    assert r.returncode == 2
    # a URL that is no URL is bad usage (it ended in a traceback)
    r = run("--config", "x.toml", "--server", "foo://x")
    assert r.returncode == 2 and "--server: unsupported url 'foo://x'" in r.stderr and "Traceback" not in r.stderr
    r = run("--config", "x.toml", "--duration", "-1")
    assert r.returncode == 2 and "--duration" in r.stderr


def test_configured_router_on_wires_runs_and_stops(tmp_path: Path) -> None:
    cfg = tmp_path / "r.toml"
    cfg.write_text(
        'hostname = "r9"\nforwarding = true\n'
        '[[interface]]\nname = "wire0"\nlink = "cfg-a"\naddress = "10.5.1.1/24"\n'
        '[[interface]]\nname = "wire1"\nlink = "cfg-b"\naddress = "10.5.2.1/24"\nmtu = 1400\n'
        '[[route]]\ndestination = "10.9.0.0/16"\ngateway = "10.5.2.7"\n'
        '[[proxy_arp]]\naddress = "10.5.1.77"\n'
        '[sysctl]\n"net.inet.ip.ttl" = 32\n'
    )
    r = run("--config", str(cfg), "--duration", "0.5")
    assert r.returncode == 0, r.stderr
    assert "router r9 up" in r.stderr and "router r9 stopped" in r.stderr


def test_bad_config_files_name_the_field(tmp_path: Path) -> None:
    iface = '[[interface]]\nname = "wire0"\naddress = "10.1.1.1/24"\n'
    cases = {
        'hostname = "x"\n': "interface: at least one",
        '[[interface]]\nname = "wire0"\n': "interface[0].address: missing",
        iface + 'mtu = "big"\n': "interface[0].mtu: must be an integer, not 'big'",
        "this is not toml": "r.toml: not TOML",
        # the traps of issue 16: each used to be accepted and do something else
        'forwarding = "no"\n' + iface: "forwarding: must be true or false, not 'no'",
        iface + '[[route]]\ndestination = "10.9.0.0/16"\n': "route[0].gateway: missing",
        'hostnme = "r1"\n' + iface: "hostnme: unknown field (did you mean 'hostname'?)",
        iface.replace("wire0", "eth0"): "interface[0].name: 'eth0' is not an interface this router can create (wireN, shmifN, virtN)",
        iface + 'addres = "10.1.1.2/24"\n': "interface[0].addres: unknown field (did you mean 'address'?)",
        iface.replace("10.1.1.1/24", "10.1.1.1"): "interface[0].address: '10.1.1.1' needs a prefix length",
        iface + '[[route]]\ndestination = "10.9.0.0/16"\ngateway = "10.1.1.300"\n': "route[0].gateway: '10.1.1.300' is not an IPv4 address",
        iface + '[[proxy_arp]]\naddress = "10.1.1.7"\nmac = "zz"\n': "proxy_arp[0].mac: 'zz' is not a MAC address",
        iface + '[sysctl]\n"net.inet.ip.ttl" = true\n': "sysctl.net.inet.ip.ttl: must be an integer or a string",
    }
    for text, needle in cases.items():
        cfg = tmp_path / "r.toml"
        cfg.write_text(text)
        r = run("--config", str(cfg), "--duration", "0.2")
        assert r.returncode == 1, text
        assert needle in r.stderr, (text, r.stderr)
        assert "Traceback" not in r.stderr


def test_router_is_reconfigured_at_run_time_with_the_tools(tmp_path: Path) -> None:
    import os
    import shutil
    import time

    cfg = tmp_path / "r.toml"
    cfg.write_text('[[interface]]\nname = "wire0"\nlink = "rt-a"\naddress = "10.6.1.1/24"\n')
    sock = tmp_path / "router.sock"
    bindir = Path(sys.executable).parent
    env = dict(os.environ, RUMP_SERVER=f"unix://{sock}", PATH=f"{bindir}:{os.environ.get('PATH', '')}")
    p = subprocess.Popen([sys.executable, str(ROUTER), "--config", str(cfg), "--server", f"unix://{sock}", "--duration", "60"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sock.exists()
        tool = shutil.which("rump.route", path=env["PATH"]) or "rump.route"
        r = subprocess.run([tool, "add", "10.20.0.0/16", "10.6.1.9"], env=env, capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        r = subprocess.run([tool.replace("rump.route", "rump.netstat"), "-rn"], env=env, capture_output=True, text=True, timeout=30)
        assert "10.20/16" in r.stdout and "10.6.1.9" in r.stdout, r.stdout
        r = subprocess.run([tool.replace("rump.route", "rump.halt")], env=env, capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert p.wait(30) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_live_view_and_clean_shutdown_on_sigterm(tmp_path: Path) -> None:
    import signal
    import time

    cfg = tmp_path / "r.toml"
    cfg.write_text('hostname = "live1"\n[[interface]]\nname = "wire0"\nlink = "live-a"\naddress = "10.7.1.1/24"\n'
                   'inet6 = ["fc00:7:1::1/64"]\n')
    p = subprocess.Popen([sys.executable, str(ROUTER), "--config", str(cfg), "--live"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        line = ""
        while "up" not in line and time.monotonic() < deadline:
            line = p.stderr.readline()  # type: ignore[union-attr]
        assert "router live1 up" in line
        time.sleep(1.2)  # let the live view draw at least once
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
        assert p.returncode == 0, err
        assert "router live1 stopped" in err
        assert "live1: interfaces" in out and "wire0" in out and "10.7.1.0/24" in out
        # flags and gateways as ifconfig and netstat -rn show them (it said 0x8843, link#1)
        assert "0x8843<UP," in out
        row4 = next(ln for ln in out.splitlines() if "10.7.1.0/24" in ln and "UC" in ln)
        assert "link#2" in row4 and "link#1" not in row4
        # IPv6 routes beside IPv4's, as netstat -rn lists both
        row6 = next(ln for ln in out.splitlines() if "fc00:7:1::/64" in ln)
        assert "link#2" in row6 and "wire0" in row6
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
