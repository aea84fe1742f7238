"""Objects shaped like the standard library's take its documentation.

``RumpSocket`` and ``RemoteSocket`` behave as ``socket.socket`` does, the stream classes as
asyncio's; a method of theirs without a docstring of its own gets the standard one's, under
a line that says so, so that help() and the API reference say what the method does.
"""

from __future__ import annotations

import inspect
from typing import Any


def borrow_docs(cls: Any, model: Any) -> Any:
    """Give each public method and property of ``cls`` that has no docstring the one of the
    same name on ``model``; returns ``cls`` (usable as a decorator)."""
    for name, member in vars(cls).items():
        if name.startswith("_"):
            continue
        target = member.fget if isinstance(member, property) else member
        if not (inspect.isfunction(target) or isinstance(member, property)) or inspect.getdoc(member):
            continue
        theirs = inspect.getdoc(getattr(model, name, None))
        if not theirs:
            continue
        doc = f"As ``{model.__module__}.{model.__qualname__}.{name}``:\n\n{theirs}"
        if isinstance(member, property):
            setattr(cls, name, property(member.fget, member.fset, member.fdel, doc))
        else:
            target.__doc__ = doc
    return cls


def borrow(model: Any) -> Any:
    """``@borrow(socket.socket)``: :func:`borrow_docs` as a class decorator."""
    return lambda cls: borrow_docs(cls, model)
