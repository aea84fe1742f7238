"""rumpkern: scheduler and virtual clock, sysctl tree, processes, components."""

from __future__ import annotations

import errno
import socket
import threading

import pytest

from rumpkern import RUMP_RFCFDG, RUMP_RFFDG, rump_init
from rumpkern.kernel import current_kernel
from rumpkern.lwproc import FdTable, File
from rumpkern.sched import VIRTUAL_EPOCH, Scheduler, Sleep, WaitChannel
from rumpkern.sysctl import SysctlTree


def test_virtual_clock_jumps_to_next_timer_without_waiting() -> None:
    sched = Scheduler(virtual=True)
    fired: list[float] = []
    sched.call_later(3600.0, lambda: fired.append(sched.now()))
    import time

    t0 = time.monotonic()
    sched.run_for(7200.0)
    assert fired == [VIRTUAL_EPOCH + 3600.0]
    assert sched.now() == VIRTUAL_EPOCH + 7200.0
    assert time.monotonic() - t0 < 2.0


def test_syscall_sleeps_until_wakeup_and_times_out() -> None:
    sched = Scheduler(virtual=True)
    chan = WaitChannel("t")
    state = {"ready": False}

    def call(ctx: object) -> str:
        if not state["ready"]:
            raise Sleep(chan, None)
        return "done"

    def make_ready() -> None:
        state["ready"] = True
        chan.wakeup()

    sched.call_later(5.0, make_ready)
    assert sched.syscall(call) == "done"
    assert sched.now() == VIRTUAL_EPOCH + 5.0

    def never(ctx: object) -> None:
        raise Sleep(chan, 2.5)

    with pytest.raises(OSError) as ei:
        sched.syscall(never)
    assert ei.value.errno == errno.EWOULDBLOCK
    assert sched.now() == VIRTUAL_EPOCH + 7.5


def test_wakeup_before_sleep_registration_is_not_lost() -> None:
    """A wakeup that happens between the first attempt and the sleep must not be lost."""
    sched = Scheduler(virtual=True)
    chan = WaitChannel()
    state = {"ready": False}

    def ready() -> None:
        state["ready"] = True
        chan.wakeup()

    sched.call_soon(ready)  # runs before the sleeping task registers

    def call(ctx: object) -> int:
        if not state["ready"]:
            raise Sleep(chan)
        return 1

    assert sched.syscall(call) == 1


def test_two_threads_blocked_calls_both_progress() -> None:
    """A thread blocked in a call drives the CPU; another thread's call is handed over."""
    sched = Scheduler(virtual=False)
    chan = WaitChannel()
    box: list[int] = []

    def wait_for_item(ctx: object) -> int:
        if not box:
            raise Sleep(chan, 10.0)
        return box.pop()

    def put(ctx: object, v: int) -> None:
        box.append(v)
        chan.wakeup()

    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(sched.syscall(wait_for_item)))
    t.start()
    import time

    time.sleep(0.2)
    sched.syscall(put, 42)
    t.join(10)
    assert result == [42]


def test_background_serving_and_calls_from_threads() -> None:
    k = rump_init(clock="real")
    k.serve_background()
    try:
        fd = k.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
        k.rump_sys_bind(fd, ("127.0.0.1", 0))
        port = k.rump_sys_getsockname(fd)[1]
        out: list[bytes] = []
        t = threading.Thread(target=lambda: out.append(k.rump_sys_recv(fd, 100, 0)))
        t.start()
        c = k.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
        k.rump_sys_sendto(c, b"over lo0", 0, ("127.0.0.1", port))
        t.join(10)
        assert out == [b"over lo0"]
    finally:
        k.stop_background()
        k.halt()


