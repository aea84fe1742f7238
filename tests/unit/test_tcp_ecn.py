"""ECN for TCP (RFC 3168 section 6.1; rumpnet.netinet.tcp_ecn), smoltcp-shaped: a segment
in (with the ECN field of its IP header as ``ip_ecn``), exactly what comes out (each with
the ECN codepoint TCP gave IP as ``ip_ecn``), and nothing else.

Negotiation both ways (6.1.1), ECT(0) on new data only (6.1.4-6.1.6), the receiver's ECE
until CWR (6.1.3), the sender's reduction once per window without retransmitting (6.1.2).
"""

from __future__ import annotations

import errno
from typing import Any

import pytest
from test_tcp_harness import (
    LOCAL,
    LPORT,
    R_ISS,
    RPORT,
    TH_ACK,
    TH_FIN,
    TH_PUSH,
    TH_SYN,
    Env,
    TcpRepr,
    TcpState,
    replace,
    seg,
)

from rumpnet.netinet.ip_var import IPTOS_ECN_CE, IPTOS_ECN_ECT0, IPTOS_ECN_ECT1
from rumpnet.netinet.tcp import TH_CWR, TH_ECE
from rumpnet.netinet.tcp_ctloutput import TCPI_OPT_ECN, tcp_fill_info
from rumpnet.netinet.tcp_var import TF_ECN_PERMIT, TcpCb

MSS = 1460
SETUP = TH_ECE | TH_CWR
ECT0 = IPTOS_ECN_ECT0
CE = IPTOS_ECN_CE


def ecn_established(env: Env, synack_flags: int = TH_SYN | TH_ACK | TH_ECE, **opts: Any) -> TcpCb:
    """An active open with ecn.enable=1: our ECN-setup SYN, the peer's SYN-ACK
    (``synack_flags``), our ACK -- none of them ECT (6.1.1)."""
    cb = env.connect(0.0, **opts)
    extra = {"sack_permitted": True} if env.params.sack else {}
    env.expect(None, replace(env.syn_of(cb), flags=TH_SYN | SETUP, **extra))
    env.send(0.0, seg(seq=R_ISS, ack=cb.iss + 1, flags=synack_flags, mss=MSS, **extra))
    env.expect(None, env.ack_of(cb))
    assert cb.state == TcpState.ESTABLISHED
    return cb


def data(cb: TcpCb, off: int, n: int, flags: int = TH_ACK, ecn: int = ECT0) -> TcpRepr:
    """Our data segment of ``n`` bytes at stream offset ``off``."""
    return TcpRepr(LPORT, RPORT, cb.iss + 1 + off, cb.rcv_nxt, flags, 65535,
                   payload=b"x" * n, ip_ecn=ecn)


def peer_ack(env: Env, cb: TcpCb, now: float, n: int, flags: int = TH_ACK, **kw: Any) -> None:
    env.send(now, seg(seq=cb.rcv_nxt, ack=cb.iss + 1 + n, flags=flags, **kw))


def peer_data(env: Env, cb: TcpCb, now: float, payload: bytes, flags: int = TH_ACK | TH_PUSH,
              ecn: int = ECT0) -> None:
    env.send(now, seg(seq=cb.rcv_nxt, ack=cb.snd_una, flags=flags, payload=payload, ip_ecn=ecn))


# ----- negotiation (RFC 3168 6.1.1) ---------------------------------------------------------
@pytest.mark.parametrize(("enable", "flags"), [(0, TH_SYN), (1, TH_SYN | SETUP), (2, TH_SYN)])
def test_syn_asks_for_ecn_only_with_enable_1(enable: int, flags: int) -> None:
    env = Env(ecn_enable=enable)
    cb = env.connect(0.0)
    env.expect(None, replace(env.syn_of(cb), flags=flags))      # and Not-ECT (6.1.1)


