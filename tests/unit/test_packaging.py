"""Packaging (issue 16): one version everywhere, typed for users' mypy, a license the
metadata states as SPDX, the router installed as a program."""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import rumpkern
import rumpnet

ROOT = Path(__file__).resolve().parents[2]


def test_one_version_everywhere() -> None:
    assert rumpnet.__version__ == rumpkern.__version__ == importlib.metadata.version("rumpnet")
    r = subprocess.run([str(Path(sys.executable).parent / "rump_router"), "--version"], capture_output=True, text=True,
                       timeout=60)
    assert r.stdout.strip() == f"rump_router (rumpnet) {rumpnet.__version__}"


def test_license_and_metadata() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "BSD-2-Clause" and "version" in project["dynamic"]
    assert (ROOT / "LICENSE").read_text().startswith("BSD 2-Clause License")
    assert importlib.metadata.metadata("rumpnet")["License-Expression"] == "BSD-2-Clause"
    assert (ROOT / "CHANGELOG.md").read_text().startswith("# Changelog")
    assert project["scripts"]["rump_router"] == "rumpnet.router.main:main"


def test_typed_for_the_users_mypy(tmp_path: Path) -> None:
    mypy = shutil.which("mypy", path=str(Path(sys.executable).parent))
    if mypy is None:
        pytest.skip("mypy is not installed (the dev extra)")
    assert (ROOT / "rumpkern" / "py.typed").exists() and (ROOT / "rumpnet" / "py.typed").exists()
    user = tmp_path / "user.py"
    user.write_text('from rumpkern import rump_init\nk = rump_init(clock="virtual")\nwrong: int = k.ifconfig("-a")\n')
    r = subprocess.run([mypy, "--no-incremental", "--cache-dir", str(tmp_path / "cache"), str(user)],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    # the package's annotations reach the user's code: str is not int
    assert r.returncode == 1 and 'expression has type "str", variable has type "int"' in r.stdout, r.stdout
