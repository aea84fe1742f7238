"""docs/ARCHITECTURE.md names only what exists (issue 14 part 9): every file it quotes is
in the repository, and every quoted code name (``Scheduler.run``, ``deadline_out()``,
``tcp_const``) is a name the code defines or uses. A renamed function or a deleted module
that the document still describes fails here, as ``sched.run_until`` once would have."""

from __future__ import annotations

import ast
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


# Variable names the document uses for instances of a class: ``sched.now()``, ``k.inet6``.
INSTANCES = {"sched": ("Scheduler",), "k": ("Kernel", "NetKernel")}
_ATTR = re.compile(r"([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)(\(.*\))?")   # a.b, a.b.c(args)


def _class_attrs() -> dict[str, set[str]]:
    """Each class of rumpkern and rumpnet: its methods, class-level names and the
    ``self.x`` it assigns, with those of its bases (by name); classes of one name merged."""
    own: dict[str, set[str]] = {}
    bases: dict[str, set[str]] = {}
    for d in ("rumpkern", "rumpnet"):
        for p in (ROOT / d).rglob("*.py"):
            for c in ast.walk(ast.parse(p.read_text())):
                if not isinstance(c, ast.ClassDef):
                    continue
                attrs = own.setdefault(c.name, set())
                bases.setdefault(c.name, set()).update(
                    b.id if isinstance(b, ast.Name) else b.attr if isinstance(b, ast.Attribute) else "" for b in c.bases)
                for n in ast.walk(c):
                    if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                        attrs.add(n.name)
                    elif isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store) and \
                            isinstance(n.value, ast.Name) and n.value.id == "self":
                        attrs.add(n.attr)
                    elif isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name):
                        attrs.add(n.target.id)
                    elif isinstance(n, ast.Assign):
                        attrs.update(t.id for t in n.targets if isinstance(t, ast.Name))

    def closure(name: str, seen: frozenset[str] = frozenset()) -> set[str]:
        if name in seen or name not in own:
            return set()
        out = set(own[name])
        for b in bases[name]:
            out |= closure(b, seen | {name})
        return out

    return {name: closure(name) for name in own}


def test_every_quoted_attribute_belongs_to_its_class() -> None:
    """``Class.attr`` (and ``sched.attr``, ``k.attr``): the class, or one of its bases,
    defines ``attr`` -- a word that exists elsewhere is not enough (``sched.run_until``
    passed the check above as long as a test's docstring said it)."""
    classes = _class_attrs()
    wrong = []
    for s in sorted(_spans()):
        m = _ATTR.fullmatch(s)
        if m is None or _PATH.fullmatch(s):
            continue
        owner, attr = m.group(1).split(".")[:2]
        kinds = INSTANCES.get(owner, (owner,) if owner in classes else ())
        if kinds and not any(attr in classes.get(kind, set()) for kind in kinds):
            wrong.append(s)
    assert not wrong, f"ARCHITECTURE.md names attributes their classes do not have: {wrong}"
