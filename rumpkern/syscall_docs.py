"""What each system call does: one table for the three places that offer the calls (the
``Kernel`` methods, the module-level functions of ``rumpkern`` that act on the current
kernel, and ``rumpnet.rumpclient.RumpClient``, which runs them in a rump_server).

The calls keep NetBSD's names and argument order; addresses are Python's socket tuples
(``("10.0.0.1", 7)``), constants Python's ``socket`` module's; failures raise ``OSError``
with the errno a BSD kernel gives. Called from a coroutine on the kernel's scheduler loop,
each returns an awaitable (``await k.rump_sys_recv(fd, 100)``); one that is never awaited
warns (:mod:`rumpkern.unawaited`).
"""

from __future__ import annotations

from typing import Any

SYSCALLS: dict[str, str] = {
    "socket": "socket(2): a new socket of ``domain`` (AF_INET, AF_INET6), ``type`` (SOCK_STREAM, "
              "SOCK_DGRAM, SOCK_RAW; | SOCK_NONBLOCK, SOCK_CLOEXEC) and ``protocol``; returns its fd.",
    "bind": "bind(2): give socket ``fd`` the local address ``addr`` (``(host, port)``; port 0 picks one).",
    "connect": "connect(2): connect ``fd`` to ``addr``; a stream socket sleeps until the handshake "
               "completes (EINPROGRESS when non-blocking), a datagram socket only records the peer.",
    "listen": "listen(2): make stream socket ``fd`` accept connections, ``backlog`` of them queued.",
    "accept": "accept(2): the next connection on listening socket ``fd``: ``(new_fd, peer_address)``; "
              "sleeps until one arrives (EWOULDBLOCK when non-blocking).",
    "send": "send(2): queue ``data`` on connected socket ``fd``; returns the bytes taken (MSG_DONTWAIT, "
            "MSG_OOB, ... in ``flags``).",
    "sendto": "sendto(2): send ``data`` to ``addr`` (or the connected peer when ``addr`` is None); returns "
              "the bytes sent.",
    "recv": "recv(2): up to ``n`` bytes from ``fd`` (``b''`` at end of stream); sleeps until data comes "
            "(MSG_DONTWAIT, MSG_PEEK, MSG_WAITALL in ``flags``).",
    "recvfrom": "recvfrom(2): like recv, and the sender's address: ``(data, addr)``.",
    "recvmsg": "recvmsg(2) as Python's ``socket.recvmsg``: up to ``n`` bytes and up to ``ancbufsize`` bytes "
               "of control messages (IPV6_PKTINFO, IPV6_HOPLIMIT, IPV6_TCLASS once asked for with "
               "IPV6_RECV*): ``(data, [(level, type, data), ...], msg_flags, addr)``.",
    "sendmsg": "sendmsg(2) as Python's ``socket.sendmsg``: the ``buffers`` as one datagram or stream data, "
               "with control messages ``[(level, type, data), ...]`` (IPV6_PKTINFO, IPV6_HOPLIMIT, "
               "IPV6_TCLASS) to ``addr``; returns the bytes sent.",
    "shutdown": "shutdown(2): stop receiving (SHUT_RD), sending (SHUT_WR, a FIN) or both (SHUT_RDWR) on ``fd``.",
    "close": "close(2): release ``fd``; the socket goes with its last descriptor (SO_LINGER applies).",
    "getsockname": "getsockname(2): the local address of ``fd``.",
    "getpeername": "getpeername(2): the peer's address of connected socket ``fd`` (ENOTCONN if none).",
    "setsockopt": "setsockopt(2): set option ``opt`` at ``level`` (SOL_SOCKET, IPPROTO_IP, IPPROTO_IPV6, IPPROTO_TCP) to "
                  "``value`` (an int, or bytes for a struct).",
    "getsockopt": "getsockopt(2): the value of option ``opt`` at ``level`` (an int; bytes when ``buflen`` > 0).",
    "poll": "poll(2): wait up to ``timeout`` ms (-1: forever) until one of ``fds`` (``pollfd`` objects or "
            "``[fd, events, revents]`` lists, ``revents`` filled in) is ready; returns how many are.",
    "fcntl": "fcntl(2): F_GETFL / F_SETFL (O_NONBLOCK), F_GETFD / F_SETFD (FD_CLOEXEC) on ``fd``.",
    "ioctl": "ioctl(2): FIONREAD (bytes readable), FIONBIO (non-blocking on/off), SIOCATMARK on ``fd``.",
    "__sysctl": "__sysctl(3): read and write the sysctl tree by MIB (``name``, a list of ints); ``oldp`` "
                "(a list) receives the old value, ``newp`` is the new one.",
    "reboot": "reboot(2): halt the kernel (as ``k.halt()``).",
    "open": "open(2) of an etfs-registered host file (``rump_pub_etfs_register``): returns its fd.",
    "read": "read(2): up to ``n`` bytes from ``fd`` (a file or a socket).",
    "write": "write(2): ``data`` to ``fd`` (a file or a socket); returns the bytes written.",
    "pread": "pread(2): up to ``n`` bytes from ``offset`` of file ``fd``.",
    "pwrite": "pwrite(2): ``data`` at ``offset`` of file ``fd``.",
    "lseek": "lseek(2): move the offset of file ``fd`` (SEEK_SET, SEEK_CUR, SEEK_END); returns it.",
    "fstat": "fstat(2): an ``EtfsStat`` of file ``fd`` (st_mode shows the etfs type, st_size its window).",
    "getdents": "getdents(2): the names in directory ``fd`` (``.`` and ``..`` first; ``[]`` at the end).",
}