def test_sysctl_tree_read_write_and_errors() -> None:
    t = SysctlTree()

    class P:
        forwarding = 0

    p = P()
    t.add_node("net", num=4)
    t.add_node("net.inet", num=2)
    t.add_node("net.inet.ip", num=0)
    t.bind_int("net.inet.ip.forwarding", p, "forwarding", num=1, minval=0, maxval=1)
    assert t.read("net.inet.ip.forwarding") == 0
    assert t.write("net.inet.ip.forwarding", "1") == 0
    assert p.forwarding == 1
    assert t.mib_of("net.inet.ip.forwarding") == [4, 2, 0, 1]
    assert t.lookup_mib([4, 2, 0, 1]).name == "forwarding"
    with pytest.raises(OSError) as ei:
        t.write("net.inet.ip.forwarding", 2)
    assert ei.value.errno == errno.EINVAL
    with pytest.raises(OSError) as ei:
        t.read("net.inet.foo")
    assert ei.value.errno == errno.ENOENT
    assert "third level name `foo' in `net.inet.foo' is invalid" in str(ei.value)


def test_kernel_sysctl_nodes_exist() -> None:
    k = rump_init(clock="virtual")
    for name in ("net.inet.ip.forwarding", "net.inet.ip.ttl", "net.inet.ip.mtudisc", "net.inet.ip.maxfragpackets",
                 "net.inet.arp.keep", "net.inet.icmp.errppslimit", "net.inet.udp.checksum", "net.inet.tcp.congctl",
                 "net.inet.tcp.sack", "net.inet.tcp.rfc1323", "net.inet.tcp.msl", "kern.hostname"):
        k.config.sysctl_get(name)
    k.config.sysctl_set("kern.hostname", "box")
    assert k.hostname == "box"
    assert k.rump_sys___sysctl([1, 10]) == "box"
    assert k.rump_sys___sysctl("net.inet.ip.forwarding", newp=1) == 0
    assert k.rump_sys___sysctl([4, 2, 0, 1]) == 1
    buf = bytearray(4)
    k.rump_sys___sysctl("net.inet.ip.ttl", oldp=buf)
    assert int.from_bytes(buf, "little") == 64
    stats = k.rump_sys___sysctl("net.inet.ip.stats")
    assert isinstance(stats, bytes) and len(stats) % 8 == 0
    k.halt()


def test_fd_tables_share_copy_clean() -> None:
    k = rump_init(clock="virtual")
    fd = k.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    parent = k.curproc
    copied = k.rump_pub_lwproc_rfork(RUMP_RFFDG)
    assert fd in copied.fdt.files and copied.fdt is not parent.fdt
    k.rump_pub_lwproc_switch(parent)
    clean = k.rump_pub_lwproc_rfork(RUMP_RFCFDG)
    assert clean.fdt.files == {}
    with pytest.raises(OSError) as ei:
        k.rump_sys_close(fd)
    assert ei.value.errno == errno.EBADF
    k.rump_pub_lwproc_switch(parent)
    shared = k.rump_pub_lwproc_rfork(0)
    assert shared.fdt is parent.fdt
    k.rump_pub_lwproc_switch(None)
    assert k.curproc is k.procs.proc0
    k.halt()


def test_fd_allocation_is_lowest_free() -> None:
    t = FdTable()
    a, b = t.alloc(File(object())), t.alloc(File(object()))
    assert (a, b) == (0, 1)
    t.remove(0)
    assert t.alloc(File(object())) == 0


def test_components_order_and_conflicts() -> None:
    k = rump_init(clock="virtual")
    assert k.components.index("net") < k.components.index("netinet") < k.components.index("shmif")
    with pytest.raises(OSError) as ei:
        rump_init(clock="virtual", components=("net", "netinet", "sockin"))
    assert "cannot be loaded together" in str(ei.value)
    with pytest.raises(OSError):
        rump_init(clock="virtual", components=("nosuch",))
    # NetBSD library names are accepted.
    k2 = rump_init(clock="virtual", components=("rumpnet", "rumpnet_net", "rumpnet_netinet", "rumpnet_shmif"))
    assert "shmif" in k2.components and "virtif" not in k2.components
    k2.halt()
    k.halt()


def test_lo0_up_with_loopback_address_at_boot() -> None:
    k = rump_init(clock="virtual")
    lo0 = k.ifnet.lookup("lo0")
    assert lo0.is_up and lo0.addrs[0].addr == 0x7F000001 and lo0.addrs[0].plen == 8
    k.halt()


