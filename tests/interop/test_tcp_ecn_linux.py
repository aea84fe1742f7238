"""ECN with the Linux kernel as the peer (RFC 3168 section 6.1), through a tap into a
namespace where ``net.ipv4.tcp_ecn=1`` (Linux asks for ECN and takes it).

The congestion marks come from our own fault model: a netem qdisc with ``loss 2% ecn`` in
the rumpnet kernel on the path (the host kernel here has no netem), on its egress toward
Linux for our data and on its ingress for Linux's. A capture of the interface (a bpf tap:
before the egress qdisc, after the ingress one) is the witness:

* we send to Linux: our ECN-setup SYN and Linux's ECN-setup SYN-ACK; our data ECT(0) and
  nothing else; Linux's ACKs echo the CE marks (ECE), and we answer with one cwnd
  reduction per window (tcps_ecn_rcwnd), CWR on the next new data, and no retransmission;
* Linux sends to us: Linux's ECN-setup SYN and our ECN-setup SYN-ACK; Linux's data
  ECT(0); every CE our netem marked reaches our TCP, which echoes ECE until Linux's CWR.
"""

from __future__ import annotations

import hashlib
import socket
from dataclasses import dataclass, field
from typing import Any

import pytest
from test_tcp_loss_linux import send_to_sink, tcp_segment

from rumpnet.netinet import tcp as tcpw
from rumpnet.testing.netns import have_netns_privileges, ns_python_popen, ns_run

_ok, _why = have_netns_privileges()
pytestmark = [pytest.mark.interop, pytest.mark.skipif(not _ok, reason=_why), pytest.mark.timeout(180)]

SIZE = 4 * 1024 * 1024
PORT = 5001
SETUP = tcpw.TH_ECE | tcpw.TH_CWR

SOURCE = r"""
import hashlib, socket, sys
block = hashlib.sha256(b"ecn").digest() * 2048
n = int(sys.argv[3]); data = (block * (n // len(block) + 1))[:n]
c = socket.create_connection((sys.argv[1], int(sys.argv[2])))
c.sendall(data); c.shutdown(socket.SHUT_WR)
while c.recv(65536):
    pass
print("sent", hashlib.sha256(data).hexdigest(), flush=True)
"""


