"""The rumpnet remote system call protocol (our rump_sp(7)): framing and value encoding.

A connection carries *frames*: a 4-byte big-endian length followed by that many bytes of
payload, at most :data:`MAX_FRAME`. A payload is one value in a small tagged binary
encoding (never pickle): ``None``, ``bool``, ``int`` (any size), ``float``, ``str``,
``bytes``, ``bytearray``, ``list``, ``tuple`` and ``dict`` with ``str`` keys, nested at
most :data:`MAX_DEPTH` deep. Decoding untrusted input raises :class:`ProtocolError` and
nothing else. See ``docs/RUMP_SP.md`` for the messages.
"""

from __future__ import annotations

import struct
from typing import Any

PROTO_NAME = "rumpnet-sp"
PROTO_VERSION = 1
MAX_FRAME = 8 * 1024 * 1024
MAX_DEPTH = 32
MAX_BIGINT = 64  # bytes of a big integer

_LEN = struct.Struct(">I")
_I64 = struct.Struct(">q")
_F64 = struct.Struct(">d")
_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1


class ProtocolError(Exception):
    """The peer broke the protocol (malformed, oversized or unknown message)."""


# -- values ------------------------------------------------------------------------------
def encode(value: Any) -> bytes:
    out = bytearray()
    _enc(value, out, 0)
    return bytes(out)


def _enc(v: Any, out: bytearray, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ProtocolError("value nested too deeply")
    if v is None:
        out += b"N"
    elif v is True:
        out += b"T"
    elif v is False:
        out += b"F"
    elif isinstance(v, int):
        v = int(v)
        if _INT64_MIN <= v <= _INT64_MAX:
            out += b"i"
            out += _I64.pack(v)
        else:
            raw = v.to_bytes((v.bit_length() + 8) // 8, "big", signed=True)
            if len(raw) > MAX_BIGINT:
                raise ProtocolError("integer too large")
            out += b"I"
            out += _LEN.pack(len(raw))
            out += raw
    elif isinstance(v, float):
        out += b"d"
        out += _F64.pack(v)
    elif isinstance(v, str):
        raw = v.encode("utf-8", "surrogateescape")
        out += b"s"
        out += _LEN.pack(len(raw))
        out += raw
    elif isinstance(v, bytearray):
        out += b"B"
        out += _LEN.pack(len(v))
        out += v
    elif isinstance(v, (bytes, memoryview)):
        raw = bytes(v)
        out += b"b"
        out += _LEN.pack(len(raw))
        out += raw
    elif isinstance(v, (list, tuple)):
        out += b"l" if isinstance(v, list) else b"t"
        out += _LEN.pack(len(v))
        for item in v:
            _enc(item, out, depth + 1)
    elif isinstance(v, dict):
        out += b"m"
        out += _LEN.pack(len(v))
        for key, item in v.items():
            if not isinstance(key, str):
                raise ProtocolError("dict keys must be str")
            _enc(key, out, depth + 1)
            _enc(item, out, depth + 1)
    else:
        raise ProtocolError(f"cannot encode {type(v).__name__}")


def decode(data: bytes | bytearray | memoryview) -> Any:
    """Decode one value; the whole of ``data`` must be that value."""
    buf = memoryview(data)
    try:
        value, pos = _dec(buf, 0, 0)
    except ProtocolError:
        raise
    except (struct.error, IndexError, ValueError, UnicodeDecodeError, RecursionError) as e:
        raise ProtocolError(f"malformed value: {e}") from None
    if pos != len(buf):
        raise ProtocolError("trailing bytes after value")
    return value


def _need(buf: memoryview, pos: int, n: int) -> None:
    if n < 0 or pos + n > len(buf):
        raise ProtocolError("truncated value")


def _length(buf: memoryview, pos: int) -> tuple[int, int]:
    _need(buf, pos, 4)
    return _LEN.unpack_from(buf, pos)[0], pos + 4


def _dec(buf: memoryview, pos: int, depth: int) -> tuple[Any, int]:
    if depth > MAX_DEPTH:
        raise ProtocolError("value nested too deeply")
    _need(buf, pos, 1)
    tag = buf[pos]
    pos += 1
    if tag == 0x4E:  # N
        return None, pos
    if tag == 0x54:  # T
        return True, pos
    if tag == 0x46:  # F
        return False, pos
    if tag == 0x69:  # i
        _need(buf, pos, 8)
        return _I64.unpack_from(buf, pos)[0], pos + 8
    if tag == 0x64:  # d
        _need(buf, pos, 8)
        return _F64.unpack_from(buf, pos)[0], pos + 8
    if tag in (0x49, 0x73, 0x62, 0x42):  # I s b B
        n, pos = _length(buf, pos)
        _need(buf, pos, n)
        raw = buf[pos:pos + n]
        pos += n
        if tag == 0x49:
            if n == 0 or n > MAX_BIGINT:
                raise ProtocolError("bad integer length")
            return int.from_bytes(raw, "big", signed=True), pos
        if tag == 0x73:
            return bytes(raw).decode("utf-8", "surrogateescape"), pos
        if tag == 0x62:
            return bytes(raw), pos
        return bytearray(raw), pos
    if tag in (0x6C, 0x74, 0x6D):  # l t m
        n, pos = _length(buf, pos)
        # Every item takes at least one byte: a count beyond the rest is a lie.
        if n > len(buf) - pos:
            raise ProtocolError("item count exceeds frame")
        if tag == 0x6D:
            d: dict[str, Any] = {}
            for _ in range(n):
                key, pos = _dec(buf, pos, depth + 1)
                if not isinstance(key, str):
                    raise ProtocolError("dict keys must be str")
                d[key], pos = _dec(buf, pos, depth + 1)
            return d, pos
        items = []
        for _ in range(n):
            item, pos = _dec(buf, pos, depth + 1)
            items.append(item)
        return (items if tag == 0x6C else tuple(items)), pos
    raise ProtocolError(f"unknown tag {tag:#x}")


# -- frames ------------------------------------------------------------------------------
def frame(value: Any) -> bytes:
    payload = encode(value)
    if len(payload) > MAX_FRAME:
        raise ProtocolError("message exceeds the maximum frame size")
    return _LEN.pack(len(payload)) + payload


def frame_length(header: bytes) -> int:
    """The payload length announced by a 4-byte header; ProtocolError when too big."""
    (n,) = _LEN.unpack(header)
    if n > MAX_FRAME:
        raise ProtocolError(f"frame of {n} bytes exceeds the maximum of {MAX_FRAME}")
    return int(n)


# -- URLs (rump_sp(7)) -------------------------------------------------------------------------
def parse_url(url: str) -> tuple[str, Any]:
    """``unix://path`` (``unix:///abs/path`` for absolute paths) or ``tcp://host:port/``.

    Returns ``("unix", path)`` or ``("tcp", (host, port))``; ValueError when malformed.
    """
    if url.startswith("unix://"):
        path = url[len("unix://"):]
        if not path:
            raise ValueError(f"empty unix socket path in {url!r}")
        return "unix", path
    if url.startswith("tcp://"):
        rest = url[len("tcp://"):].rstrip("/")
        if rest.startswith("["):
            host, _, port = rest[1:].partition("]:")
        else:
            host, _, port = rest.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"bad tcp url {url!r} (want tcp://ip.address:port/)")
        return "tcp", (host, int(port))
    raise ValueError(f"unsupported url {url!r} (want unix://path or tcp://ip.address:port/)")
