"""The chargen pattern (a copy of examples/services/services.py's, for the peer venvs)."""

_PRINTABLE = bytes(range(32, 127))
CYCLE = b"".join((_PRINTABLE[i:] + _PRINTABLE[:i])[:72] + b"\r\n" for i in range(95))
BLOCK = CYCLE * (256 * 1024 // len(CYCLE) + 2)
