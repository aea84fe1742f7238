"""Strict mode end to end: a protocol input that raises fails the test that drove it (in
the call, or through the pytest plugin when no call raised it), and a rump_server started
by a test reports its internal errors to its client and in the strict log."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

from rumpkern.strict import KernelInternalError, read_log
from rumpnet.testing.vnet import VNet

pytest_plugins = ["pytester"]

IPPROTO_PLANTED = 253  # RFC 3692 experimental: a protocol with a planted bug


def _planted_bug(*_args: object) -> None:
    raise ZeroDivisionError("planted protocol bug")


def test_protocol_input_error_fails_the_next_call(vnet: VNet) -> None:
    a, b = vnet.pair()
    b.inet.inetsw[IPPROTO_PLANTED] = _planted_bug  # the protocol switch is data
    fd = a.rump_sys_socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_PLANTED)
    a.rump_sys_sendto(fd, b"x" * 8, 0, ("10.0.0.2", 0))
    with pytest.raises(KernelInternalError) as ei:
        a.run_for(1.0)
    assert isinstance(ei.value.__cause__, ZeroDivisionError)
    assert b.inet.ipstat.ips_delivered == 1


INI = ("[pytest]\nasyncio_default_fixture_loop_scope = function\n"
       "filterwarnings = error::pytest.PytestUnhandledThreadExceptionWarning\n")  # as pyproject.toml

INNER = """
import asyncio
import threading
import pytest
from rumpkern.sched import Scheduler
from rumpkern.strict import KernelInternalError


def planted():
    raise ZeroDivisionError("planted")


made = []


@pytest.fixture(autouse=True)
def close_loops():
    yield
    for s in made:
        s.loop.close()


def sched_with_error():
    s = Scheduler(virtual=True)
    made.append(s)
    s.loop.call_soon(planted)
    s.loop.run_until_complete(asyncio.sleep(0))  # the loop ran the bug; no call was made
    return s


def test_nobody_raised_it():
    sched_with_error()


def test_skipped_after_it():
    sched_with_error()
    pytest.skip("a skip must not hide it")


def test_raised_in_the_call():
    sched_with_error().run_for(1)


def test_raised_in_a_thread_of_the_test():
    t = threading.Thread(target=sched_with_error().run_for, args=(1,))
    t.start()
    t.join()


def test_expected_and_caught():
    with pytest.raises(KernelInternalError):
        sched_with_error().run_for(1)
"""


def test_plugin_fails_the_test_that_caused_it(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(test_inner=INNER)
    res = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-rA")
    res.assert_outcomes(failed=4, passed=1)
    res.stdout.fnmatch_lines(["*FAILED*test_nobody_raised_it*rumpnet kernel intern*"])
    res.stdout.fnmatch_lines(["*FAILED*test_skipped_after_it*rumpnet kernel intern*"])
    res.stdout.fnmatch_lines(["*FAILED*test_raised_in_the_call*KernelInterna*"])
    res.stdout.fnmatch_lines(["*FAILED*test_raised_in_a_thread_of_the_test*"])
    assert "ZeroDivisionError: planted" in res.stdout.str()


def test_plugin_strict_can_be_turned_off(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(test_inner=INNER)
    res = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--rump-strict=0", "-k", "nobody")
    res.assert_outcomes(passed=1)
    assert os.environ["RUMP_STRICT"] == "1"  # this session's setting is back


# A rump_server whose ICMP input has a planted bug (a stand-in for a real one).
SERVER = textwrap.dedent("""
    import sys
    from rumpnet.netinet import ip_icmp
    def planted(self, *args):
        raise ZeroDivisionError("planted ICMP bug")
    ip_icmp.Icmp.input = planted
    from rumpnet.server.rump_server import main
    sys.exit(main(sys.argv[1:]))
""")


def test_rump_server_reports_internal_errors() -> None:
    from rumpnet.rumpclient import RumpClient

    d = tempfile.mkdtemp(prefix="rs", dir="/tmp")
    path, log = os.path.join(d, "k.sock"), os.path.join(d, "strict.log")
    env = dict(os.environ, RUMP_STRICT="1", RUMP_STRICT_LOG=log)  # its own log, not the session's
    p = subprocess.Popen([sys.executable, "-c", SERVER, "-s", "-lrumpnet", "-lrumpnet_net",
                          "-lrumpnet_netinet", "unix://" + path], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 15
        while not os.path.exists(path) and time.monotonic() < deadline and p.poll() is None:
            time.sleep(0.02)
        with RumpClient("unix://" + path) as c:
            with pytest.raises(KernelInternalError) as ei:
                c.ping("-c", "1", "-w", "2", "127.0.0.1")  # our echo request meets the bug
            assert "ZeroDivisionError: planted ICMP bug" in str(ei.value)
            records, _ = read_log(log)
            assert records and "planted ICMP bug" in records[0]["traceback"]
            assert records[0]["pid"] == p.pid
            c.call("halt")
        out, _ = p.communicate(timeout=15)
        assert p.returncode == 70, out  # EX_SOFTWARE: it had internal errors
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
        shutil.rmtree(d, ignore_errors=True)