def _pattern(n: int) -> bytes:
    block = hashlib.sha256(b"ecn").digest() * 2048
    return (block * (n // len(block) + 1))[:n]


@dataclass
class EcnWitness:
    """A bpf writer that sorts the connection's frames: (TOS, flags, payload length,
    sequence number) of each, by direction."""

    kernel_addr: bytes
    ours: list[tuple[int, int, int, int]] = field(default_factory=list)
    theirs: list[tuple[int, int, int, int]] = field(default_factory=list)

    def write(self, frame: Any, ts: float) -> None:
        f = bytes(frame)
        seg = tcp_segment(f)
        if seg is None or PORT not in (seg.sport, seg.dport):
            return
        row = (f[15], seg.flags, len(seg.payload), seg.seq)
        (self.ours if f[26:30] == self.kernel_addr else self.theirs).append(row)


def _syn(rows: list[tuple[int, int, int, int]]) -> int:
    return next(fl for _, fl, _, _ in rows if fl & tcpw.TH_SYN)


def _new_data_and_rest(rows: list[tuple[int, int, int, int]]) -> tuple[list[int], list[int], int]:
    """TOS of the frames that carry new data, TOS of all others (SYN, ACKs, FIN, data
    sent before), and how many of those others resent data."""
    new: list[int] = []
    other: list[int] = []
    resent = top = 0
    base = rows[0][3]                         # the SYN's sequence number
    for tos, _, n, seq in rows:
        rel = (seq - base) & 0xFFFFFFFF
        if n and rel >= top:
            new.append(tos)
            top = rel + n
        else:
            other.append(tos)
            resent += bool(n)
    return new, other, resent


def _ecn_path(peer: Any, enable: int, direction: str) -> tuple[EcnWitness, Any, Any]:
    """Linux with net.ipv4.tcp_ecn=1, the kernel with ecn.enable=``enable`` and a netem
    that marks 2% on its ``direction`` (root: toward Linux, ingress: from it); the capture
    (witness, interface, tap)."""
    k = peer.kernel
    ns_run(peer.ns, ["sysctl", "-qw", "net.ipv4.tcp_ecn=1"], check=True)
    k.sysctl("-w", f"net.inet.tcp.ecn.enable={enable}")
    k.sched.run(lambda: k.tc("qdisc", "add", "dev", "virt0", direction, "netem", "delay", "5ms",
                             "loss", "2%", "ecn", "seed", "7"))
    witness = EcnWitness(socket.inet_aton(peer.kernel_addr))
    ifp = k.ifnet.lookup("virt0")
    tap = k.sched.run(lambda: ifp.bpf_attach(witness))
    return witness, ifp, tap


def _handshake_and_marks(peer: Any, witness: EcnWitness, ifp: Any, tap: Any, we_open: bool) -> tuple[Any, int]:
    """The capture ends; the handshake it saw negotiated ECN (an ECN-setup SYN from the
    opener, an ECN-setup SYN-ACK, ECE alone, from the other); our counters and the marks
    our netem made."""
    k = peer.kernel
    k.sched.run(lambda: ifp.bpf_detach(tap))
    opener, answerer = (witness.ours, witness.theirs) if we_open else (witness.theirs, witness.ours)
    assert _syn(opener) & SETUP == SETUP
    assert _syn(answerer) & SETUP == tcpw.TH_ECE
    st = k.inet.tcp.stats
    assert st.tcps_ecn_shs == 1
    qdisc = ifp.qdisc("egress" if we_open else "ingress")
    return st, k.sched.run(lambda: qdisc.netem.stats.ecn_marked)


def _with_flag(rows: list[tuple[int, int, int, int]], flag: int) -> int:
    """Segments other than SYNs that carry ``flag``."""
    return sum(1 for _, fl, _, _ in rows if fl & flag and not fl & tcpw.TH_SYN)


def test_ecn_to_linux_reduces_cwnd_on_its_echo(rump_linux_peer: Any) -> None:
    peer = rump_linux_peer
    witness, ifp, tap = _ecn_path(peer, 1, "root")
    data = _pattern(SIZE)
    reply = send_to_sink(peer, data, PORT)
    st, marks = _handshake_and_marks(peer, witness, ifp, tap, we_open=True)
    assert reply.split() == [str(SIZE).encode(), hashlib.sha256(data).hexdigest().encode()]
    # ECT(0) on new data, Not-ECT on everything else (SYN, ACKs, FIN).
    new, other, resent = _new_data_and_rest(witness.ours)
    assert len(new) > 2000 and set(new) == {2} and set(other) <= {0}
    # Linux echoed the marks; we reduced once per window, sent CWR, resent nothing.
    assert marks > 20
    echoes, cwrs = _with_flag(witness.theirs, tcpw.TH_ECE), _with_flag(witness.ours, tcpw.TH_CWR)
    assert echoes > 0 and 0 < st.tcps_ecn_rcwnd <= marks
    assert cwrs == st.tcps_ecn_sndcwr >= st.tcps_ecn_rcwnd
    assert resent == 0 and st.tcps_sndrexmitpack == 0, st.as_dict()


def test_ecn_from_linux_echoes_ce_until_cwr(rump_linux_peer: Any) -> None:
    peer = rump_linux_peer
    k = peer.kernel
    witness, ifp, tap = _ecn_path(peer, 2, "ingress")        # we accept only
    lfd = k.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    k.rump_sys_bind(lfd, ("0.0.0.0", PORT))
    k.rump_sys_listen(lfd, 1)
    h = hashlib.sha256()
    n = 0
    with ns_python_popen(peer.ns, SOURCE, args=(peer.kernel_addr, str(PORT), str(SIZE))) as src:
        fd, _ = k.rump_sys_accept(lfd)
        while d := k.rump_sys_recv(fd, 1 << 20, 0):
            h.update(d)
            n += len(d)
        k.rump_sys_close(fd)
        assert src.stdout.readline().split() == ["sent", h.hexdigest()]
    k.rump_sys_close(lfd)
    st, marks = _handshake_and_marks(peer, witness, ifp, tap, we_open=False)
    assert n == SIZE
    # Linux's new data is ECN-capable (CE where our netem marked it: the tap is after it).
    new, _, _ = _new_data_and_rest(witness.theirs)
    assert len(new) > 2000 and set(new) <= {2, 3}
    assert marks > 20 and sum(1 for t in new if t == 3) <= marks
    assert st.tcps_ecn_ce == marks                            # every mark reached TCP
    echoes, cwrs = _with_flag(witness.ours, tcpw.TH_ECE), _with_flag(witness.theirs, tcpw.TH_CWR)
    assert echoes == st.tcps_ecn_sndece > 0
    assert cwrs > 0                                           # Linux heard the echo
    assert all(t & 3 == 0 for t, _, _, _ in witness.ours)     # our ACKs are Not-ECT
