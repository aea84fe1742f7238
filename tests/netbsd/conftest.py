"""The ``atf`` fixture: an :class:`atf.Atf` whose servers are halted (and killed if need
be) at teardown, whatever happened in the test.

SIGTERM (what CI timeouts, ``timeout`` and ``kill`` send) would end pytest at once, before
any teardown, and leave the detached ``rump_server`` daemons running and their work
directories in /tmp. While these tests run, SIGTERM is turned into an interruption as
Ctrl-C is: pytest stops, tears the fixtures down (halting the servers) and exits.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from atf import Atf  # noqa: E402


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the test was so that teardown runs."""


@pytest.fixture(autouse=True, scope="session")
def _sigterm_tears_down() -> Iterator[None]:
    def on_sigterm(signum: int, frame: object) -> None:
        raise Terminated("SIGTERM")

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.fixture
def atf() -> Iterator[Atf]:
    a = Atf()
    try:
        yield a
    finally:
        a.cleanup()