def test_ecn_setup_synack_negotiates_and_new_data_is_ect0() -> None:
    env = Env(ecn_enable=1)
    cb = ecn_established(env)
    assert cb.t_flags & TF_ECN_PERMIT and env.stats.tcps_ecn_shs == 1
    assert tcp_fill_info(cb, 0.0)[5] & TCPI_OPT_ECN
    cb.send(b"x" * 100, 0.1)
    env.expect(None, data(cb, 0, 100, TH_ACK | TH_PUSH))
    assert env.stats.tcps_ecn_sndect0 == 1
    # The pure ACK of the peer's data is Not-ECT (6.1.4).
    peer_data(env, cb, 0.2, b"y" * 10)
    env.expect(0.5, env.ack_of(cb))
    assert env.stats.tcps_ecn_ect == 1                  # the peer's data came ECT(0)


@pytest.mark.parametrize("synack", [TH_SYN | TH_ACK, TH_SYN | TH_ACK | TH_ECE | TH_CWR])
def test_synack_that_is_not_ecn_setup_leaves_ecn_off(synack: int) -> None:
    """A SYN-ACK without ECE, or with both ECE and CWR, is not an ECN-setup SYN-ACK."""
    env = Env(ecn_enable=1)
    cb = ecn_established(env, synack)
    assert not cb.t_flags & TF_ECN_PERMIT and env.stats.tcps_ecn_shs == 0
    cb.send(b"x" * 100, 0.1)
    env.expect(None, data(cb, 0, 100, TH_ACK | TH_PUSH, ecn=0))


def test_ecn_setup_synack_ignored_unless_we_asked() -> None:
    env = Env(ecn_enable=2)                             # accept only: our SYN is plain
    cb = env.connect(0.0)
    env.expect(None, env.syn_of(cb))
    env.send(0.0, seg(seq=R_ISS, ack=cb.iss + 1, flags=TH_SYN | TH_ACK | TH_ECE, mss=MSS))
    env.expect(None, env.ack_of(cb))
    assert not cb.t_flags & TF_ECN_PERMIT


@pytest.mark.parametrize(("retries", "ecn_rexmits"), [(1, 1), (0, 0), (3, 3)])
def test_ecn_setup_syn_resent_maxretries_times(retries: int, ecn_rexmits: int) -> None:
    """RFC 3168 6.1.1.1: an ECN-setup SYN that gets no answer may be dropped for its ECN
    bits; after ecn.maxretries retransmissions the SYN goes without them."""
    env = Env(ecn_enable=1, ecn_maxretries=retries)
    cb = env.connect(0.0)
    env.recv()
    out = env.run_until(40.0)
    assert len(out) == 5 and all(r.seq == cb.iss and r.ip_ecn == 0 for _, r in out)
    assert [r.flags for _, r in out] == [TH_SYN | SETUP] * ecn_rexmits + [TH_SYN] * (5 - ecn_rexmits)


@pytest.mark.parametrize(("enable", "syn", "answer"), [
    (1, TH_SYN | SETUP, TH_SYN | TH_ACK | TH_ECE),
    (2, TH_SYN | SETUP, TH_SYN | TH_ACK | TH_ECE),
    (0, TH_SYN | SETUP, TH_SYN | TH_ACK),
    (2, TH_SYN | TH_ECE, TH_SYN | TH_ACK),              # not an ECN-setup SYN
    (2, TH_SYN | TH_CWR, TH_SYN | TH_ACK),
])
def test_listener_answers_ecn_setup_syn(enable: int, syn: int, answer: int) -> None:
    env = Env(ecn_enable=enable)
    lst = env.proto.listen(LOCAL, LPORT, 5, 0.0)
    env.send(0.0, seg(seq=R_ISS, flags=syn, mss=MSS))
    got = env.recv()
    iss = got[0].seq
    assert got == [TcpRepr(LPORT, RPORT, iss, R_ISS + 1, answer, 65535, mss=1460)]
    env.send(0.1, seg(seq=R_ISS + 1, ack=iss + 1))
    cb = lst.accept()
    assert cb is not None and bool(cb.t_flags & TF_ECN_PERMIT) == bool(answer & TH_ECE)
    assert env.stats.tcps_ecn_shs == (1 if answer & TH_ECE else 0)
    cb.send(b"x" * 10, 0.2)
    env.expect(None, TcpRepr(LPORT, RPORT, iss + 1, R_ISS + 1, TH_ACK | TH_PUSH, 65535,
                             payload=b"x" * 10, ip_ecn=ECT0 if answer & TH_ECE else 0))


