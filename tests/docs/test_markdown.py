"""The code blocks of README.md and docs/*.md run as written (issue 16: docs that run).

Each fenced block is a test, named by file and line. What runs, by the fence's info string
(``LANG [OPTIONS]``):

* ``python``: run as a script with this interpreter, in a fresh temporary directory, with
  the Markdown file's own directory on the import path (``examples/services/README.md``'s
  blocks import ``services``);
* ``python pytest``: the block is a test module, run with ``python -m pytest``;
* ``sh`` / ``bash``: run with ``sh -e`` in a fresh temporary directory, the venv's
  programs (``rump_server``, ``rump.ifconfig``, ...) first on PATH, no ``RUMP_SERVER``;
* ``toml scenario``: built with ``Network.from_toml`` and closed; ``toml router``: checked
  with ``rumpnet.router.validate``; other ``toml``: parsed;
* ``LANG norun: REASON``: not run, and the reason is required (it shows as the skip reason);
* a fence without a language, or ``text``/``console``/any other language: not code, not run.

A block must carry its own set-up (imports, kernels, files); a process it leaves in its
directory is stopped afterwards, and the block fails if it left one.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from rumpnet.testing.procs import processes_in, reap_cwd

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "examples").glob("*/README.md"))]
RUNNABLE = {"python", "sh", "bash", "toml"}
TIMEOUT = 180
_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


@dataclass
class Block:
    path: Path
    line: int
    lang: str
    options: str
    code: str

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a Markdown file (CommonMark fences, indented or not)."""
    out: list[Block] = []
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        fence, indent = m.group("fence"), len(m.group("indent"))
        lang, _, options = m.group("info").strip().partition(" ")
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not (lines[j].strip().startswith(fence) and lines[j].strip().strip(fence[0]) == ""):
            body.append(lines[j][indent:] if lines[j][:indent].strip() == "" else lines[j])
            j += 1
        out.append(Block(path, i + 1, lang.lower(), options.strip(), "\n".join(body) + "\n"))
        i = j + 1
    return out


ALL = [b for p in DOCS for b in blocks(p)]


def test_every_doc_has_been_read() -> None:
    assert (ROOT / "README.md") in DOCS and len(DOCS) >= 5
    assert any(b.lang == "python" for b in ALL) and any(b.lang == "sh" for b in ALL)


@pytest.mark.parametrize("block", [b for b in ALL if b.lang in RUNNABLE], ids=lambda b: b.name)
def test_code_block_runs(block: Block, tmp_path: Path) -> None:
    if block.options.startswith("norun"):
        reason = block.options[len("norun"):].lstrip(":").strip()
        assert reason, f"{block.name}: 'norun' needs a reason ('norun: needs root')"
        pytest.skip(f"{block.name}: {reason}")
    if block.lang == "toml":
        _toml(block)
        return
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
               PYTHONPATH=os.pathsep.join((str(block.path.parent), str(ROOT))), PYTHONUNBUFFERED="1")
    env.pop("RUMP_SERVER", None)
    if block.lang == "python":
        script = tmp_path / "block.py"
        script.write_text(block.code)
        argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(script)] \
            if block.options == "pytest" else [sys.executable, str(script)]
    else:
        argv = ["/bin/sh", "-e", "-c", block.code]
    try:
        r = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT,
                           stdin=subprocess.DEVNULL)
    finally:
        # a server the block halted may take a moment to go; what is still there is stopped
        deadline = time.monotonic() + 5
        while processes_in(str(tmp_path)) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = reap_cwd(str(tmp_path))
    assert r.returncode == 0, f"{block.name} failed (exit {r.returncode}):\n{block.code}\n--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}"
    assert not left, f"{block.name} left processes running: {left}"


def _toml(block: Block) -> None:
    doc = tomllib.loads(block.code)
    if block.options == "scenario":
        from rumpnet.faults.network import Network

        Network.from_toml(block.code).close()
    elif block.options == "router":
        from rumpnet.router import validate

        validate(doc, ["wire", "shmif", "virt"])
