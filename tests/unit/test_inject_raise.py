"""scripts/inject_raise.py (docs/TESTING.md, "Do the tests see a broken input?"): every
site it knows still exists in the source, and a planted raise is code that compiles and
raises where it stands."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("inject_raise", ROOT / "scripts" / "inject_raise.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


TOOL = _tool()


@pytest.mark.parametrize("name", sorted(TOOL.SITES))
def test_each_site_is_found_once_and_the_planted_file_compiles(name: str) -> None:
    site = TOOL.SITES[name]
    text = (ROOT / site.path).read_text()
    assert [line.strip() for line in text.splitlines()].count(site.anchor) == 1, \
        f"{site.path}: the anchor of {name!r} moved; update scripts/inject_raise.py"
    planted = TOOL.plant(site, text)
    compile(planted, site.path, "exec")
    assert planted.count("# INJECTED") == len(site.code)


def test_the_planted_code_logs_the_test_and_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = TOOL.Site("x.py", "def f() -> None:", "f", indent=True)
    src = TOOL.plant(site, "def f() -> None:\n    return None\n")
    log = tmp_path / "log"
    monkeypatch.setenv("RUMP_INJECT_LOG", str(log))
    monkeypatch.setenv("PYTEST_CURRENT_TEST", "tests/unit/x.py::test_y (call)")
    ns: dict[str, object] = {}
    exec(compile(src, "x.py", "exec"), ns)
    with pytest.raises(RuntimeError, match="injected"):
        ns["f"]()  # type: ignore[operator]
    assert log.read_text() == f"{os.getpid()} tests/unit/x.py::test_y\n"


def test_a_missing_anchor_and_a_bad_site_name_are_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="anchor line not found"):
        TOOL.plant(TOOL.Site("x.py", "def g() -> None:", "g"), "def f() -> None:\n    pass\n")
    assert TOOL.main(["no-such-site"]) == 2
    assert "SITE: one of" in capsys.readouterr().err
