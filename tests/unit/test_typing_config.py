"""Typed seams (issue 14 part 2): rumpkern and rumpnet are checked by ``mypy --strict``
through the project's own configuration, and the lint target runs it, so that a change
that loses a type fails ``make lint`` rather than only a manual ``mypy --strict``."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_mypy_config_is_strict_on_the_library() -> None:
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert cfg.get("strict") is True
    assert {"rumpkern", "rumpnet"} <= set(cfg.get("files", []))
    # strict's flags must not be switched off again globally
    for flag in ("warn_unused_ignores", "disallow_untyped_defs", "disallow_any_generics",
                 "warn_return_any", "no_implicit_reexport"):
        assert cfg.get(flag, True) is True, flag


def test_lint_runs_the_type_check() -> None:
    make = (ROOT / "Makefile").read_text()
    lint = re.search(r"^lint:(.*)$", make, re.M)
    typecheck = re.search(r"^typecheck:.*\n((?:\t.*\n)+)", make, re.M)
    assert lint is not None and "typecheck" in lint.group(1).split()
    assert typecheck is not None and re.search(r"\$\(BIN\)/mypy\s*$", typecheck.group(1), re.M)
