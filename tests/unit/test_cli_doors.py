"""Every program answers --help, --version, a bad option and no arguments as a newcomer
needs (issue 16): usage and exit 0 for --help, the version for --version, the usage and
exit 2 for a bad option, and never a traceback, all without a server ($RUMP_SERVER unset).

The programs are read from pyproject.toml's [project.scripts], so one added later (say,
rump_packetdrill) is covered as soon as it is declared.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from rumpnet import __version__

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SCRIPTS = sorted(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"])
MODULES = {"python -m rumpnet.faults.http_api": [sys.executable, "-m", "rumpnet.faults.http_api"]}
PROGRAMS = {name: [str(BIN / name)] for name in SCRIPTS} | MODULES
# With no arguments: a usage error (2), or for tools that then act on the server (1:
# "rumpclient init failed: RUMP_SERVER is not set").
NEEDS_SERVER = {n for n in SCRIPTS if n.startswith("rump.")}


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "RUMP_SERVER"}
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)


def test_the_programs_are_all_here() -> None:
    assert {"rump_server", "rump_allserver", "rump.ifconfig", "rump.tc", "rump.halt", "shmif_dumpbus",
            "rumphijack", "rump_router"} <= set(SCRIPTS)


@pytest.mark.parametrize("name", PROGRAMS)
def test_help_prints_the_usage_and_exits_0(name: str) -> None:
    r = run([*PROGRAMS[name], "--help"])
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "usage" in r.stdout.lower() and name.split()[-1].rsplit(".", 1)[-1] in r.stdout, r.stdout
    assert "Traceback" not in r.stdout + r.stderr


@pytest.mark.parametrize("name", PROGRAMS)
def test_version(name: str) -> None:
    r = run([*PROGRAMS[name], "--version"])
    assert r.returncode == 0 and __version__ in r.stdout and "rumpnet" in r.stdout, (r.stdout, r.stderr)


@pytest.mark.parametrize("name", PROGRAMS)
def test_a_bad_option_prints_the_usage_and_exits_2(name: str) -> None:
    r = run([*PROGRAMS[name], "-Z"])
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "usage" in r.stderr.lower() and "Traceback" not in r.stderr, r.stderr
    assert "-Z" in r.stderr or "-- Z" in r.stderr  # it says which option


@pytest.mark.parametrize("name", PROGRAMS)
def test_no_arguments_is_usage_or_a_clear_error(name: str) -> None:
    r = run(PROGRAMS[name])
    assert "Traceback" not in r.stdout + r.stderr
    if name in NEEDS_SERVER:
        assert r.returncode == 1 and "RUMP_SERVER is not set" in r.stderr, r.stderr
    else:
        assert r.returncode == 2 and "usage" in r.stderr.lower(), (r.returncode, r.stderr)


def test_getopt_says_it_the_netbsd_way_naming_the_tool_as_invoked() -> None:
    r = run([str(BIN / "rump.ifconfig"), "-Z"])
    assert r.stderr.splitlines()[:2] == ["rump.ifconfig: unknown option -- Z",
                                         "usage: rump.ifconfig [-h] [-v] [-z] [-L] [-C] [-l [-b] [-d] [-s] [-u]]"]
    r = run([str(BIN / "rump.ping"), "-c"])
    assert r.stderr.startswith("rump.ping: option requires an argument -- c\nusage: rump.ping ")
    r = run([str(BIN / "rump.tc"), "help"])  # iproute2's spelling of help
    assert r.returncode == 0 and r.stdout.startswith("Usage: rump.tc ")


def test_a_server_that_is_not_there_is_named(tmp_path: Path) -> None:
    url = f"unix://{tmp_path}/nobody.sock"
    env = dict(os.environ, RUMP_SERVER=url)
    for tool, args in (("rump.ifconfig", ["-a"]), ("rump.halt", [])):
        r = subprocess.run([str(BIN / tool), *args], capture_output=True, text=True, timeout=60, env=env)
        assert r.returncode == 1 and f"{url}: No such file or directory" in r.stderr, (tool, r.stderr)
    r = subprocess.run([str(BIN / "rumphijack"), "--server", url, "-c", "pass"], capture_output=True, text=True,
                       timeout=60, env=env)
    assert r.returncode == 1 and url in r.stderr and "Traceback" not in r.stderr, r.stderr
