"""rumpnet: the net faction of a rump kernel in Python (interfaces, routes, Ethernet, ARP,
IPv4, ICMP, UDP, TCP), its links to the world (virtif, shmif, in-process wires, sockin),
the commands of NetBSD's ``tests/net``, the fault harness and rump_server.

Boot a kernel with ``rumpkern.rump_init()``; see README.md for a tour.
"""

from rumpkern._version import __version__

__all__ = ["__version__"]