def test_simultaneous_open_takes_an_ecn_setup_syn() -> None:
    """SYN-SENT gets an ECN-setup SYN: the SYN-ACK we answer with is ECN-setup (as a
    listener's), with ecn.enable=2 too (the FreeBSD suite's syn-rcvd-via-syn-sent ecn01)."""
    env = Env(ecn_enable=2)
    cb = env.connect(0.0)
    env.expect(None, env.syn_of(cb))
    env.send(0.1, seg(seq=R_ISS, flags=TH_SYN | SETUP, mss=MSS))
    env.expect(None, TcpRepr(LPORT, RPORT, cb.iss, R_ISS + 1, TH_SYN | TH_ACK | TH_ECE, 65535,
                             mss=1460))
    env.send(0.2, seg(seq=R_ISS + 1, ack=cb.iss + 1))
    assert cb.state == TcpState.ESTABLISHED and cb.t_flags & TF_ECN_PERMIT
    cb.send(b"x" * 10, 0.3)
    env.expect(None, data(cb, 0, 10, TH_ACK | TH_PUSH))


# ----- ECT(0) on new data only (RFC 3168 6.1.4-6.1.6) -------------------------------------------
def test_retransmission_is_not_ect_and_new_data_after_it_carries_cwr() -> None:
    """An RTO retransmission is Not-ECT and carries no CWR (6.1.5); the timeout reduced
    cwnd, so the first new data after it carries CWR (6.1.2), once."""
    env = Env(ecn_enable=1)
    cb = ecn_established(env)
    cb.send(b"x" * MSS, 0.0)
    env.expect(None, data(cb, 0, MSS, TH_ACK | TH_PUSH))
    out = env.run_until(1.5)
    assert [r for _, r in out] == [data(cb, 0, MSS, TH_ACK | TH_PUSH, ecn=0)]
    peer_ack(env, cb, 1.6, MSS)
    env.nothing()
    cb.send(b"x" * 100, 1.7)
    env.expect(None, data(cb, MSS, 100, TH_ACK | TH_PUSH | TH_CWR))
    peer_ack(env, cb, 1.75, MSS + 100)
    cb.send(b"x" * 100, 1.8)
    env.expect(None, data(cb, MSS + 100, 100, TH_ACK | TH_PUSH))
    assert env.stats.tcps_ecn_sndcwr == 1


def test_window_probe_and_fin_are_not_ect() -> None:
    env = Env(ecn_enable=1)
    cb = ecn_established(env)
    peer_ack(env, cb, 0.0, 0, window=0)
    cb.send(b"xyz", 0.0)
    out = env.run_until(5.0)
    assert [r for _, r in out] == [replace(data(cb, 0, 1, ecn=0), payload=b"x")]   # 6.1.6
    peer_ack(env, cb, 5.1, 1, window=65535)
    env.expect(None, replace(data(cb, 1, 2, TH_ACK | TH_PUSH), payload=b"yz"))   # new: ECT
    peer_ack(env, cb, 5.2, 3)
    cb.shutdown_write(5.2)
    env.expect(None, env.ack_of(cb, seq=cb.iss + 4, flags=TH_ACK | TH_FIN))


# ----- receiver: CE -> ECE until CWR (RFC 3168 6.1.3) ---------------------------------------
def test_ce_sets_ece_on_every_segment_until_cwr() -> None:
    env = Env(ecn_enable=1)
    cb = ecn_established(env)
    peer_data(env, cb, 0.1, b"a" * 100, ecn=CE)
    env.expect(None, env.ack_of(cb, flags=TH_ACK | TH_ECE))    # at once, not delayed
    assert env.stats.tcps_ecn_ce == 1
    peer_data(env, cb, 0.2, b"b" * 100)
    env.nothing()                                             # delayed as usual ...
    env.expect(0.4, env.ack_of(cb, flags=TH_ACK | TH_ECE))     # ... and ECE still
    cb.send(b"x" * 10, 0.5)
    env.expect(None, data(cb, 0, 10, TH_ACK | TH_PUSH | TH_ECE))   # data carries it too
    peer_data(env, cb, 0.6, b"c" * 100, flags=TH_ACK | TH_PUSH | TH_CWR)
    env.expect(0.8, env.ack_of(cb))                           # CWR: the echo ends
    peer_data(env, cb, 0.9, b"d" * 100, flags=TH_ACK | TH_PUSH | TH_CWR, ecn=CE)
    env.expect(None, env.ack_of(cb, flags=TH_ACK | TH_ECE))    # CWR first, then CE again
    assert env.stats.tcps_ecn_ce == 2 and env.stats.tcps_ecn_sndece == 4


