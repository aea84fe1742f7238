"""etfs (rump_etfs(3)) on an in-process kernel, and rump_server's -d drivespec."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from rumpkern import RUMP_RFCFDG, rump_init
from rumpnet.server.etfs import (
    RUMP_ETFS_BLK,
    RUMP_ETFS_CHR,
    RUMP_ETFS_DIR,
    RUMP_ETFS_DIR_SUBDIRS,
    RUMP_ETFS_REG,
    RUMP_ETFS_SIZE_ENDOFF,
    apply_drivespec,
    parse_drivespec,
    parse_size,
)


@pytest.fixture
def k():
    kern = rump_init(clock="virtual", seed=1, components=("vfs",))  # etfs alone: no net faction state
    yield kern
    kern.halt()


def _errno(fn, *args):
    with pytest.raises(OSError) as ei:
        fn(*args)
    return ei.value.errno


@pytest.fixture
def hostfile(tmp_path):
    p = tmp_path / "data"
    p.write_bytes(bytes(range(256)) * 4)  # 1024 bytes
    return p


def test_register_read_write_seek_stat(k, hostfile):
    k.rump_pub_etfs_register("/data", str(hostfile), RUMP_ETFS_REG)
    fd = k.rump_sys_open("/data", os.O_RDWR)
    assert k.rump_sys_read(fd, 4) == bytes([0, 1, 2, 3])
    assert k.rump_sys_lseek(fd, 0, os.SEEK_CUR) == 4
    assert k.rump_sys_write(fd, b"XY") == 2
    assert k.rump_sys_pread(fd, 3, 3) == b"\x03XY"
    assert k.rump_sys_pwrite(fd, b"Z", 1023) == 1
    assert k.rump_sys_lseek(fd, -1, os.SEEK_END) == 1023
    assert k.rump_sys_read(fd, 10) == b"Z"
    assert k.rump_sys_read(fd, 10) == b""
    st = k.rump_sys_fstat(fd)
    assert stat.S_ISREG(st.st_mode) and st.st_size == 1024
    k.rump_sys_close(fd)
    assert hostfile.read_bytes()[4:6] == b"XY"
    assert _errno(k.rump_sys_read, fd, 1) == errno.EBADF


def test_keys_absolute_leading_slashes_collapse_rest_verbatim(k, hostfile, tmp_path):
    assert _errno(k.rump_pub_etfs_register, "data", str(hostfile), RUMP_ETFS_REG) == errno.EINVAL
    k.rump_pub_etfs_register("///a/b", str(hostfile), RUMP_ETFS_REG)
    k.rump_sys_close(k.rump_sys_open("/a/b", os.O_RDONLY))
    k.rump_sys_close(k.rump_sys_open("//a/b", os.O_RDONLY))
    assert _errno(k.rump_sys_open, "/a//b", os.O_RDONLY) == errno.ENOENT
    assert _errno(k.rump_sys_open, "/a/b/", os.O_RDONLY) == errno.ENOENT
    assert _errno(k.rump_pub_etfs_register, "/a/b", str(hostfile), RUMP_ETFS_REG) == errno.EEXIST
    assert _errno(k.rump_pub_etfs_register, "//a/b", str(hostfile), RUMP_ETFS_REG) == errno.EEXIST
    d = tmp_path / "d"
    d.mkdir()
    (d / "f").write_bytes(b"in dir")
    k.rump_pub_etfs_register("/dir", str(d), RUMP_ETFS_DIR)
    k.rump_sys_close(k.rump_sys_open("/dir/f", os.O_RDONLY))
    assert _errno(k.rump_sys_open, "/dir//f", os.O_RDONLY) == errno.ENOENT


def test_register_errors(k, hostfile, tmp_path):
    assert _errno(k.rump_pub_etfs_register, "/x", str(tmp_path / "missing"), RUMP_ETFS_REG) == errno.ENOENT
    assert _errno(k.rump_pub_etfs_register, "/x", str(hostfile), RUMP_ETFS_DIR) == errno.ENOTDIR
    assert _errno(k.rump_pub_etfs_register, "/x", str(tmp_path), RUMP_ETFS_REG) == errno.EISDIR
    assert _errno(k.rump_pub_etfs_register, "/x", str(hostfile), 99) == errno.EINVAL
    assert _errno(k.rump_pub_etfs_register_withsize, "/x", str(hostfile), RUMP_ETFS_BLK, 2000, 1) == errno.EINVAL
    assert _errno(k.rump_pub_etfs_register_withsize, "/x", str(hostfile), RUMP_ETFS_BLK, 1000, 100) == errno.EINVAL
    assert _errno(k.rump_pub_etfs_register_withsize, "/x", str(tmp_path), RUMP_ETFS_DIR, 1, 10) == errno.EISDIR
    assert _errno(k.rump_pub_etfs_remove, "/x") == errno.ENOENT
    assert _errno(k.rump_sys_open, "/x", os.O_RDONLY) == errno.ENOENT
    assert _errno(k.rump_sys_open, "/etc/passwd", os.O_RDONLY) == errno.ENOENT


def test_withsize_window_and_endoff(k, hostfile):
    k.rump_pub_etfs_register_withsize("/blk", str(hostfile), RUMP_ETFS_BLK, 16, 8)
    fd = k.rump_sys_open("/blk", os.O_RDWR)
    st = k.rump_sys_fstat(fd)
    assert stat.S_ISBLK(st.st_mode) and st.st_size == 8
    assert k.rump_sys_read(fd, 100) == bytes(range(16, 24))
    assert k.rump_sys_read(fd, 100) == b""
    assert k.rump_sys_pwrite(fd, b"abcdef", 5) == 3  # clipped at the window's end
    assert _errno(k.rump_sys_pwrite, fd, b"x", 8) == errno.ENOSPC
    assert hostfile.read_bytes()[16 + 5:16 + 9] == b"abc\x18"
    k.rump_sys_close(fd)
    k.rump_pub_etfs_register_withsize("/chr", str(hostfile), RUMP_ETFS_CHR, 1000, RUMP_ETFS_SIZE_ENDOFF)
    fd = k.rump_sys_open("/chr", os.O_RDONLY)
    st = k.rump_sys_fstat(fd)
    assert stat.S_ISCHR(st.st_mode) and st.st_size == 24
    assert k.rump_sys_lseek(fd, 0, os.SEEK_END) == 24
    assert _errno(k.rump_sys_write, fd, b"x") == errno.EBADF  # opened read-only
    k.rump_sys_close(fd)


def test_remove_busy_while_open(k, hostfile):
    k.rump_pub_etfs_register("//f", str(hostfile), RUMP_ETFS_REG)
    fd = k.rump_sys_open("/f", os.O_RDONLY)
    assert _errno(k.rump_pub_etfs_remove, "/f") == errno.EBUSY
    k.rump_sys_close(fd)
    k.rump_pub_etfs_remove("//f")
    assert _errno(k.rump_sys_open, "/f", os.O_RDONLY) == errno.ENOENT
    k.rump_pub_etfs_register("/f", str(hostfile), RUMP_ETFS_REG)  # the key is free again


def test_process_exit_closes_etfs_files(k, hostfile):
    k.rump_pub_etfs_register("/f", str(hostfile), RUMP_ETFS_REG)
    k.rump_pub_lwproc_rfork(RUMP_RFCFDG)
    k.rump_sys_open("/f", os.O_RDONLY)
    assert _errno(k.rump_pub_etfs_remove, "/f") == errno.EBUSY
    k.rump_pub_lwproc_releaselwp()
    k.rump_pub_etfs_remove("/f")


def test_flags_append_trunc_creat_excl(k, tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "log").write_bytes(b"abc")
    k.rump_pub_etfs_register("/d", str(d), RUMP_ETFS_DIR)
    fd = k.rump_sys_open("/d/log", os.O_WRONLY | os.O_APPEND)
    k.rump_sys_write(fd, b"def")
    assert _errno(k.rump_sys_read, fd, 1) == errno.EBADF
    k.rump_sys_close(fd)
    assert (d / "log").read_bytes() == b"abcdef"
    k.rump_sys_close(k.rump_sys_open("/d/log", os.O_WRONLY | os.O_TRUNC))
    assert (d / "log").read_bytes() == b""
    assert _errno(k.rump_sys_open, "/d/new", os.O_RDONLY) == errno.ENOENT
    fd = k.rump_sys_open("/d/new", os.O_CREAT | os.O_RDWR, 0o600)
    k.rump_sys_write(fd, b"new")
    k.rump_sys_close(fd)
    assert (d / "new").read_bytes() == b"new"
    assert _errno(k.rump_sys_open, "/d/new", os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600) == errno.EEXIST
    assert _errno(k.rump_sys_open, "/d", os.O_RDWR) == errno.EISDIR


def test_dir_and_subdirs_listing_and_containment(k, tmp_path):
    top = tmp_path / "top"
    (top / "sub").mkdir(parents=True)
    (top / "a").write_bytes(b"A")
    (top / "sub" / "b").write_bytes(b"B")
    (tmp_path / "secret").write_bytes(b"S")
    os.symlink(tmp_path / "secret", top / "escape")
    k.rump_pub_etfs_register("/dir", str(top), RUMP_ETFS_DIR)
    k.rump_pub_etfs_register("/tree", str(top), RUMP_ETFS_DIR_SUBDIRS)
    fd = k.rump_sys_open("/dir", os.O_RDONLY)
    assert stat.S_ISDIR(k.rump_sys_fstat(fd).st_mode)
    names = []
    while batch := k.rump_sys_getdents(fd, 2):
        names += batch
    assert names == [".", "..", "a", "escape", "sub"]
    assert _errno(k.rump_sys_read, fd, 1) == errno.EISDIR
    k.rump_sys_close(fd)
    assert _errno(k.rump_sys_open, "/dir/sub/b", os.O_RDONLY) == errno.ENOENT  # DIR: children only
    fd = k.rump_sys_open("/tree/sub/b", os.O_RDONLY)
    assert k.rump_sys_read(fd, 10) == b"B"
    k.rump_sys_close(fd)
    for bad in ("/tree/../secret", "/tree/sub/../a", "/tree/./a"):
        assert _errno(k.rump_sys_open, bad, os.O_RDONLY) == errno.ENOENT
    assert _errno(k.rump_sys_open, "/tree/escape", os.O_RDONLY) == errno.EACCES
    fd = k.rump_sys_open("/tree/sub", os.O_RDONLY)
    assert k.rump_sys_getdents(fd) == [".", "..", "b"]
    assert _errno(k.rump_pub_etfs_remove, "/tree") == errno.EBUSY  # a child is open
    k.rump_sys_close(fd)
    k.rump_pub_etfs_remove("/tree")


def test_read_write_on_sockets(k):
    import socket

    kk = rump_init(clock="virtual", seed=1)
    try:
        a = kk.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
        kk.rump_sys_bind(a, ("127.0.0.1", 9))
        kk.rump_sys_connect(a, ("127.0.0.1", 9))
        assert kk.rump_sys_write(a, b"ping") == 4
        assert kk.rump_sys_read(a, 10) == b"ping"
        assert stat.S_ISSOCK(kk.rump_sys_fstat(a).st_mode)
        assert _errno(kk.rump_sys_lseek, a, 0, os.SEEK_SET) == errno.ESPIPE
        assert _errno(kk.rump_sys_getdents, a) == errno.ENOTDIR
    finally:
        kk.halt()


# -- rump_server -d drivespec ----------------------------------------------------------------------
def test_parse_size_and_drivespec():
    assert parse_size("512") == 512
    assert parse_size("2k") == 2048 and parse_size("1m") == 1 << 20 and parse_size("3b") == 1536
    with pytest.raises(ValueError):
        parse_size("12q")
    d = parse_drivespec("key=/img,hostpath=/tmp/x,size=1m,offset=4k,type=chr")
    assert d == {"key": "/img", "hostpath": "/tmp/x", "type": RUMP_ETFS_CHR, "offset": 4096, "size": 1 << 20}
    assert parse_drivespec("key=/img,hostpath=/tmp/x,size=host")["type"] == RUMP_ETFS_BLK
    assert parse_drivespec("key=/f,hostpath=/tmp/x,type=reg")["size"] is None
    for bad in ("key=/img", "hostpath=/x,size=1", "key=/a,hostpath=/x", "key=/a,hostpath=/x,size=1,type=pipe",
                "key=/a,hostpath=/x,size=1,bogus=1", "key=/a,hostpath=/x,disklabel=a", "garbage"):
        with pytest.raises(ValueError):
            parse_drivespec(bad)


def test_drivespec_creates_and_extends(k, tmp_path):
    img = tmp_path / "img"
    apply_drivespec(k, f"key=/img,hostpath={img},size=8k,offset=1k")
    assert img.stat().st_size == 9 * 1024
    assert stat.S_IMODE(img.stat().st_mode) & 0o600 == 0o600
    fd = k.rump_sys_open("/img", os.O_RDWR)
    st = k.rump_sys_fstat(fd)
    assert stat.S_ISBLK(st.st_mode) and st.st_size == 8192
    k.rump_sys_pwrite(fd, b"hello", 0)
    k.rump_sys_close(fd)
    assert img.read_bytes()[1024:1029] == b"hello"
    small = tmp_path / "small"
    small.write_bytes(b"12345")
    apply_drivespec(k, f"key=/small,hostpath={small},size=100,type=reg")
    assert small.read_bytes() == b"12345" + bytes(95)
    apply_drivespec(k, f"key=/host,hostpath={small},size=host,offset=2,type=chr")
    fd = k.rump_sys_open("/host", os.O_RDONLY)
    assert k.rump_sys_fstat(fd).st_size == 98
    assert k.rump_sys_read(fd, 3) == b"345"
    k.rump_sys_close(fd)
    with pytest.raises(OSError):
        apply_drivespec(k, f"key=/nohost,hostpath={tmp_path / 'absent'},size=host")
