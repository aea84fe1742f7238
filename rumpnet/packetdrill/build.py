"""Finding packetdrill and building the adapter, once, into a cache directory.

* packetdrill: ``$PACKETDRILL`` if set; else built from ``$PACKETDRILL_SRC`` (default:
  ``../shared/conformance/packetdrill`` beside the repository) with its own
  ``./configure && make packetdrill`` (gcc, bison, flex: ``scripts/install-system-deps.sh``
  installs them), in a copy of the sources under the cache, keyed by their contents.
* ``librumpdrill.so`` and ``bin/{sysctl,sockstat,tcpdrop}`` from this package's C files,
  keyed by their contents and the Python they start.

The cache is ``$RUMP_PACKETDRILL_CACHE``, else ``$XDG_CACHE_HOME/rumpnet/packetdrill``
(``~/.cache/...``). Builds take a lock, so parallel runs build once.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DEFAULT_SRC = REPO.parent / "shared" / "conformance" / "packetdrill"
C_SOURCES = ("rumpdrill.c", "rumpdrill_tool.c", "rumpdrill.h")
TOOLS = ("sysctl", "sockstat", "tcpdrop")


class BuildError(RuntimeError):
    """packetdrill or the adapter could not be found or built (the message says why)."""


@dataclass(frozen=True)
class Toolchain:
    packetdrill: Path
    shim: Path           # librumpdrill.so; bin/ beside it holds the kernel tools


def cache_dir() -> Path:
    env = os.environ.get("RUMP_PACKETDRILL_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rumpnet" / "packetdrill"


def _digest(paths: list[Path], extra: str = "") -> str:
    h = hashlib.sha256(extra.encode())
    for p in sorted(paths):
        h.update(str(p.name).encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


class _Lock:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(path, "w")  # noqa: SIM115 - held for the with block

    def __enter__(self) -> None:
        fcntl.flock(self._f, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self._f, fcntl.LOCK_UN)
        self._f.close()


def _run(cmd: list[str], cwd: Path, what: str) -> None:
    r = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        tail = "\n".join(r.stdout.splitlines()[-15:])
        raise BuildError(f"{what} failed ({' '.join(cmd)}):\n{tail}")


def _need(tool: str) -> None:
    if shutil.which(tool) is None:
        raise BuildError(f"{tool} is not installed (scripts/install-system-deps.sh installs gcc, bison and flex)")


def _cached(out: Path, product: str, build: Callable[[Path], None]) -> Path:
    """``out/product``, built by ``build(tmpdir)`` the first time (under the lock, in a
    temporary directory renamed to ``out`` when complete)."""
    path = out / product
    if path.exists():
        return path
    with _Lock(cache_dir() / "build.lock"):
        if path.exists():
            return path
        tmp = Path(tempfile.mkdtemp(prefix=out.name + "-", dir=cache_dir()))
        try:
            build(tmp)
            if out.exists():
                shutil.rmtree(out)
            tmp.rename(out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def find_packetdrill() -> Path:
    env = os.environ.get("PACKETDRILL")
    if env:
        p = Path(env)
        if not (p.is_file() and os.access(p, os.X_OK)):
            raise BuildError(f"$PACKETDRILL={env} is not an executable file")
        return p
    src = Path(os.environ.get("PACKETDRILL_SRC") or DEFAULT_SRC)
    if not (src / "packetdrill.c").is_file():
        raise BuildError(f"no packetdrill sources at {src} (set $PACKETDRILL_SRC, or $PACKETDRILL to a binary)")
    files = [p for p in src.iterdir() if p.is_file() and p.suffix in (".c", ".h", ".y", ".l", "")]

    def build(tmp: Path) -> None:
        for tool in ("gcc", "make", "bison", "flex"):
            _need(tool)
        shutil.copytree(src, tmp, dirs_exist_ok=True)
        _run(["sh", "./configure"], tmp, "packetdrill configure")
        _run(["make", "-j2", "packetdrill"], tmp, "packetdrill build")

    return _cached(cache_dir() / f"packetdrill-{_digest(files)}", "packetdrill", build)


def build_shim() -> Path:
    python = sys.executable

    def build(tmp: Path) -> None:
        _need("gcc")
        (tmp / "bin").mkdir()
        _run(["gcc", "-O2", "-Wall", "-Wextra", "-fPIC", "-shared", f"-I{HERE}",
              f'-DRUMPDRILL_PYTHON="{python}"', "-o", str(tmp / "librumpdrill.so"),
              str(HERE / "rumpdrill.c"), "-ldl", "-lpthread"], tmp, "building librumpdrill.so")
        _run(["gcc", "-O2", "-Wall", "-Wextra", f"-I{HERE}", "-o", str(tmp / "bin" / "rumpdrill-tool"),
              str(HERE / "rumpdrill_tool.c")], tmp, "building rumpdrill-tool")
        for tool in TOOLS:
            (tmp / "bin" / tool).symlink_to("rumpdrill-tool")

    out = cache_dir() / f"rumpdrill-{_digest([HERE / n for n in C_SOURCES], python)}"
    return _cached(out, "librumpdrill.so", build)


def toolchain() -> Toolchain:
    return Toolchain(find_packetdrill(), build_shim())
