"""Sending under loss to the Linux kernel (issue 13): 20 MB from the stack to Linux through
2% loss, with no timeout-driven retransmission of a segment that SACK information had
already deemed lost.

The loss is our own fault model: a netem qdisc on the kernel's interface toward Linux
(``tc qdisc add dev virt0 root netem delay 5ms loss 2%``; the host kernel has no netem).
Linux, in its namespace, is the receiver: its advertised window changes on nearly every
ACK, which is what kept duplicate ACKs from counting before (RFC 6675 section 2).

Two independent witnesses:

* the kernel's counters: ``tcps_rexmttimeo_sacklost`` (RTOs of a segment SACK had deemed
  lost, never resent before) must stay 0; the send counters must equal the frames the
  interface carried;
* a capture of the interface (a bpf tap, before the qdisc): from Linux's ACKs it keeps
  RFC 6675's IsLost for each segment in flight, and it finds no segment sent once whose
  first retransmission came more than half a second (RTO at least 1 s, RTT 5 ms) after
  SACK said it was lost.
"""

from __future__ import annotations

import hashlib
import socket
import struct
from typing import Any

import pytest

from rumpnet.netinet import tcp as tcpw
from rumpnet.testing.netns import have_netns_privileges, ns_python_popen

_ok, _why = have_netns_privileges()
pytestmark = [pytest.mark.interop, pytest.mark.skipif(not _ok, reason=_why), pytest.mark.timeout(240)]

SIZE = 20 * 1024 * 1024
SMSS = 1448
DUPTHRESH = 3
STALL = 0.5      # seconds: a retransmission this long after IsLost was a timeout's

SINK = r"""
import hashlib, socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1); print("ready", flush=True)
c, _ = s.accept(); h = hashlib.sha256(); n = 0
while True:
    d = c.recv(1 << 20)
    if not d:
        break
    h.update(d); n += len(d)
c.sendall(f"{n} {h.hexdigest()}\n".encode()); c.close()
"""


def tcp_segment(f: bytes) -> tcpw.TcpRepr | None:
    """The TCP segment in an Ethernet frame of IPv4, or None for any other frame."""
    if len(f) < 54 or f[12:14] != b"\x08\x00" or f[23] != 6:
        return None
    ihl = (f[14] & 0x0F) * 4
    ip_len = struct.unpack_from("!H", f, 16)[0]
    return tcpw.parse(f[14 + ihl:14 + ip_len], csum_ok=True)


def send_to_sink(peer: Any, data: bytes, port: int = 5001) -> bytes:
    """``data`` from the kernel to :data:`SINK` run in the peer's namespace on ``port``;
    the sink's answer (``"<bytes> <sha256>\\n"``)."""
    k = peer.kernel
    with ns_python_popen(peer.ns, SINK, args=(peer.peer_addr, str(port))) as sink:
        assert sink.stdout.readline().strip() == "ready"
        fd = k.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
        k.rump_sys_connect(fd, (peer.peer_addr, port))
        view = memoryview(data)
        while view:
            view = view[k.rump_sys_send(fd, view[:262144], 0):]
        k.rump_sys_shutdown(fd, socket.SHUT_WR)
        reply = b""
        while not reply.endswith(b"\n"):
            d = k.rump_sys_recv(fd, 200, 0)
            if not d:
                break
            reply += d
        k.rump_sys_close(fd)
    return reply


