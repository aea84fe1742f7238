"""A small ATF shim for NetBSD's tests/net shell tests ported to pytest.

NetBSD's tests are sh scripts run by atf-sh: ``atf_check -s exit:0 -o match:RE cmd ...``
runs ``cmd`` and checks its exit status, stdout and stderr; ``tests/net/net_common.sh``
adds helpers that start ``rump_server`` processes on unix sockets in the test's work
directory (``rump_server_start``, ``rump_server_add_iface``, ``check_route``, ...).

:class:`Atf` does the same from Python so a port keeps the script's command lines as
they are (``atf.check("-s exit:0 -o ignore rump.ping -n -w 1 -c 1 10.0.1.2")``): each
command is a real process (the venv's console scripts first on ``PATH``), run with the
work directory as cwd (shmif bus files and ``unix://commsock`` sockets are relative
paths there) and with the ``RUMP_SERVER`` set by the last :meth:`Atf.export`. Every
``rump_server`` started through it is halted at cleanup and, if it does not go, killed
by its pid (learned from the server's handshake), also when the test failed.

``ATF_TIMING=1`` in the environment prints each command with its run time on stderr.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

from rumpnet.testing.procs import reap_cwd

# The venv's bin (rump_server, rump.ifconfig, ...): the running interpreter's directory.
VENV_BIN = os.path.dirname(os.path.abspath(sys.executable))
if not os.path.exists(os.path.join(VENV_BIN, "rump_server")):  # pragma: no cover - odd layouts
    _w = shutil.which("rump_server")
    if _w:
        VENV_BIN = os.path.dirname(_w)

# net_common.sh's BASIC_LIBS (-lrumpdev is accepted and ignored by our rump_server).
BASIC_LIBS = "-lrumpnet -lrumpnet_net -lrumpnet_netinet -lrumpnet_shmif -lrumpdev"

CMD_TIMEOUT = 60.0


class AtfCheckFailed(AssertionError):
    pass


@dataclass
class Result:
    argv: list[str]
    status: int
    stdout: str
    stderr: str

    def describe(self) -> str:
        return (f"command: {shlex.join(self.argv)}\nexit status: {self.status}\n"
                f"--- stdout ---\n{self.stdout}--- stderr ---\n{self.stderr}")


@dataclass
class _Server:
    url: str
    path: str
    pid: int | None = None


@dataclass
class Atf:
    """One test case's work directory, environment and servers."""

    # /tmp (short paths: unix socket names are limited to 108 bytes); $ATF_TMPDIR to move it
    workdir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="atf", dir=os.environ.get("ATF_TMPDIR", "/tmp")))
    env: dict[str, str] = field(default_factory=dict)
    servers: list[_Server] = field(default_factory=list)
    background: list[subprocess.Popen] = field(default_factory=list)
    # net_common.sh keeps these in ./.__socks, ./.__ifaces, ./.__buses
    ifaces: list[tuple[str, str]] = field(default_factory=list)
    buses: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        env = dict(os.environ)
        env.pop("RUMP_SERVER", None)
        env["PATH"] = VENV_BIN + os.pathsep + env.get("PATH", "")
        env["PYTHONUNBUFFERED"] = "1"
        self.env = env

    # -- environment -------------------------------------------------------------------
    def export(self, **kw: str) -> None:
        self.env.update(kw)

    def unset(self, name: str) -> None:
        self.env.pop(name, None)

    def path(self, name: str) -> str:
        return os.path.join(self.workdir, name)

    # -- running commands --------------------------------------------------------------
    def run(self, cmd: str | list[str], shell: bool = False, timeout: float = CMD_TIMEOUT,
            env: dict[str, str] | None = None) -> Result:
        """Run a command line (split as sh would, no expansion) or ``sh -c cmd``."""
        if shell:
            argv = ["/bin/sh", "-c", cmd if isinstance(cmd, str) else shlex.join(cmd)]
        else:
            argv = shlex.split(cmd) if isinstance(cmd, str) else list(cmd)
        e = dict(self.env)
        if env:
            e.update(env)
        t0 = time.monotonic()
        try:
            p = subprocess.run(argv, cwd=self.workdir, env=e, capture_output=True, text=True,
                               timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
            raise AtfCheckFailed(f"timed out after {timeout}s: {shlex.join(argv)}\n{out}{err}") from None
        res = Result(argv, p.returncode, p.stdout, p.stderr)
        if os.environ.get("ATF_TIMING"):
            print(f"[{time.monotonic() - t0:6.2f}s] {shlex.join(argv)}", file=sys.stderr)
        if argv and os.path.basename(argv[0]) in ("rump_server", "rump_allserver") and res.status == 0:
            self._started(argv[-1])
        return res

    def check(self, line: str) -> Result:
        """``atf_check [-s qual:value] [-o action:arg ...] [-e action:arg ...] [-x] command``.

        As atf-check(1): status defaults to ``exit:0`` and stdout/stderr to ``empty``;
        ``match:RE`` / ``not-match:RE`` search each line (extended regular expressions,
        Python syntax here); ``-x`` runs the (single) command argument with ``sh -c``.
        """
        args = shlex.split(line)
        status = ["exit:0"]
        outs: list[str] = []
        errs: list[str] = []
        shell = False
        status_given = False
        while args and args[0].startswith("-") and args[0] in ("-s", "-o", "-e", "-x"):
            opt = args.pop(0)
            if opt == "-x":
                shell = True
                continue
            val = args.pop(0)
            if opt == "-s":
                status = [val] if not status_given else status + [val]
                status_given = True
            elif opt == "-o":
                outs.append(val)
            else:
                errs.append(val)
        if shell:
            assert len(args) == 1, f"-x takes one command string: {args}"
            res = self.run(args[0], shell=True)
        else:
            res = self.run(args)
        problems: list[str] = []
        for s in status:
            problems += _check_status(s, res.status)
        for o in outs or ["empty"]:
            problems += _check_stream("stdout", o, res.stdout, self.workdir)
        for o in errs or ["empty"]:
            problems += _check_stream("stderr", o, res.stderr, self.workdir)
        if problems:
            raise AtfCheckFailed("atf_check " + line + "\n" + "\n".join(problems) + "\n" + res.describe())
        return res

    def spawn(self, cmd: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        """A background command (``cmd &``), killed at cleanup."""
        e = dict(self.env)
        if env:
            e.update(env)
        p = subprocess.Popen(shlex.split(cmd), cwd=self.workdir, env=e, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True)
        self.background.append(p)
        return p

    # -- servers -----------------------------------------------------------------------
    def _abs_url(self, url: str) -> str:
        if url.startswith("unix://") and not url.startswith("unix:///"):
            return "unix://" + os.path.normpath(os.path.join(self.workdir, url[len("unix://"):]))
        return url

    def _started(self, url: str) -> None:
        from rumpnet.rumpclient import RumpClient

        srv = _Server(url, self._abs_url(url))
        try:
            with RumpClient(srv.path) as c:
                srv.pid = int(c.server_info["server_pid"])
        except Exception:  # noqa: BLE001 -- still halted by url at cleanup
            pass
        self.servers.append(srv)

    def rump_server_start(self, sock: str, *libs: str) -> None:
        """net_common.sh ``rump_server_start sock [lib ...]``."""
        extra = "".join(f" -lrumpnet_{lib}" for lib in libs)
        self.check(f"-s exit:0 rump_server {BASIC_LIBS}{extra} {sock}")

    def rump_server_add_iface(self, sock: str, ifname: str, bus: str) -> None:
        """net_common.sh ``rump_server_add_iface sock ifname bus``."""
        e = {"RUMP_SERVER": sock}
        for cmd in (f"rump.ifconfig {ifname} create", f"rump.ifconfig {ifname} linkstr {bus}"):
            res = self.run(cmd, env=e)
            if res.status != 0 or res.stdout or res.stderr:
                raise AtfCheckFailed("rump_server_add_iface: " + res.describe())
        self.ifaces.append((sock, ifname))
        if bus not in self.buses:
            self.buses.append(bus)

    def rump_server_destroy_ifaces(self) -> None:
        """net_common.sh ``rump_server_destroy_ifaces``: destroy every interface added
        with rump_server_add_iface (must succeed). (NetBSD's also dumps ifconfig, netstat
        and arp output first, ignored; left out here to save a process per line.)"""
        for sock, ifname in self.ifaces:
            res = self.run(f"rump.ifconfig {ifname} destroy", env={"RUMP_SERVER": sock})
            if res.status != 0 or res.stdout or res.stderr:
                raise AtfCheckFailed("rump_server_destroy_ifaces: " + res.describe())
        self.ifaces.clear()

    def get_macaddr(self, sock: str, ifname: str) -> str:
        res = self.run(f"rump.ifconfig {ifname}", env={"RUMP_SERVER": sock})
        m = re.search(r"address: ([0-9a-f:]{17})", res.stdout)
        assert m, res.describe()
        return m.group(1)

    def get_linklocal_addr(self, sock: str, ifname: str) -> str:
        """net_common.sh ``get_linklocal_addr``: the interface's fe80:: address, without
        its zone and prefix length."""
        res = self.run(f"rump.ifconfig {ifname} inet6", env={"RUMP_SERVER": sock})
        for line in res.stdout.splitlines():
            if "fe80" in line:
                return line.split()[1].split("%")[0].split("/")[0]
        raise AtfCheckFailed("get_linklocal_addr: no link-local address\n" + res.describe())

    def extract_new_packets(self, bus: str) -> str:
        """net_common.sh ``extract_new_packets``: the frames on a shmif bus since the last
        call, as ``tcpdump -n -e`` prints them (the bus read with shmif_dumpbus)."""
        tcpdump = shutil.which("tcpdump") or "/usr/sbin/tcpdump"
        res = self.run(f"shmif_dumpbus -p - {bus} 2>/dev/null | {tcpdump} -n -e -r - 2>/dev/null", shell=True)
        seen = self.__dict__.setdefault("_seen_pkts", {})
        lines = res.stdout.splitlines()
        new = lines[seen.get(bus, 0):]
        seen[bus] = len(lines)
        return "".join(ln + "\n" for ln in new)

    # -- net_common.sh checks ----------------------------------------------------------
    def check_route(self, target: str, gw: str, flags: str = r".+", ifname: str = r".+") -> None:
        t = target.replace(".", r"\.")
        g = gw.replace(".", r"\.") if gw else ".+"
        self.check(f"-s exit:0 -e ignore -o 'match:^{t} +{g} +{flags} +- +- +.+ +{ifname}' rump.netstat -rn")

    def check_route_no_entry(self, target: str) -> None:
        t = target.replace(".", r"\.")
        self.check(f"-s exit:0 -e ignore -o 'not-match:^{t}' rump.netstat -rn")

    # -- cleanup -------------------------------------------------------------------------
    def dump(self) -> str:
        out = []
        for srv in self.servers:
            for cmd in ("rump.ifconfig -a", "rump.netstat -nr", "rump.arp -na"):
                try:
                    r = self.run(cmd, env={"RUMP_SERVER": srv.url}, timeout=5)
                    out.append(f"## {srv.url}: {cmd}\n{r.stdout}{r.stderr}")
                except AtfCheckFailed as e:
                    out.append(f"## {srv.url}: {cmd}: {e}")
        return "\n".join(out)

    def cleanup(self) -> None:
        for p in self.background:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except OSError:
                    pass
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass
            if p.stdout:
                p.stdout.close()
        # Halt: SIGTERM to a server whose pid we know (it halts its kernel and removes its
        # socket, as on rump.halt), rump.halt to any other; then SIGKILL what is left.
        for srv in self.servers:
            if srv.pid is not None and _alive(srv.pid):
                try:
                    os.kill(srv.pid, signal.SIGTERM)
                    continue
                except OSError:
                    pass
            try:
                self.run("rump.halt", env={"RUMP_SERVER": srv.url}, timeout=5)
            except AtfCheckFailed:
                pass
        deadline = time.monotonic() + 3
        for srv in self.servers:
            if srv.pid is None:
                continue
            while time.monotonic() < deadline and _alive(srv.pid):
                time.sleep(0.05)
            if _alive(srv.pid):
                try:
                    os.kill(srv.pid, signal.SIGKILL)
                except OSError:
                    pass
        self.servers.clear()
        # A server whose start was interrupted (the test stopped while rump_server waited
        # for it) is in no list, but works in our directory: stop it too.
        reap_cwd(self.workdir)
        shutil.rmtree(self.workdir, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (our double-forked servers are reparented, so rarely ours) counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return False


def _check_status(spec: str, status: int) -> list[str]:
    qual, _, val = spec.partition(":")
    if qual == "ignore":
        return []
    if qual == "exit":
        return [] if status == int(val) else [f"expected exit:{val}, got exit status {status}"]
    if qual == "not-exit":
        return [] if status != int(val) else [f"expected not-exit:{val}, got exit status {status}"]
    if qual == "signal":
        return [] if status < 0 else [f"expected a signal, got exit status {status}"]
    raise ValueError(f"atf_check: unknown status qualifier {spec}")


def _check_stream(name: str, spec: str, text: str, workdir: str) -> list[str]:
    action, _, arg = spec.partition(":")
    if action == "ignore":
        return []
    if action == "empty":
        return [] if text == "" else [f"{name} not empty"]
    if action == "not-empty":
        return [] if text != "" else [f"{name} empty"]
    if action == "match":
        return [] if re.search(arg, text, re.MULTILINE) else [f"{name} does not match {arg!r}"]
    if action == "not-match":
        return [] if not re.search(arg, text, re.MULTILINE) else [f"{name} matches {arg!r}"]
    if action == "inline":
        want = arg.encode().decode("unicode_escape")
        return [] if text == want else [f"{name} is not {want!r}"]
    if action == "save":
        with open(os.path.join(workdir, arg), "w") as f:
            f.write(text)
        return []
    if action == "file":
        with open(os.path.join(workdir, arg)) as f:
            want = f.read()
        return [] if text == want else [f"{name} differs from {arg}"]
    raise ValueError(f"atf_check: unknown output action {spec}")