def test_ect1_is_ecn_capable_too() -> None:
    """RFC 8311 3: the nonce is historic; ECT(1) is counted, not checked."""
    env = Env(ecn_enable=1)
    cb = ecn_established(env)
    peer_data(env, cb, 0.1, b"a" * 100, ecn=IPTOS_ECN_ECT1)
    env.expect(0.3, env.ack_of(cb))
    assert env.stats.tcps_ecn_ect1 == 1 and env.stats.tcps_ecn_ce == 0


def test_no_ecn_connection_ignores_ce_and_ece() -> None:
    env = Env(ecn_enable=0)
    cb = env.established()
    peer_data(env, cb, 0.1, b"a" * 100, ecn=CE)
    env.expect(0.3, env.ack_of(cb))
    cb.send(b"x" * (4 * MSS), 0.4)
    assert len(env.recv()) == 4
    cwnd = cb.snd_cwnd
    peer_ack(env, cb, 0.5, 2 * MSS, flags=TH_ACK | TH_ECE)
    assert cb.snd_cwnd > cwnd and env.stats.tcps_ecn_rcwnd == 0
    assert env.stats.tcps_ecn_ce == 0 and env.stats.tcps_ecn_sndece == 0


def test_ce_on_an_unacceptable_segment_is_not_echoed() -> None:
    """Only an acceptable segment's CE counts: one outside the window is answered with a
    plain ACK and dropped (tcps_rcvpackafterwin), its CE with it."""
    env = Env(ecn_enable=1)
    cb = ecn_established(env)
    env.send(0.1, seg(seq=cb.rcv_nxt + 400_000, ack=cb.snd_una, payload=b"z" * 100,
                      ip_ecn=CE))
    env.expect(None, env.ack_of(cb))
    assert env.stats.tcps_rcvpackafterwin == 1 and env.stats.tcps_ecn_ce == 0


# ----- sender: ECE -> one reduction per window, CWR, nothing resent (RFC 3168 6.1.2) ----------------
@pytest.mark.parametrize("sack", [0, 1])
def test_ece_reduces_cwnd_once_per_window_without_retransmitting(sack: int) -> None:
    env = Env(ecn_enable=1, sack=sack)
    cb = ecn_established(env)
    cb.send(b"x" * (30 * MSS), 0.0)
    assert len(env.recv()) == 10                              # the initial window
    peer_ack(env, cb, 0.1, 2 * MSS, flags=TH_ACK | TH_ECE)
    st = env.stats
    assert st.tcps_ecn_rcwnd == 1 and cb.ecn_recover == cb.iss + 1 + 10 * MSS
    assert cb.snd_ssthresh == 5 * MSS      # FlightSize 10 SMSS when the ECE came, halved
    # PRR: 2 SMSS delivered of RecoverFS 8 at ssthresh/RecoverFS = 1/2: one segment out,
    # new data, with CWR (and nothing resent).
    env.expect(None, data(cb, 10 * MSS, MSS, TH_ACK | TH_CWR))
    peer_ack(env, cb, 0.2, 4 * MSS, flags=TH_ACK | TH_ECE)    # the same window: no more
    assert st.tcps_ecn_rcwnd == 1
    env.expect(None, data(cb, 11 * MSS, MSS))                 # PRR, no CWR
    peer_ack(env, cb, 0.3, 10 * MSS, flags=TH_ACK | TH_ECE)   # exactly its end: still on
    assert st.tcps_ecn_rcwnd == 1 and cb.ecn_recover is not None
    got = env.recv()
    assert got and all(not g.flags & TH_CWR and g.ip_ecn == ECT0 for g in got)
    peer_ack(env, cb, 0.4, 11 * MSS)                          # above it, no ECE: over
    assert cb.ecn_recover is None and cb.snd_cwnd == cb.snd_ssthresh == 5 * MSS
    env.recv()
    peer_ack(env, cb, 0.5, 12 * MSS, flags=TH_ACK | TH_ECE)   # a new CE: a new reduction
    assert st.tcps_ecn_rcwnd == 2 and cb.snd_ssthresh == 5 * MSS // 2
    env.nothing()              # PRR: 1 SMSS delivered of RecoverFS 5 gives 1/2 SMSS
    peer_ack(env, cb, 0.6, 13 * MSS)
    env.expect(None, data(cb, 16 * MSS, MSS, TH_ACK | TH_CWR))
    assert st.tcps_sndrexmitpack == 0 and st.tcps_fast_rexmit == 0


