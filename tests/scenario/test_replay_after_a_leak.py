"""Replay holds whatever an earlier test left behind (issue 14 part 7), in one file.

A test that boots a kernel on the thread's default virtual scheduler and never halts it
kept that scheduler from ever being spent: every later ``rump_init(clock="virtual")``
joined it, with its clock moved on by every test since and its boot count (which seeds
each kernel's rng) grown, so the replay scenario of ``test_replay_independent.py`` gave
other frames when it ran after ``tests/unit`` (``test_kern_core.py`` left a dozen). The
rumpnet pytest plugin now halts what a test leaves running there, with a
``KernelLeftRunningWarning``. The inner run below is the order that failed: the scenario,
a test that leaves a kernel running and moves the clock on, the scenario again.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

INI = ("[pytest]\nasyncio_default_fixture_loop_scope = function\n"
       "filterwarnings = error::pytest.PytestUnhandledThreadExceptionWarning\n")  # as pyproject.toml

REPLAY = Path(__file__).with_name("test_replay_independent.py")

INNER = f"""
import importlib.util
import socket
from rumpkern import rump_init

spec = importlib.util.spec_from_file_location("replay", {str(REPLAY)!r})
replay = importlib.util.module_from_spec(spec)
spec.loader.exec_module(replay)
FIRST = {{}}


def test_1_scenario_first(tmp_path):
    FIRST.update(replay.scenario(tmp_path / "first.pcap"))


def test_2_leaves_a_kernel_running():
    k = rump_init(clock="virtual", seed=3)
    k.ifconfig("wire0", "create")
    k.ifconfig("wire0", "linkstr", "leak-lan")
    k.ifconfig("wire0", "inet", "10.9.0.1/24", "up")
    fd = k.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    k.rump_sys_sendto(fd, b"x", 0, ("10.9.0.9", 9))   # ARP retries: timers pending
    k.run_for(2.5)                                   # the clock moves on; no halt


def test_3_scenario_again(tmp_path):
    assert replay.scenario(tmp_path / "again.pcap") == FIRST
"""


def test_replay_after_a_test_left_a_kernel_running(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(test_inner=INNER)
    res = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rA", "-W", "default")
    res.assert_outcomes(passed=3, warnings=1)
    res.stdout.fnmatch_lines(["*KernelLeftRunningWarning: 1 virtual-clock kernel(s) left running*"])
