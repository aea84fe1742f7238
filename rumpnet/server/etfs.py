"""etfs: host files reachable inside a rump kernel by key (NetBSD's rump_etfs(3)).

``k.rump_pub_etfs_register(key, hostpath, ftype)`` maps the absolute ``key`` to the host
file ``hostpath``; ``..._register_withsize(key, hostpath, ftype, begin, size)`` maps the
window ``[begin, begin+size)`` (``RUMP_ETFS_SIZE_ENDOFF``: to the end of the file);
``rump_pub_etfs_remove(key)`` unmaps it (``EBUSY`` while open). Keys must begin with
``/``; leading slashes collapse (``//key`` is ``/key``), the rest is compared verbatim.
``RUMP_ETFS_DIR`` exposes the immediate children of a host directory as ``key/name``,
``RUMP_ETFS_DIR_SUBDIRS`` the whole tree below it. Registered files are the only host
files a kernel (and so a remote client of ``rump_server``) can reach: paths never
escape a registered directory (``..`` and symlinks pointing outside are refused).

The ``sys_*`` functions here are system calls (``(ctx, proc, ...)``) that the kernel's
``rump_sys_open``/``_read``/``_write``/``_pread``/``_pwrite``/``_lseek``/``_fstat``/
``_getdents`` run when the ``vfs`` component is loaded (NetBSD's librumpvfs; a default
component, ``-lrumpvfs`` for rump_server); ``rump_sys_close`` closes these files like any
other.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from dataclasses import dataclass
from typing import Any

from rumpkern.component import KernelApi, SyscallImpl
from rumpkern.errno import kerr
from rumpkern.lwproc import FNONBLOCK, File, Proc
from rumpkern.sched import SyscallCtx

RUMP_ETFS_REG = 0
RUMP_ETFS_BLK = 1
RUMP_ETFS_CHR = 2
RUMP_ETFS_DIR = 3
RUMP_ETFS_DIR_SUBDIRS = 4
RUMP_ETFS_SIZE_ENDOFF = (1 << 64) - 1

_TYPES = {RUMP_ETFS_REG, RUMP_ETFS_BLK, RUMP_ETFS_CHR, RUMP_ETFS_DIR, RUMP_ETFS_DIR_SUBDIRS}
_DIRS = {RUMP_ETFS_DIR, RUMP_ETFS_DIR_SUBDIRS}
_IFMT = {RUMP_ETFS_REG: stat.S_IFREG, RUMP_ETFS_BLK: stat.S_IFBLK, RUMP_ETFS_CHR: stat.S_IFCHR,
         RUMP_ETFS_DIR: stat.S_IFDIR, RUMP_ETFS_DIR_SUBDIRS: stat.S_IFDIR}


@dataclass
class EtfsStat:
    """What ``rump_sys_fstat`` returns (the fields of ``struct stat`` that matter)."""

    st_mode: int
    st_size: int
    st_ino: int = 0
    st_dev: int = 0
    st_nlink: int = 1
    st_uid: int = 0
    st_gid: int = 0
    st_rdev: int = 0
    st_blksize: int = 512
    st_blocks: int = 0
    st_atime: float = 0.0
    st_mtime: float = 0.0
    st_ctime: float = 0.0


@dataclass
class EtfsEntry:
    key: str
    hostpath: str
    ftype: int
    begin: int
    size: int | None  # None: the whole host file, growing with writes
    opencount: int = 0


def normalize_key(key: Any) -> str:
    if isinstance(key, bytes):
        key = os.fsdecode(key)
    if not isinstance(key, str) or not key.startswith("/"):
        raise kerr(errno.EINVAL, "etfs key must be an absolute path")
    if "\0" in key:
        raise kerr(errno.EINVAL)
    return "/" + key.lstrip("/")


class Etfs:
    """The key table of one kernel."""

    def __init__(self) -> None:
        self.keys: dict[str, EtfsEntry] = {}
        self._lock = threading.Lock()

    def register(self, key: Any, hostpath: Any, ftype: int, begin: int = 0,
                 size: int = RUMP_ETFS_SIZE_ENDOFF, windowed: bool = False) -> None:
        key = normalize_key(key)
        if ftype not in _TYPES:
            raise kerr(errno.EINVAL, f"bad etfs type {ftype!r}")
        begin, size = int(begin), int(size)
        if begin < 0 or size < 0:
            raise kerr(errno.EINVAL)
        host = os.path.abspath(os.fsdecode(hostpath))
        st = os.stat(host)  # ENOENT etc. as the host says
        if ftype in _DIRS:
            if not stat.S_ISDIR(st.st_mode):
                raise kerr(errno.ENOTDIR)
            if windowed and (begin != 0 or size != RUMP_ETFS_SIZE_ENDOFF):
                raise kerr(errno.EISDIR)
            esize: int | None = None
        else:
            if stat.S_ISDIR(st.st_mode):
                raise kerr(errno.EISDIR)
            fsize = st.st_size
            if not windowed and ftype == RUMP_ETFS_REG:
                esize = None
            else:
                if begin > fsize:
                    raise kerr(errno.EINVAL, "etfs window begins beyond the end of the file")
                esize = fsize - begin if size == RUMP_ETFS_SIZE_ENDOFF else size
                if begin + esize > fsize:
                    raise kerr(errno.EINVAL, "etfs window extends beyond the end of the file")
        with self._lock:
            if key in self.keys:
                raise kerr(errno.EEXIST)
            self.keys[key] = EtfsEntry(key, host, ftype, begin, esize)

    def remove(self, key: Any) -> None:
        key = normalize_key(key)
        with self._lock:
            entry = self.keys.get(key)
            if entry is None:
                raise kerr(errno.ENOENT)
            if entry.opencount:
                raise kerr(errno.EBUSY)
            del self.keys[key]

    def lookup(self, path: Any) -> tuple[EtfsEntry, str, int, bool]:
        """``(entry, hostpath, ftype, windowed)`` of a path; ENOENT if nothing maps it."""
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if not isinstance(path, str) or not path.startswith("/") or "\0" in path:
            raise kerr(errno.ENOENT)
        path = "/" + path.lstrip("/")
        entry = self.keys.get(path)
        if entry is not None:
            return entry, entry.hostpath, entry.ftype, entry.size is not None
        for key in sorted(self.keys, key=len, reverse=True):
            entry = self.keys[key]
            if entry.ftype not in _DIRS:
                continue
            prefix = key if key.endswith("/") else key + "/"
            if not path.startswith(prefix):
                continue
            parts = path[len(prefix):].split("/")
            if any(p in ("", ".", "..") for p in parts):
                raise kerr(errno.ENOENT)
            if entry.ftype == RUMP_ETFS_DIR and len(parts) != 1:
                raise kerr(errno.ENOENT)
            host = os.path.join(entry.hostpath, *parts)
            root = os.path.realpath(entry.hostpath)
            real = os.path.realpath(host)
            if real != root and not real.startswith(root.rstrip("/") + "/"):
                raise kerr(errno.EACCES, "path leaves the registered directory")
            try:
                st = os.stat(host)
            except FileNotFoundError:
                return entry, host, -1, False  # may be created
            if stat.S_ISDIR(st.st_mode):
                return entry, host, RUMP_ETFS_DIR, False
            if not stat.S_ISREG(st.st_mode):
                raise kerr(errno.EACCES, "only regular files and directories are exposed")
            return entry, host, RUMP_ETFS_REG, False
        raise kerr(errno.ENOENT)


def etfs_of(k: Any) -> Etfs:
    """The etfs key table of kernel ``k`` (made on first use)."""
    table = k.__dict__.get("_etfs")
    if table is None:
        table = k.__dict__.setdefault("_etfs", Etfs())
    return table  # type: ignore[no-any-return]


class EtfsFile:
    """An open etfs file or device (the object in the fd table)."""

    is_dir = False

    def __init__(self, entry: EtfsEntry, hfd: int, ftype: int, accmode: int, append: bool,
                 begin: int, size: int | None) -> None:
        self.entry = entry
        self.hfd = hfd
        self.ftype = ftype
        self.accmode = accmode
        self.append = append
        self.begin = begin
        self.size = size
        self.offset = 0
        self.closed = False

    def cur_size(self) -> int:
        return self.size if self.size is not None else os.fstat(self.hfd).st_size

    def read(self, n: int, offset: int | None = None) -> bytes:
        if self.accmode == os.O_WRONLY:
            raise kerr(errno.EBADF)
        off = self.offset if offset is None else offset
        if self.size is not None:
            n = max(0, min(n, self.size - off))
        data = os.pread(self.hfd, n, self.begin + off) if n else b""
        if offset is None:
            self.offset = off + len(data)
        return data

    def write(self, data: bytes, offset: int | None = None) -> int:
        if self.accmode == os.O_RDONLY:
            raise kerr(errno.EBADF)
        if offset is None:
            off = self.cur_size() if self.append else self.offset
        else:
            off = offset
        if self.size is not None:
            room = self.size - off
            if room <= 0 and data:
                raise kerr(errno.ENOSPC)
            data = data[:max(0, room)]
        n = os.pwrite(self.hfd, data, self.begin + off) if data else 0
        if offset is None:
            self.offset = off + n
        return n

    def fstat(self) -> EtfsStat:
        st = os.fstat(self.hfd)
        size = self.cur_size()
        return EtfsStat(st_mode=_IFMT[self.ftype] | stat.S_IMODE(st.st_mode), st_size=size, st_ino=st.st_ino,
                        st_dev=st.st_dev, st_nlink=st.st_nlink, st_uid=st.st_uid, st_gid=st.st_gid,
                        st_blocks=(size + 511) // 512, st_atime=st.st_atime, st_mtime=st.st_mtime,
                        st_ctime=st.st_ctime)

    def close_wait(self) -> None:
        """Nothing to wait for after close (``rumpkern.lwproc.FileOps``)."""
        return None

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.entry.opencount -= 1
            os.close(self.hfd)


class EtfsDir:
    """An open etfs directory: ``rump_sys_getdents`` lists the host directory."""

    is_dir = True

    def __init__(self, entry: EtfsEntry, hostpath: str) -> None:
        self.entry = entry
        self.hostpath = hostpath
        self.names: list[str] | None = None
        self.offset = 0
        self.closed = False

    def getdents(self, count: int) -> list[str]:
        if self.names is None:
            self.names = [".", ".."] + sorted(os.listdir(self.hostpath))
        out = self.names[self.offset:self.offset + max(1, count)]
        self.offset += len(out)
        return out

    def fstat(self) -> EtfsStat:
        st = os.stat(self.hostpath)
        return EtfsStat(st_mode=stat.S_IFDIR | stat.S_IMODE(st.st_mode), st_size=st.st_size, st_ino=st.st_ino,
                        st_dev=st.st_dev, st_nlink=st.st_nlink, st_uid=st.st_uid, st_gid=st.st_gid,
                        st_atime=st.st_atime, st_mtime=st.st_mtime, st_ctime=st.st_ctime)

    def close_wait(self) -> None:
        """Nothing to wait for after close (``rumpkern.lwproc.FileOps``)."""
        return None

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.entry.opencount -= 1


# -- system calls ------------------------------------------------------------------------
def _host_err(e: OSError) -> OSError:
    return kerr(e.errno or errno.EIO)


def sys_open(ctx: SyscallCtx, p: Proc, path: Any, flags: int, mode: int = 0) -> int:
    flags, mode = int(flags), int(mode)
    table = etfs_of(p.kernel)
    entry, host, ftype, windowed = table.lookup(path)
    accmode = flags & os.O_ACCMODE
    if accmode not in (os.O_RDONLY, os.O_WRONLY, os.O_RDWR):
        raise kerr(errno.EINVAL)
    if flags & os.O_CREAT and flags & os.O_EXCL and ftype != -1:
        raise kerr(errno.EEXIST)
    obj: EtfsFile | EtfsDir
    if ftype == -1:  # a name inside a registered directory that does not exist yet
        if not flags & os.O_CREAT:
            raise kerr(errno.ENOENT)
        ftype = RUMP_ETFS_REG
    if ftype in _DIRS:
        if accmode != os.O_RDONLY:
            raise kerr(errno.EISDIR)
        obj = EtfsDir(entry, host)
    else:
        hflags = accmode | os.O_CLOEXEC
        if flags & os.O_CREAT:
            hflags |= os.O_CREAT | (flags & os.O_EXCL)
        if flags & os.O_TRUNC and not windowed and accmode != os.O_RDONLY:
            hflags |= os.O_TRUNC
        try:
            hfd = os.open(host, hflags, mode & 0o777)
        except OSError as e:
            raise _host_err(e) from None
        begin = entry.begin if windowed else 0
        obj = EtfsFile(entry, hfd, ftype, accmode, bool(flags & os.O_APPEND), begin,
                       entry.size if windowed else None)
    entry.opencount += 1
    try:
        return p.fdt.alloc(File(obj, FNONBLOCK if flags & os.O_NONBLOCK else 0))
    except OSError:
        obj.close()
        raise


def _getfile(p: Proc, fd: int) -> Any:
    return p.fdt.get(fd).obj


def _check_count(n: Any) -> int:
    count = int(n)
    if count < 0:
        raise kerr(errno.EINVAL)
    return count


def sys_read(ctx: SyscallCtx, p: Proc, fd: int, n: int) -> bytes:
    n = _check_count(n)
    obj = _getfile(p, fd)
    if isinstance(obj, EtfsFile):
        try:
            return obj.read(n)
        except OSError as e:
            raise _host_err(e) from None
    if isinstance(obj, EtfsDir):
        raise kerr(errno.EISDIR)
    from rumpnet import sys_socket as S  # noqa: N812

    return S.sys_recvfrom(ctx, p, fd, n, 0)[0]


def sys_write(ctx: SyscallCtx, p: Proc, fd: int, data: Any) -> int:
    obj = _getfile(p, fd)
    if isinstance(obj, EtfsFile):
        try:
            return obj.write(bytes(data))
        except OSError as e:
            raise _host_err(e) from None
    if isinstance(obj, EtfsDir):
        raise kerr(errno.EISDIR)
    from rumpnet import sys_socket as S  # noqa: N812

    return S.sys_sendto(ctx, p, fd, data, 0, None)


def _seekable(p: Proc, fd: int) -> EtfsFile:
    obj = _getfile(p, fd)
    if isinstance(obj, EtfsDir):
        raise kerr(errno.EISDIR)
    if not isinstance(obj, EtfsFile):
        raise kerr(errno.ESPIPE)
    return obj


def sys_pread(ctx: SyscallCtx, p: Proc, fd: int, n: int, offset: int) -> bytes:
    n, offset = _check_count(n), int(offset)
    f = _seekable(p, fd)
    if offset < 0:
        raise kerr(errno.EINVAL)
    try:
        return f.read(n, offset)
    except OSError as e:
        raise _host_err(e) from None


def sys_pwrite(ctx: SyscallCtx, p: Proc, fd: int, data: Any, offset: int) -> int:
    offset = int(offset)
    f = _seekable(p, fd)
    if offset < 0:
        raise kerr(errno.EINVAL)
    try:
        return f.write(bytes(data), offset)
    except OSError as e:
        raise _host_err(e) from None


def sys_lseek(ctx: SyscallCtx, p: Proc, fd: int, offset: int, whence: int) -> int:
    offset, whence = int(offset), int(whence)
    obj = _getfile(p, fd)
    if isinstance(obj, EtfsDir):
        if whence == os.SEEK_SET and offset == 0:
            obj.offset = 0
            obj.names = None
            return 0
        raise kerr(errno.EINVAL)
    if not isinstance(obj, EtfsFile):
        raise kerr(errno.ESPIPE)
    if whence == os.SEEK_SET:
        base = 0
    elif whence == os.SEEK_CUR:
        base = obj.offset
    elif whence == os.SEEK_END:
        base = obj.cur_size()
    else:
        raise kerr(errno.EINVAL)
    new = base + offset
    if new < 0:
        raise kerr(errno.EINVAL)
    obj.offset = new
    return new


def sys_fstat(ctx: SyscallCtx, p: Proc, fd: int) -> EtfsStat:
    obj = _getfile(p, fd)
    if isinstance(obj, (EtfsFile, EtfsDir)):
        try:
            return obj.fstat()
        except OSError as e:
            raise _host_err(e) from None
    return EtfsStat(st_mode=stat.S_IFSOCK | 0o666, st_size=0)


def sys_getdents(ctx: SyscallCtx, p: Proc, fd: int, count: int = 1024) -> list[str]:
    """Names in an open etfs directory (``.`` and ``..`` first), at most ``count`` per
    call, ``[]`` at the end (NetBSD's getdents(2) without the struct dirent packing)."""
    obj = _getfile(p, fd)
    if not isinstance(obj, EtfsDir):
        raise kerr(errno.ENOTDIR)
    try:
        return obj.getdents(int(count))
    except OSError as e:
        raise _host_err(e) from None


def _register(k: Any, key: str, hostpath: str, ftype: int) -> None:
    etfs_of(k).register(key, hostpath, ftype)


def _register_withsize(k: Any, key: str, hostpath: str, ftype: int, begin: int, size: int) -> None:
    etfs_of(k).register(key, hostpath, ftype, begin, size, windowed=True)


def _remove(k: Any, key: str) -> None:
    etfs_of(k).remove(key)


# What the vfs component provides (rumpnet/components.py): its entries of the syscall
# table and the rump_pub_etfs_* entry points.
SYSCALLS: dict[str, SyscallImpl] = {"open": sys_open, "read": sys_read, "write": sys_write, "pread": sys_pread, "pwrite": sys_pwrite,
            "lseek": sys_lseek, "fstat": sys_fstat, "getdents": sys_getdents}
APIS: dict[str, KernelApi] = {"etfs_register": _register, "etfs_register_withsize": _register_withsize, "etfs_remove": _remove}


# -- rump_server -d drivespec ----------------------------------------------------------------
_SUFFIX = {"b": 512, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3, "t": 1024 ** 4, "w": 4}


def parse_size(text: str) -> int:
    """A number with an optional dd(1)-style multiplier suffix (b, k, m, g, t, w)."""
    t = text.strip().lower()
    mult = 1
    if t and t[-1] in _SUFFIX:
        mult = _SUFFIX[t[-1]]
        t = t[:-1]
    if not t.isdigit():
        raise ValueError(f"bad size {text!r}")
    return int(t) * mult


def parse_drivespec(spec: str) -> dict[str, Any]:
    """``key=/k,hostpath=/tmp/x,size=N|host[,offset=M][,type=blk|chr|reg]`` as rump_server(1)
    takes it; ValueError when malformed."""
    fields: dict[str, str] = {}
    for part in spec.split(","):
        name, sep, value = part.partition("=")
        if not sep or not name:
            raise ValueError(f"drivespec item {part!r} is not name=value")
        if name not in ("key", "hostpath", "size", "offset", "type", "disklabel"):
            raise ValueError(f"unknown drivespec item {name!r}")
        fields[name] = value
    if "disklabel" in fields:
        raise ValueError("disklabel drivespecs are not supported")
    for required in ("key", "hostpath"):
        if not fields.get(required):
            raise ValueError(f"drivespec needs {required}=")
    types = {"blk": RUMP_ETFS_BLK, "chr": RUMP_ETFS_CHR, "reg": RUMP_ETFS_REG}
    ftype = types.get(fields.get("type", "blk"))
    if ftype is None:
        raise ValueError(f"bad drivespec type {fields['type']!r} (blk, chr or reg)")
    size_text = fields.get("size")
    if size_text is None and ftype != RUMP_ETFS_REG:
        raise ValueError("drivespec needs size= for block and character devices")
    return {"key": fields["key"], "hostpath": fields["hostpath"], "type": ftype,
            "offset": parse_size(fields.get("offset", "0")),
            "size": None if size_text is None else ("host" if size_text == "host" else parse_size(size_text))}


def apply_drivespec(k: Any, spec: str | dict[str, Any]) -> None:
    """Create or extend the host file as rump_server(1) says, then register the key."""
    d = parse_drivespec(spec) if isinstance(spec, str) else spec
    host, offset, size = d["hostpath"], d["offset"], d["size"]
    table = etfs_of(k)
    if size == "host":
        if not os.path.isfile(host):
            raise kerr(errno.ENOENT, f"{host}: size=host needs an existing regular file")
        table.register(d["key"], host, d["type"], offset, RUMP_ETFS_SIZE_ENDOFF, windowed=True)
        return
    fd = os.open(host, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        st = os.fstat(fd)
        if size is not None and stat.S_ISREG(st.st_mode) and st.st_size < offset + size:
            os.ftruncate(fd, offset + size)
    finally:
        os.close(fd)
    if size is None:
        table.register(d["key"], host, d["type"])
    else:
        table.register(d["key"], host, d["type"], offset, size, windowed=True)