def test_ece_ack_does_not_grow_cwnd() -> None:
    """The ACK that carries ECE sets cwnd by PRR; it does not also grow it as an ACK of
    new data would (6.1.2: SHOULD NOT increase cwnd)."""
    env = Env(ecn_enable=1, sack=1)
    cb = ecn_established(env)
    cb.send(b"x" * (30 * MSS), 0.0)
    env.recv()
    cwnd = cb.snd_cwnd
    peer_ack(env, cb, 0.1, 2 * MSS, flags=TH_ACK | TH_ECE)
    assert cb.snd_cwnd == 9 * MSS < cwnd                     # pipe 8 SMSS + sndcnt 1


def test_loss_in_an_ecn_reduction_is_not_a_second_reduction() -> None:
    """Loss found while an ECN reduction of the window is under way: fast recovery resends
    the lost segment but keeps the reduction's ssthresh (6.1.2: once per window)."""
    env = Env(ecn_enable=1, sack=1, recovery="dupack")
    cb = ecn_established(env)
    cb.send(b"x" * (30 * MSS), 0.0)
    env.recv()
    peer_ack(env, cb, 0.1, 4 * MSS, flags=TH_ACK | TH_ECE)
    assert cb.snd_ssthresh == 5 * MSS                         # FlightSize 10 SMSS, halved
    assert len(env.recv()) == 2                               # PRR: 4 delivered of 10
    base = cb.iss + 1
    for k in range(5, 8):                                     # segment 4 lost
        peer_ack(env, cb, 0.2, 4 * MSS, sack_blocks=((base + 5 * MSS, base + k * MSS + MSS),))
    assert cb.in_recovery and env.stats.tcps_fast_rexmit == 1
    # Not halved again (FlightSize is 8 SMSS now: a second reduction would give 4).
    assert cb.snd_ssthresh == 5 * MSS and env.stats.tcps_ecn_rcwnd == 1
    assert data(cb, 4 * MSS, MSS, ecn=0) in env.recv()        # resent, Not-ECT


def test_fast_recovery_queues_cwr() -> None:
    env = Env(ecn_enable=1, sack=1, recovery="dupack")
    cb = ecn_established(env)
    cb.send(b"x" * (30 * MSS), 0.0)
    env.recv()
    base = cb.iss + 1
    for k in range(1, 3):                                     # segment 0 lost
        peer_ack(env, cb, 0.1, 0, sack_blocks=((base + MSS, base + k * MSS + MSS),))
    assert all(not g.flags & TH_CWR for g in env.recv())      # limited transmit
    peer_ack(env, cb, 0.1, 0, sack_blocks=((base + MSS, base + 4 * MSS),))
    assert cb.in_recovery
    env.expect(None, data(cb, 0, MSS, ecn=0))                 # the fast retransmission
    new: list[TcpRepr] = []
    for k in range(5, 11):
        peer_ack(env, cb, 0.2, 0, sack_blocks=((base + MSS, base + k * MSS),))
        new += [g for g in env.recv() if g.seq >= base + 12 * MSS]
    assert new and all(g.ip_ecn == ECT0 for g in new)        # PRR sent new data ...
    assert [g.flags & TH_CWR for g in new] == [TH_CWR] + [0] * (len(new) - 1)   # CWR once


