"""The rumpdrill wire protocol (the Python side of ``rumpdrill.h``).

Every call from packetdrill's process is one request and one reply on a stream socket:
``u32 len, u16 op, u16 flags, i64 arg[6]`` + payload, answered by ``u32 len, i32 err,
i64 ret, i64 aux`` + payload (little-endian). ``err`` is 0, an errno value,
:data:`ERR_FATAL` (the payload says why the script cannot go on) or :data:`ERR_PENDING`
(a call from packetdrill's system-call thread sleeps; its reply comes on the completion
socket). Every reply carries the kernel clock at which the call completed.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from enum import IntEnum

PROTO_VERSION = 1
FD_BASE = 1000

REQ = struct.Struct("<IHH6q")
REP = struct.Struct("<Iiqqq")
ERR_FATAL = -1
ERR_PENDING = -2
F_ASYNC = 0x1
F_ABSOLUTE = 0x2


class Op(IntEnum):
    HELLO = 1
    FREE = 2
    SOCKET = 3
    BIND = 4
    LISTEN = 5
    ACCEPT = 6
    CONNECT = 7
    RECV = 8
    SEND = 9
    FCNTL = 10
    IOCTL = 11
    CLOSE = 12
    SHUTDOWN = 13
    GETSOCKOPT = 14
    SETSOCKOPT = 15
    POLL = 16
    NETDEV_SEND = 17
    NETDEV_RECEIVE = 18
    USLEEP = 19
    GETTIMEOFDAY = 20
    INFO = 21
    COMMAND = 22


@dataclass(slots=True)
class Request:
    op: int
    flags: int
    args: tuple[int, ...]
    payload: bytes

    @property
    def from_syscall_thread(self) -> bool:
        return bool(self.flags & F_ASYNC)


@dataclass(slots=True)
class Reply:
    ret: int = 0
    err: int = 0
    aux: int = 0
    payload: bytes = b""
    now: int = 0          # the kernel clock (microseconds) when the call completed

    def encode(self) -> bytes:
        return REP.pack(REP.size + len(self.payload), self.err, self.ret, self.aux, self.now) + self.payload


class SessionClosed(Exception):
    """The packetdrill side closed its socket (it exited, or died)."""


def _read_exact(fd: int, n: int) -> bytes:
    chunks = []
    while n > 0:
        b = os.read(fd, n)
        if not b:
            raise SessionClosed
        chunks.append(b)
        n -= len(b)
    return b"".join(chunks)


def read_request(fd: int) -> Request:
    head = _read_exact(fd, REQ.size)
    length, op, flags, *args = REQ.unpack(head)
    if length < REQ.size:
        raise SessionClosed
    payload = _read_exact(fd, length - REQ.size) if length > REQ.size else b""
    return Request(op, flags, tuple(args), payload)


def write_reply(fd: int, reply: Reply) -> None:
    data = memoryview(reply.encode())
    while data:
        n = os.write(fd, data)
        data = data[n:]


def fatal(message: str) -> Reply:
    return Reply(ret=-1, err=ERR_FATAL, payload=message.encode())
