"""Profiles: the sysctls that give a kernel the defaults a test suite assumes.

``freebsd`` (rump_packetdrill's default) makes the kernel start out as the FreeBSD
kernel that the FreeBSD TCP test suite (github.com/freebsd-net/tcp-testsuite) was
written against, for the settings the suite's scripts do not set themselves; each is
explained in docs/CONFORMANCE.md. ``none`` leaves the kernel's own defaults.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rumpnet.packetdrill.session import Session

# name -> value, applied in this order at the start of every script.
FREEBSD: dict[str, int | str] = {
    # FreeBSD sizes socket buffers from net.inet.tcp.{recv,send}space and grows them
    # later; a script checks SO_RCVBUF right after the handshake, before any growth.
    "net.inet.tcp.recvbuf_auto": 0,
    "net.inet.tcp.sendbuf_auto": 0,
    # SYN and SYN-ACK options packed as FreeBSD's tcp_addoptions packs them.
    "net.inet.tcp.compact_options": 1,
    # The window scale covers kern.ipc.maxsockbuf (kern.sbmax), as FreeBSD's.
    "net.inet.tcp.rcvscale_sbmax": 1,
    # FreeBSD ignores RSTs in TIME_WAIT (RFC 1337).
    "net.inet.tcp.rfc1337": 1,
    # FreeBSD rounds a scaled window up to the scale's granularity (RFC 7323 2.4).
    "net.inet.tcp.rcvwin_roundup": 1,
    # FreeBSD's compressed TIME-WAIT judges segments against the last window advertised.
    "net.inet.tcp.tw_last_adv_window": 1,
    # FreeBSD's tcp_mssopt takes the host cache's path MTU for the MSS option.
    "net.inet.tcp.mssopt_pmtu": 1,
    # FreeBSD's default (its sysctl defaults to 0): a SYN+FIN segment is processed, not
    # dropped; the suite's scripts that care set it, those for CLOSED rely on the default
    # (which gives the RST of RFC 9293 3.10.7.1).
    "net.inet.tcp.drop_synfin": 0,
}

PROFILES: dict[str, dict[str, int | str]] = {"freebsd": FREEBSD, "none": {}}

# FreeBSD's TCP-level socket options that Linux lacks, so Google's packetdrill (built on
# Linux) does not know their names. rump_packetdrill teaches it them with packetdrill's
# own --define; the value carries FREEBSD_TCPOPT so that the session knows it for a
# FreeBSD number (linux_abi.freebsd_tcp_option translates it to the kernel's).
FREEBSD_TCPOPT = 0x10000
FREEBSD_TCP_OPTIONS = {
    "TCP_NOOPT": 8, "TCP_KEEPINIT": 128, "TCP_RACK_PACE_MAX_SEG": 1054,
    "TCP_RACK_PACE_ALWAYS": 1055, "TCP_RACK_PACE_RATE_SS": 1109,
}


def packetdrill_defines(name: str) -> dict[str, str]:
    """``--define`` symbols a profile's scripts need: FreeBSD-only option names and IP
    TOS names, and the ICMP code names of the packetdrill fork the FreeBSD suite was
    written for (time exceeded codes 0 and 1, RFC 792); with any profile, the RFC 3493
    5.1 option name ``IPV6_UNICAST_HOPS``, which packetdrill's symbol table lacks (its
    Linux number, the one the kernel takes: the socket module's on a Linux host)."""
    common = {"IPV6_UNICAST_HOPS": str(socket.IPV6_UNICAST_HOPS)}
    if name != "freebsd":
        return common
    defines = {sym: hex(FREEBSD_TCPOPT | v) for sym, v in FREEBSD_TCP_OPTIONS.items()}
    defines.update(common)
    defines["ttl_exceeded_in_transit"] = "code_0"
    defines["frag_reass_exceeded"] = "code_1"
    # FreeBSD's <netinet/ip.h> names for the class selector code points, which Linux's
    # headers lack: the TOS byte of DSCP CSn is n << 5 (RFC 2474 4.2.2.1).
    defines.update({f"IPTOS_DSCP_CS{n}": hex(n << 5) for n in range(8)})
    return defines


def apply(session: Session, name: str) -> None:
    tree = session.k.sysctl_tree
    for path, value in PROFILES[name].items():
        tree.write(path, value)
