"""docs/ARCHITECTURE.md names only what exists (issue 14 part 9): every file it quotes is
in the repository, and every quoted code name (``Scheduler.run``, ``deadline_out()``,
``tcp_const``) is a name the code defines or uses. A renamed function or a deleted module
that the document still describes fails here, as ``sched.run_until`` once would have."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "ARCHITECTURE.md"
CODE_DIRS = ("rumpkern", "rumpnet", "bench", "examples", "tests", "scripts")

# Names the document quotes from other systems, to say what ours corresponds to.
FOREIGN = {
    "link_output": "lwIP's netif output hook, the side of the link drivers",
}

_PATH = re.compile(r"[\w./-]+\.(?:py|md|toml|c|h|txt|json|sh)|(?:rumpkern|rumpnet|tests|bench|docs|examples|scripts)/[\w./-]*")
_NAME = re.compile(r"([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)(\(\))?")


def _spans() -> set[str]:
    return {s.strip() for s in re.findall(r"`([^`\n]+)`", DOC.read_text())}


def _files() -> set[str]:
    """Every repository path and every file's name (a document may say ``session.py``)."""
    out: set[str] = set()
    for p in ROOT.rglob("*"):
        if ".venv" in p.parts or ".git" in p.parts or "build" in p.parts:
            continue
        rel = p.relative_to(ROOT).as_posix()
        out.update((rel, rel + "/", p.name))
    return out


def _identifiers() -> set[str]:
    words: set[str] = set()
    for d in CODE_DIRS:
        for p in (ROOT / d).rglob("*") if (ROOT / d).exists() else ():
            if p.suffix in (".py", ".c", ".h", ".sh", ".toml"):
                words.update(re.findall(r"\b[A-Za-z_]\w*\b", p.read_text(errors="replace")))
    return words


def test_every_quoted_file_exists() -> None:
    files = _files()
    missing = sorted(s for s in _spans() if _PATH.fullmatch(s) and s.rstrip("/") not in files and s not in files)
    assert not missing, f"ARCHITECTURE.md quotes files that do not exist: {missing}"


def test_every_quoted_code_name_exists() -> None:
    words = _identifiers()
    missing = []
    for s in sorted(_spans()):
        m = _NAME.fullmatch(s)
        if m is None or _PATH.fullmatch(s) or s in FOREIGN:
            continue
        if "." not in s and "_" not in s and not m.group(2):
            continue  # a plain word ("wire", "lo0") is prose, not a code name
        if any(part not in words for part in m.group(1).split(".")):
            missing.append(s)
    assert not missing, f"ARCHITECTURE.md names code that does not exist: {missing}"
