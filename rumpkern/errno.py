"""Errors as a BSD kernel reports them: ``OSError`` carrying an errno.

The errno values are Python's (``errno.ECONNREFUSED`` etc.), so callers compare with the
standard library's constants; the *meaning* is the BSD one (which call fails with which
errno follows NetBSD's kernel).
"""

from __future__ import annotations

import errno as _errno
import os


def kerr(code: int, msg: str | None = None) -> OSError:
    """An ``OSError`` for ``code`` with the system's message, or ``msg`` when given."""
    return OSError(code, msg if msg is not None else os.strerror(code))


# NetBSD names some errors differently from Linux; the values are Linux's.
EOPNOTSUPP = _errno.EOPNOTSUPP
ENOTSUP = getattr(_errno, "ENOTSUP", _errno.EOPNOTSUPP)
EWOULDBLOCK = _errno.EWOULDBLOCK
