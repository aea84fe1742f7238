#!/usr/bin/env python3
"""The virtual IP router example: a thin wrapper around ``rump_router``
(``rumpnet.router``), which ``pip install`` puts on PATH.

    python examples/router/router.py --demo
    python examples/router/router.py --demo --inet6    # the same over IPv6
    python examples/router/router.py --config router.toml [--live] [--server unix:///tmp/r.sock]
"""

from __future__ import annotations

import sys

from rumpnet.router.main import main

if __name__ == "__main__":
    sys.exit(main())
