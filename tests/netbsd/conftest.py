"""The ``atf`` fixture: an :class:`atf.Atf` whose servers are halted (and killed if need
be) at teardown, whatever happened in the test.

SIGTERM in the middle of these tests stops pytest as Ctrl-C does, so this teardown runs
(tests/conftest.py's ``_sigterm_tears_down``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from atf import Atf  # noqa: E402


@pytest.fixture
def atf() -> Iterator[Atf]:
    a = Atf()
    try:
        yield a
    finally:
        a.cleanup()