def test_tail_loss_repaired_by_a_probe_queues_cwr() -> None:
    """RFC 8985 7.4.2: the probe repaired a loss (an ACK beyond the probe, no D-SACK), so
    cwnd is reduced as fast recovery would; the first new data after it carries CWR
    (RFC 3168 6.1.2), the probe itself is a retransmission and Not-ECT (6.1.5)."""
    env = Env(ecn_enable=1, sack=1)
    cb = ecn_established(env)
    cb.send(b"x" * (10 * MSS), 0.0)
    assert len(env.recv()) == 10
    peer_ack(env, cb, 0.1, 9 * MSS)                           # the last segment lost
    env.nothing()
    out = env.run_until(0.9)
    assert [r for _, r in out] == [data(cb, 9 * MSS, MSS, TH_ACK | TH_PUSH, ecn=0)]
    peer_ack(env, cb, 0.91, 10 * MSS)                          # the probe arrived
    cb.send(b"x" * 100, 0.92)
    env.expect(None, data(cb, 10 * MSS, 100, TH_ACK | TH_PUSH))   # before the verdict
    peer_ack(env, cb, 0.95, 10 * MSS + 100)                    # beyond the probe
    assert env.stats.tcps_tlp_recovered == 1 and cb.snd_cwnd == cb.snd_ssthresh
    cb.send(b"x" * 100, 0.96)
    env.expect(None, data(cb, 10 * MSS + 100, 100, TH_ACK | TH_PUSH | TH_CWR))
    assert env.stats.tcps_ecn_sndcwr == 1


def test_tail_loss_repaired_within_an_ecn_reduction_is_not_a_second_reduction() -> None:
    """A probe that repairs a loss of the window an ECE already reduced leaves ssthresh
    alone (RFC 3168 6.1.2: once per window) and queues no second CWR."""
    env = Env(ecn_enable=1, sack=1)
    cb = ecn_established(env)
    cb.send(b"x" * (10 * MSS), 0.0)
    assert len(env.recv()) == 10
    peer_ack(env, cb, 0.1, 4 * MSS, flags=TH_ACK | TH_ECE)
    assert cb.snd_ssthresh == 5 * MSS                         # FlightSize 10 SMSS, halved
    for k in range(5, 10):                                    # the last segment lost
        peer_ack(env, cb, 0.1, k * MSS)
    env.nothing()
    out = env.run_until(0.9)
    assert [r for _, r in out] == [data(cb, 9 * MSS, MSS, TH_ACK | TH_PUSH, ecn=0)]
    peer_ack(env, cb, 0.91, 10 * MSS)
    cb.send(b"x" * 100, 0.92)
    env.expect(None, data(cb, 10 * MSS, 100, TH_ACK | TH_PUSH | TH_CWR))   # the ECE's CWR
    peer_ack(env, cb, 0.95, 10 * MSS + 100)                    # beyond the probe
    assert env.stats.tcps_tlp_recovered == 1
    assert cb.snd_ssthresh == 5 * MSS == cb.snd_cwnd and env.stats.tcps_ecn_rcwnd == 1
    cb.send(b"x" * 100, 0.96)
    env.expect(None, data(cb, 10 * MSS + 100, 100, TH_ACK | TH_PUSH))
    assert env.stats.tcps_ecn_sndcwr == 1


# ----- the sysctls ---------------------------------------------------------------------
def test_sysctl_ecn_enable_and_maxretries(vnet: Any) -> None:
    """net.inet.tcp.ecn.enable (NetBSD's and FreeBSD's name; NetBSD's default 0) takes
    FreeBSD's 0, 1, 2 and refuses the rest; ecn.maxretries defaults to 1 as in both."""
    k = vnet.kernel(1)
    assert k.sysctl("-n", "net.inet.tcp.ecn.enable", "net.inet.tcp.ecn.maxretries") == "0\n1\n"
    assert k.sysctl("-w", "net.inet.tcp.ecn.enable=2") == "net.inet.tcp.ecn.enable: 0 -> 2\n"
    assert k.inet.tcp.params.ecn_enable == 2
    for bad in ("3", "-1"):
        with pytest.raises(OSError) as e:
            k.sysctl("-w", f"net.inet.tcp.ecn.enable={bad}")
        assert e.value.errno == errno.EINVAL
    assert k.inet.tcp.params.ecn_enable == 2
