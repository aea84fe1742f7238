"""Runs the Python that packetdrill writes for a script's code snippets (``%{ }%``).

packetdrill (``--code_command``) writes the ``tcpi_*`` values it read with TCP_INFO and
the snippets into a file and runs it. Google's packetdrill names the states as Linux
does (``TCP_ESTABLISHED``); the FreeBSD suite's snippets use the ``TCPI_*`` names of the
packetdrill fork they were written for (github.com/nplab/packetdrill), defined here with
Linux's values, which is what our TCP_INFO reports (``linux_abi.tcp_info``).

Usage: ``python -m rumpnet.packetdrill.code FILE``.
"""

from __future__ import annotations

import runpy
import sys

TCPI_NAMES = {
    "TCPI_ESTABLISHED": 1, "TCPI_SYN_SENT": 2, "TCPI_SYN_RECEIVED": 3, "TCPI_FIN_WAIT_1": 4,
    "TCPI_FIN_WAIT_2": 5, "TCPI_TIME_WAIT": 6, "TCPI_CLOSED": 7, "TCPI_CLOSE_WAIT": 8,
    "TCPI_LAST_ACK": 9, "TCPI_LISTEN": 10, "TCPI_CLOSING": 11,
}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m rumpnet.packetdrill.code FILE", file=sys.stderr)
        return 2
    runpy.run_path(args[0], init_globals=dict(TCPI_NAMES), run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
