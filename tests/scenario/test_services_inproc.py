"""``examples/services``' start_services(k) on in-process kernels: no tap, no root (the
interop tests serve the same services to Linux over a tap)."""

from __future__ import annotations

import os
import sys

from rumpnet.socket import create_connection

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                                "examples", "services"))
from services import chargen_bytes, start_services  # noqa: E402


def test_start_services_in_process(vnet_real) -> None:
    a, b = vnet_real.pair("10.96.1.1/24", "10.96.1.2/24")
    vnet_real.sched.start_background()
    h = start_services(b)
    try:
        s = create_connection(a, ("10.96.1.2", 19), timeout=10)
        s.sendall(b"20000\n")
        data = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
        s.close()
        assert data == chargen_bytes(20000)
    finally:
        h.close()