def test_current_kernel_and_module_level_calls() -> None:
    import rumpkern

    a = rump_init(clock="virtual")
    b = rump_init(clock="virtual")
    assert current_kernel() is b
    with a:
        assert current_kernel() is a
        fd = rumpkern.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)  # type: ignore[attr-defined]
        assert fd in a.curproc.fdt.files
    assert current_kernel() is b
    b.halt()
    a.halt()


def test_many_kernels_share_one_virtual_scheduler_per_thread() -> None:
    a = rump_init(clock="virtual")
    b = rump_init(clock="virtual")
    assert a.sched is b.sched
    assert a.rng.random() != b.rng.random()  # distinct streams from one seed
    fresh = rump_init(clock="virtual", scheduler=Scheduler(virtual=True))
    assert fresh.sched is not a.sched
    for k in (fresh, b, a):
        k.halt()


def test_bad_socket_calls_give_bsd_errnos() -> None:
    k = rump_init(clock="virtual")
    cases = [
        (lambda: k.rump_sys_socket(socket.AF_UNIX, socket.SOCK_STREAM, 0), errno.EAFNOSUPPORT),
        (lambda: k.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 6), errno.EPROTONOSUPPORT),
        (lambda: k.rump_sys_close(99), errno.EBADF),
        (lambda: k.rump_sys_recv(99, 10, 0), errno.EBADF),
    ]
    for fn, code in cases:
        with pytest.raises(OSError) as ei:
            fn()
        assert ei.value.errno == code
    fd = k.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    with pytest.raises(OSError) as ei:
        k.rump_sys_bind(fd, ("10.9.9.9", 1))
    assert ei.value.errno == errno.EADDRNOTAVAIL
    with pytest.raises(OSError) as ei:
        k.rump_sys_bind(fd, "not an address")
    assert ei.value.errno == errno.EINVAL
    with pytest.raises(OSError) as ei:
        k.rump_sys_send(fd, b"x", 0)
    assert ei.value.errno == errno.ENOTCONN
    k.halt()


def test_memlimit_caps_socket_buffers_and_reassembly(monkeypatch: pytest.MonkeyPatch) -> None:
    from rumpkern.kernel import parse_memlimit

    assert parse_memlimit("64k") == 65536 and parse_memlimit("2M") == 2 << 20 and parse_memlimit("1000") == 1000
    assert parse_memlimit("10%") > 0
    for bad in ("", "-1", "12q", "0", "200%"):
        with pytest.raises(OSError):
            parse_memlimit(bad)
    monkeypatch.setenv("RUMP_MEMLIMIT", "1m")
    k = rump_init(clock="virtual")
    assert k.sb_max == (1 << 20) // 16
    assert k.inet.tcp.params.recvspace <= k.sb_max and k.inet.udp_params.recvspace <= k.sb_max
    assert k.inet.ip_params.maxfrags <= k.sb_max // 1500
    fd = k.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    with pytest.raises(OSError) as ei:
        k.rump_sys_setsockopt(fd, socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    assert ei.value.errno == errno.ENOBUFS
    k.rump_sys_setsockopt(fd, socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
    k.halt()


def test_a_kernel_booted_after_a_halt_gets_a_fresh_random_stream() -> None:
    sched = Scheduler(virtual=True)
    a = rump_init(clock="virtual", seed=5, scheduler=sched)
    b = rump_init(clock="virtual", seed=5, scheduler=sched)
    a.halt()
    c = rump_init(clock="virtual", seed=5, scheduler=sched)
    macs = set()
    for k in (b, c):
        macs.add(k.config.if_create("wire0").lladdr)
    assert len(macs) == 2 and c.boot_index == 2


def test_a_call_that_can_never_complete_on_virtual_time_fails_instead_of_hanging() -> None:
    from rumpkern.sched import VirtualClockStalled

    sched = Scheduler(virtual=True)
    sched.stall_seconds = 0.2
    chan = WaitChannel()

    def forever(ctx: object) -> None:
        raise Sleep(chan)  # nothing will ever wake it, and no timer exists

    with pytest.raises(VirtualClockStalled):
        sched.syscall(forever)
    # The scheduler is still usable afterwards.
    assert sched.syscall(lambda ctx: 7) == 7
