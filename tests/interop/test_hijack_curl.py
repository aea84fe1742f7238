"""A Linux ``curl`` in a namespace fetches a file from the standard library's
``http.server``, unmodified, running under hijack on a kernel bound to a tap (issue 8)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import shutil
import threading
from pathlib import Path

import pytest

from rumpkern import rump_init
from rumpnet.hijack import hijack
from rumpnet.testing.netns import (
    have_netns_privileges,
    ns_run,
    tap_peer,
)

_ok, _why = have_netns_privileges()
pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(not _ok, reason=_why),
    pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed"),
    pytest.mark.timeout(120),
]

OURS, LINUX = "10.79.1.2", "10.79.1.1"


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def test_curl_fetches_from_hijacked_http_server(tmp_path: Path) -> None:
    blob = os.urandom(2 * 1024 * 1024 + 17)
    (tmp_path / "blob.bin").write_bytes(blob)
    k = rump_init(hostname="hijacked")
    server: http.server.ThreadingHTTPServer | None = None
    t: threading.Thread | None = None
    try:
        with tap_peer(k, f"{OURS}/24", f"{LINUX}/24", prefix="rhj") as (ns, _tap), hijack(k):
            try:
                # Unmodified standard-library server: its socket is a kernel socket now.
                handler = functools.partial(QuietHandler, directory=str(tmp_path))
                server = http.server.ThreadingHTTPServer((OURS, 8080), handler)
                t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
                t.start()
                out = tmp_path / "fetched.bin"
                r = ns_run(ns, ["curl", "-sS", "--max-time", "60", "-o", str(out), f"http://{OURS}:8080/blob.bin"],
                           timeout=90)
                assert r.returncode == 0, r.stderr
                assert hashlib.sha256(out.read_bytes()).hexdigest() == hashlib.sha256(blob).hexdigest()
                r = ns_run(ns, ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"http://{OURS}:8080/nope"],
                           timeout=30)
                assert r.stdout == "404"
            finally:
                if server is not None:
                    server.shutdown()
                    server.server_close()
                if t is not None:
                    t.join(5)
    finally:
        k.halt()