PUB: dict[str, str] = {
    "etfs_register": "rump_etfs(3): make host file ``hostpath`` reachable in the kernel at ``key`` "
                     "(RUMP_ETFS_REG, _BLK, _CHR, _DIR, _DIR_SUBDIRS).",
    "etfs_register_withsize": "rump_etfs(3): as etfs_register, a window of ``size`` bytes from ``begin``.",
    "etfs_remove": "rump_etfs(3): remove ``key`` (EBUSY while a file under it is open).",
    "lwproc_rfork": "rump_lwproc(3): a new process of the kernel, its fd table copied, shared or empty "
                    "(RUMP_RFFDG, RUMP_RFCFDG); it becomes the current one of this thread.",
    "lwproc_switch": "rump_lwproc(3): make ``p`` this thread's current process (None: back to proc0).",
    "lwproc_releaselwp": "rump_lwproc(3): the current process exits (its files close); proc0 is current again.",
}


COMMANDS: dict[str, str] = {
    "ifconfig": "ifconfig(8) with NetBSD's syntax and output: ``ifconfig('wire0', 'create')``, "
                "``('wire0', 'linkstr', 'lan1')``, ``('wire0', 'inet', '10.0.1.1/24')``, ``('-a')``.",
    "route": "route(8): ``route('add', 'default', '10.0.1.254')``, ``('get', '10.0.2.1')``, ``('flush')``.",
    "arp": "arp(8): ``arp('-an')``, ``('-s', '10.0.1.9', 'b2:a0:00:00:00:09')``, ``('-d', '10.0.1.9')``.",
    "sysctl": "sysctl(8): ``sysctl('-w', 'net.inet.ip.forwarding=1')``, ``('net.inet.tcp')``, ``('-a')``.",
    "netstat": "netstat(1): ``netstat('-rn')`` (routes), ``('-s')`` (counters), ``('-an')`` (sockets), "
               "``('-i')`` (interfaces).",
    "ping": "ping(8): ``ping('-c', '3', '10.0.2.1')``; the output, or PingFailed (exit status 2, with "
            "the output) when no reply came. In a coroutine on the loop: an awaitable.",
    "ping6": "ping6(8): ``ping6('-c', '3', 'fc00:0:0:2::1')``, ``('-n', '-c', '1', 'fe80::1%wire0')``; the "
             "output, or PingFailed (exit status 2, with the output) when no reply came. In a coroutine "
             "on the loop: an awaitable.",
    "ndp": "ndp(8): ``ndp('-an')`` (the neighbour cache), ``('-s', 'fc00::9', 'b2:a0:00:00:00:09')``, "
           "``('-d', 'fc00::9')``, ``('-c')``.",
    "rtadvd": "rtadvd(8) in the kernel: ``rtadvd('-c', 'rtadvd.conf', 'wire0')`` advertises the "
              "interface's prefixes (or the configuration's) until the calling process exits; "
              "``('-t')`` sends the final advertisements (router lifetime 0) and stops.",
    "tc": "tc(8)'s netem qdiscs on an interface (the fault model): ``tc('qdisc', 'add', 'dev', 'wire0', "
          "'root', 'netem', 'delay', '10ms', 'loss', '1%')``, ``('-s', 'qdisc', 'show', 'dev', 'wire0')``.",
}
_COMMON = " Returns the tool's output; raises OSError with NetBSD's message when the tool fails " \
          "and UsageError (an OSError) for bad usage."


def doc_of(method: str) -> str | None:
    """The documentation of ``rump_sys_NAME``, ``rump_pub_NAME`` or a command."""
    if method in COMMANDS:
        return COMMANDS[method] + _COMMON
    if method.startswith("rump_sys_"):
        return SYSCALLS.get(method[len("rump_sys_"):])
    if method.startswith("rump_pub_"):
        return PUB.get(method[len("rump_pub_"):])
    return None


def document(cls: Any, where: str = "") -> None:
    """Give the ``rump_sys_*``/``rump_pub_*`` methods of ``cls`` their documentation
    (``where`` is added: "Run in the rump_server.")."""
    for name, fn in vars(cls).items():
        doc = doc_of(name)
        if doc is not None and callable(fn) and not getattr(fn, "__doc__", None):
            fn.__doc__ = f"{doc} {where}".rstrip()