class LossWitness:
    """A bpf writer (``write(frame, ts)``) that follows the connection from the frames:
    what the kernel sent, what Linux ACKed and SACKed, and so when each segment became
    lost by RFC 6675's IsLost and when it was resent."""

    def __init__(self, kernel_addr: str) -> None:
        self.me = socket.inet_aton(kernel_addr)
        self.origin: int | None = None
        self.frames = self.data_frames = 0
        self.sent: dict[int, int] = {}           # relative seq -> length, outstanding
        self.lost_at: dict[int, float] = {}      # relative seq -> when IsLost became true
        self.sacked: list[list[int]] = []        # merged SACKed ranges above the ACK
        self.una = 0
        self.stalls: list[tuple[int, float]] = []
        self.rexmits = 0
        self.resent: set[int] = set()            # segments retransmitted at least once

    def rel(self, seq: int) -> int:
        assert self.origin is not None
        return (seq - self.origin) & 0xFFFFFFFF

    def write(self, frame: Any, ts: float) -> None:
        f = bytes(frame)
        seg = tcp_segment(f)
        if seg is None:
            return
        if seg.dport == 5001 or seg.sport == 5001:
            if f[26:30] == self.me:
                self._sent(seg, ts)
            else:
                self._acked(seg, ts)

    def _sent(self, seg: tcpw.TcpRepr, ts: float) -> None:
        self.frames += 1
        n = len(seg.payload)
        if self.origin is None:
            self.origin = seg.seq
        if not n:
            return
        self.data_frames += 1
        s = self.rel(seg.seq)
        if s in self.sent or s < self.una:
            self.rexmits += 1
            lost = self.lost_at.pop(s, None)
            if lost is not None and ts - lost > STALL and s not in self.resent:
                self.stalls.append((s, ts - lost))   # sent once, lost by SACK, resent late
            self.resent.add(s)
        self.sent[s] = n

    def _acked(self, seg: tcpw.TcpRepr, ts: float) -> None:
        if self.origin is None or not seg.flags & tcpw.TH_ACK:
            return
        self.una = max(self.una, self.rel(seg.ack))
        for s in [s for s in self.sent if s + self.sent[s] <= self.una]:
            del self.sent[s]
            self.lost_at.pop(s, None)
        for a, b in seg.sack_blocks:
            a, b = self.rel(a), self.rel(b)
            if a >= self.una and b > a:
                self.sacked.append([a, b])
        self.sacked = _merge([r for r in self.sacked if r[1] > self.una])
        self._mark_lost(ts)

    def _mark_lost(self, ts: float) -> None:
        """RFC 6675 IsLost for each un-SACKed segment in flight."""
        for s in self.sent:
            if s in self.lost_at or any(a <= s < b for a, b in self.sacked):
                continue
            above = [(a, b) for a, b in self.sacked if a > s]
            if len(above) >= DUPTHRESH or sum(b - a for a, b in above) > (DUPTHRESH - 1) * SMSS:
                self.lost_at[s] = ts


def _merge(ranges: list[list[int]]) -> list[list[int]]:
    out: list[list[int]] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return out


def test_20mb_to_linux_through_2pct_loss_without_sack_lost_timeouts(rump_linux_peer: Any) -> None:
    peer = rump_linux_peer
    k = peer.kernel
    k.sched.run(lambda: k.tc("qdisc", "add", "dev", "virt0", "root", "netem", "delay", "5ms",
                             "loss", "2%", "seed", "13"))
    witness = LossWitness(peer.kernel_addr)
    ifp = k.ifnet.lookup("virt0")
    tap = k.sched.run(lambda: ifp.bpf_attach(witness))
    block = hashlib.sha256(b"issue 13").digest() * 2048
    data = (block * (SIZE // len(block) + 1))[:SIZE]
    reply = send_to_sink(peer, data)
    k.sched.run(lambda: ifp.bpf_detach(tap))
    assert reply.split() == [str(SIZE).encode(), hashlib.sha256(data).hexdigest().encode()]
    st = k.inet.tcp.stats
    drops = k.sched.run(lambda: ifp.qdisc("egress").netem.stats.drop_loss)
    assert drops > 100                                   # 2% of ~14,500 segments
    assert st.tcps_rexmttimeo_sacklost == 0, st.as_dict()
    assert witness.stalls == [], witness.stalls[:10]
    assert witness.rexmits >= drops // 2                  # the witness saw the repairs
    # The counters tell what the interface carried (superframes counted per segment).
    assert st.tcps_sndtotal == witness.frames
    assert st.tcps_sndpack + st.tcps_sndrexmitpack == witness.data_frames
