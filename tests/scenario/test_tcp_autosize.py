"""Receive buffer autosizing (``net.inet.tcp.recvbuf_auto``, FreeBSD/NetBSD's
tcp_autorcvbuf): on a path whose bandwidth-delay product exceeds the default buffer,
the receiver doubles its buffer (and so its window) until the window no longer limits
the transfer; a buffer the user set with SO_RCVBUF is left alone."""

from __future__ import annotations

import hashlib
import random
import socket
from typing import Any

import pytest
from test_tcp_transfer import PORT, _impair, _transfer  # type: ignore[import-not-found]

SIZE = 6_000_000


def _run(vnet, *, recv_auto: int = 1, send_auto: int = 1,
         rcvbuf: int | None = None) -> tuple[Any, Any, float]:
    """A sends SIZE bytes to B over a wire with 20 ms of delay each way (B's listener
    with SO_RCVBUF ``rcvbuf`` if given); returns B's and A's connections and the virtual
    seconds the transfer took."""
    a, b = vnet.pair(seeds=(3, 4))
    for k in (a, b):
        k.config.sysctl_set("net.inet.tcp.recvbuf_auto", recv_auto)
        k.config.sysctl_set("net.inet.tcp.sendbuf_auto", send_auto)
        _impair(k, delay=0.020)
    accepted: list[Any] = []
    real_socket, real_accept = b.rump_sys_socket, b.rump_sys_accept

    def socket_(*args: Any) -> int:
        fd = real_socket(*args)
        if rcvbuf is not None:
            b.rump_sys_setsockopt(fd, socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        return fd

    def accept_(*args: Any) -> Any:
        r = real_accept(*args)
        accepted.extend(cb for cb in b.inet.tcp.proto.conns.values() if cb.lport == PORT)
        accepted.extend(cb for cb in a.inet.tcp.proto.conns.values() if cb.fport == PORT)
        return r

    b.rump_sys_socket, b.rump_sys_accept = socket_, accept_
    data = random.Random(1).randbytes(SIZE)
    t0 = a.clock_now()
    got, _ = _transfer(a, b, data)
    took = a.clock_now() - t0
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    assert len(accepted) == 2
    return accepted[0], accepted[1], took


@pytest.mark.timeout(120)
def test_buffers_grow_on_a_long_fat_path(vnet_factory) -> None:
    rcv, snd, t_auto = _run(vnet_factory())
    rcv_fixed, _, t_rcv_fixed = _run(vnet_factory(), recv_auto=0)
    _, snd_fixed, t_snd_fixed = _run(vnet_factory(), send_auto=0)
    # 256 KiB rounded up to whole 1460-byte segments once the MSS is known (tcp_mss)
    default, top = 180 * 1460, 4 * 1024 * 1024
    assert rcv_fixed.rcvspace == default and snd_fixed.sndspace == default
    assert default < rcv.rcvspace <= top and default < snd.sndspace <= top
    # The window asked for in the SYN can cover what the buffer may grow to.
    assert 65535 << rcv.request_r_scale >= top
    # 256 KB per 40 ms round trip is 6.5 MB/s: either buffer left at that size limits
    # the transfer; both autosized, it is faster.
    assert t_auto < 0.7 * t_rcv_fixed and t_auto < 0.7 * t_snd_fixed, (t_auto, t_rcv_fixed, t_snd_fixed)


@pytest.mark.timeout(120)
def test_so_rcvbuf_turns_autosizing_off(vnet) -> None:
    cb, _, _ = _run(vnet, rcvbuf=128 * 1024)
    assert cb.rcvspace == 90 * 1460 and not cb.rcv_auto    # 128 KiB in whole segments
