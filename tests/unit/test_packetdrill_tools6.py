"""rump_packetdrill's kernel tools (sockstat, tcpdrop) on the session kernel's IPv6 TCP,
and the session's IPv6 set-up, without packetdrill: a connection over ::1 made by
system calls on the session's virtual clock."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from rumpnet.packetdrill.session import Session, SessionOptions
from rumpnet.packetdrill.wire import Reply


@pytest.fixture
def session() -> Iterator[Session]:
    s = Session(SessionOptions(), lambda _reply: None)
    try:
        yield s
    finally:
        s.close()


def _connect6(s: Session, port: int) -> int:
    """A connection over ::1 to ``port``; the client's port."""
    async def run() -> Reply:
        lfd = await s.sys("socket", socket.AF_INET6, socket.SOCK_STREAM, 0)
        await s.sys("bind", lfd, ("::1", port, 0, 0))
        await s.sys("listen", lfd, 5)
        cfd = await s.sys("socket", socket.AF_INET6, socket.SOCK_STREAM, 0)
        await s.sys("connect", cfd, ("::1", port, 0, 0))
        await s.sys("accept", lfd)
        name = await s.sys("getsockname", cfd)
        return Reply(ret=name[1])
    task = s.start(run())
    s.run_until(task.done, "an IPv6 connection over ::1", limit=5)
    reply = task.result()
    assert isinstance(reply, Reply)
    return reply.ret


def test_tun0_has_the_ipv6_address_at_once(session: Session) -> None:
    """No DAD on tun0 (as on Linux's NOARP tun): the address is not tentative at time 0,
    and nothing but MLD reports (no Neighbor Solicitation) has left through tun0."""
    assert "fd3d:fa7b:d17d::2 prefixlen 48\n" in session.k.ifconfig("tun0")
    next_headers = [pkt[6] for _, pkt in session.outq if pkt[0] >> 4 == 6]
    assert 58 not in next_headers          # ICMPv6 (a DAD probe) would be 58


def test_sockstat_lists_ipv6_connections_by_family(session: Session) -> None:
    cport = _connect6(session, 7000)
    out, _ = session.tools.sockstat(["-6", "-P", "tcp", "-s"])
    lines = [ln for ln in out.splitlines()[1:] if "ESTABLISHED" in ln]
    assert len(lines) == 2 and all(" tcp6 " in ln for ln in lines)
    assert any("::1:7000 " in ln and f"::1:{cport}" in ln for ln in lines)
    out4, _ = session.tools.sockstat(["-4", "-P", "tcp"])
    assert "tcp6" not in out4


def test_tcpdrop_takes_ipv6_addresses_in_any_spelling(session: Session) -> None:
    cport = _connect6(session, 7001)
    out, _ = session.tools.tcpdrop(["0:0::1", str(cport), "::0:1", "7001"])
    assert out == f"::1 {cport} ::1 7001: dropped\n"
    listed, _ = session.tools.sockstat(["-6", "-s"])
    assert sum("ESTABLISHED" in ln for ln in listed.splitlines()) == 1   # the server's end
