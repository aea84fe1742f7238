"""Delayed ACK, Nagle, SWS, persist, keepalive, challenge ACKs, SYN cache, backlog,
reassembly cap, ICMP, bindings."""

from __future__ import annotations

import errno
import struct

import pytest
from test_tcp_harness import (
    LOCAL,
    LPORT,
    R_ISS,
    REMOTE,
    RPORT,
    TH_ACK,
    TH_FIN,
    TH_PUSH,
    TH_RST,
    TH_SYN,
    Env,
    TcpRepr,
    TcpState,
    seg,
)

MSS = 1460


def data(env: Env, cb, now: float, off: int, payload: bytes, **kw) -> None:
    env.send(now, seg(seq=R_ISS + 1 + off, ack=cb.snd_una, payload=payload, **kw))


# ----- delayed ACK ----------------------------------------------------------------------
def test_delayed_ack_timer() -> None:
    env = Env(delack_ticks=100)
    cb = env.established()
    data(env, cb, 1.0, 0, b"a" * 100)
    env.nothing()
    assert env.proto.get_timer() == pytest.approx(1.1)
    env.nothing(1.05)
    env.expect(1.1, env.ack_of(cb, ack=R_ISS + 101))
    assert env.stats.tcps_delack == 1


def test_ack_every_second_segment() -> None:
    env = Env()
    cb = env.established()
    data(env, cb, 1.0, 0, b"a" * MSS)
    env.nothing()
    data(env, cb, 1.0, MSS, b"b" * MSS)
    env.expect(None, env.ack_of(cb, ack=R_ISS + 1 + 2 * MSS))
    env.nothing(2.0)


def test_out_of_order_acked_immediately() -> None:
    env = Env()
    cb = env.established()
    data(env, cb, 1.0, 100, b"x" * 100)
    env.expect(None, env.ack_of(cb, ack=R_ISS + 1))
    data(env, cb, 1.0, 0, b"y" * 100)            # fills the hole: immediate ACK
    env.expect(None, env.ack_of(cb, ack=R_ISS + 201))
    assert cb.recv(1000, 1.0) == b"y" * 100 + b"x" * 100


# ----- Nagle ------------------------------------------------------------------------------
def test_nagle_holds_small_segment() -> None:
    env = Env()
    cb = env.established()
    cb.send(b"a", 0.0)
    env.expect(None, TcpRepr(LPORT, RPORT, cb.iss + 1, R_ISS + 1, TH_ACK | TH_PUSH, 65535,
                             payload=b"a"))
    cb.send(b"b", 0.0)
    cb.send(b"c", 0.0)
    env.nothing()
    env.send(0.1, seg(seq=R_ISS + 1, ack=cb.iss + 2))
    env.expect(None, TcpRepr(LPORT, RPORT, cb.iss + 2, R_ISS + 1, TH_ACK | TH_PUSH, 65535,
                             payload=b"bc"))


def test_nodelay_sends_at_once() -> None:
    env = Env()
    cb = env.established(nodelay=True)
    assert cb.nodelay
    cb.send(b"a", 0.0)
    cb.send(b"b", 0.0)
    assert [g.payload for g in env.recv()] == [b"a", b"b"]


# ----- SWS avoidance -----------------------------------------------------------------------
def test_receiver_sws_avoidance() -> None:
    env = Env()
    cb = env.established(rcvbuf=10000)
    assert cb.rcvspace == 7 * MSS == 10220       # rounded up to whole segments (tcp_mss)
    data(env, cb, 0.0, 0, b"z" * MSS)
    for i in range(1, 6):
        data(env, cb, 0.0, i * MSS, b"z" * MSS)
    data(env, cb, 0.0, 6 * MSS, b"z" * 1000)      # 9760 bytes buffered
    acks = env.recv(0.1)                         # the delayed ACK for the 7th segment
    assert acks[-1].ack == R_ISS + 1 + 9760
    assert acks[-1].window == 460                # promised edge kept, not shrunk
    cb.recv(500, 0.2)
    env.nothing()                                # 960 free: too small to announce
    cb.recv(10220, 0.3)
    got = env.recv()
    assert len(got) == 1 and got[0].window == 10220
    assert env.stats.tcps_sndwinup >= 1


def test_sender_sws_small_window() -> None:
    env = Env()
    cb = env.established(peer_win=65535)
    cb.send(b"q" * 5000, 0.0)
    env.recv()
    env.send(0.1, seg(seq=R_ISS + 1, ack=cb.iss + 1 + 5000, window=100))
    cb.send(b"r" * 5000, 0.1)
    env.nothing()        # 100 bytes < half the max window: wait (no silly segment)


# ----- zero window / persist ---------------------------------------------------------------
def test_zero_window_probe_backoff_and_reopen() -> None:
    env = Env(persmin=5.0, persmax=60.0, rtomin=1.0)
    cb = env.established()
    cb.send(b"a" * 1000, 0.0)
    env.recv()
    env.send(0.0, seg(seq=R_ISS + 1, ack=cb.iss + 1001, window=0))
    cb.send(b"b" * 1000, 0.0)
    env.nothing()
    out = env.run_until(140.0)
    assert [t for t, _ in out] == [5.0, 10.0, 15.0, 23.0, 39.0, 71.0, 131.0]
    assert all(r.seq == cb.iss + 1001 and r.payload == b"b" for _, r in out)
    assert env.stats.tcps_persisttimeo == 7
    assert cb.state == TcpState.ESTABLISHED
    # window opens (the probe byte was not accepted)
    env.send(140.0, seg(seq=R_ISS + 1, ack=cb.iss + 1001, window=65535))
    got = env.recv()
    assert got[0].seq == cb.iss + 1001 and len(got[0].payload) == 1000


def test_zero_window_probe_accepted_byte() -> None:
    env = Env()
    cb = env.established()
    env.send(0.0, seg(seq=R_ISS + 1, ack=cb.iss + 1, window=0))
    cb.send(b"xyz", 0.0)
    out = env.run_until(5.0)
    assert out[0][1].payload == b"x"
    env.send(5.1, seg(seq=R_ISS + 1, ack=cb.iss + 2, window=1000))
    got = env.recv()
    assert got[0].seq == cb.iss + 2 and got[0].payload == b"yz"


def test_we_answer_zero_window_probe() -> None:
    env = Env()
    cb = env.established(rcvbuf=2 * MSS)             # whole segments: no rounding up
    data(env, cb, 0.0, 0, b"f" * 2 * MSS)
    env.recv(1.0)
    data(env, cb, 1.0, 2 * MSS, b"p")               # a probe into our zero window
    env.expect(None, env.ack_of(cb, ack=R_ISS + 2 * MSS + 1, window=0))
    assert env.stats.tcps_rcvwinprobe == 1
    assert cb.readable_bytes() == 2 * MSS


# ----- keepalive -------------------------------------------------------------------------
def test_keepalive_probes_and_drop() -> None:
    env = Env(keepidle=10.0, keepintvl=2.0, keepcnt=3)
    cb = env.established(keepalive=True)
    out = env.run_until(100.0)
    probes = [(t, r) for t, r in out if not r.flags & TH_RST]
    assert [t for t, _ in probes] == [10.0, 12.0, 14.0]
    assert all(r.seq == cb.iss and r.payload == b"" for _, r in probes)
    assert out[-1][1].flags & TH_RST and out[-1][0] == 16.0
    assert cb.state == TcpState.CLOSED and cb.error == errno.ETIMEDOUT
    assert env.stats.tcps_keepdrops == 1 and env.stats.tcps_keepprobe == 3


def test_keepalive_answered_keeps_connection() -> None:
    env = Env(keepidle=10.0, keepintvl=2.0, keepcnt=3)
    cb = env.established()
    cb.keepalive = True
    env.run_until(10.0)
    env.send(10.1, seg(seq=R_ISS + 1, ack=cb.iss + 1))
    out = env.run_until(19.0)
    assert out == []
    out = env.run_until(20.2)
    assert [t for t, _ in out] == [pytest.approx(20.1)]
    assert cb.state == TcpState.ESTABLISHED


# ----- challenge ACK limit -------------------------------------------------------------------
def test_challenge_ack_rate_limit() -> None:
    env = Env(challenge_ack_limit=2)
    cb = env.established()
    for _ in range(5):
        env.send(3.2, seg(seq=R_ISS + 50, flags=TH_RST))
    assert len(env.recv()) == 2
    assert env.stats.tcps_challenge_ack_limited == 3
    env.send(4.0, seg(seq=R_ISS + 50, flags=TH_SYN))
    assert len(env.recv()) == 1
    # too-old ACK also draws a challenge ACK (RFC 5961 5.2)
    env.send(4.0, seg(seq=R_ISS + 1, ack=cb.iss - 200_000))
    assert len(env.recv()) == 1
    assert cb.state == TcpState.ESTABLISHED


# ----- SYN cache, backlog ---------------------------------------------------------------
def test_syn_cache_overflow_bounded() -> None:
    env = Env(syn_cache_limit=4)
    env.proto.listen(LOCAL, LPORT, 100, 0.0)
    for i in range(10):
        env.send(0.0, seg(sport=2000 + i, seq=R_ISS, flags=TH_SYN))
    assert len(env.recv()) == 10
    assert env.proto.syn_cache_len() == 4
    assert env.stats.tcps_sc_overflowed == 6 and env.stats.tcps_sc_added == 10
    # the oldest were evicted: their ACK gets a RST
    env.send(0.0, seg(sport=2000, seq=R_ISS + 1, ack=12345))
    assert env.recv()[0].flags == TH_RST


def test_syn_cache_bucket_limit() -> None:
    env = Env(syn_bucket_limit=2, syn_cache_buckets=1)
    env.proto.listen(LOCAL, LPORT, 100, 0.0)
    for i in range(5):
        env.send(0.0, seg(sport=3000 + i, seq=R_ISS, flags=TH_SYN))
    assert env.proto.syn_cache_len() == 2
    assert env.stats.tcps_sc_bucketoverflow == 3


def test_syn_cache_synack_retransmit_and_timeout() -> None:
    env = Env(synack_retries=2, init_rto=1.0)
    env.proto.listen(LOCAL, LPORT, 5, 0.0)
    env.send(0.0, seg(seq=R_ISS, flags=TH_SYN))
    first = env.recv()[0]
    out = env.run_until(50.0)
    assert [t for t, _ in out] == [1.0, 3.0]
    assert all(r == first for _, r in out)
    assert env.proto.syn_cache_len() == 0 and env.stats.tcps_sc_timed_out == 1
    # duplicate SYN re-sends the SYN,ACK
    env.send(60.0, seg(seq=R_ISS, flags=TH_SYN))
    env.send(60.0, seg(seq=R_ISS, flags=TH_SYN))
    assert len(env.recv()) == 2 and env.stats.tcps_sc_dupesyn == 1


def test_backlog_honoured() -> None:
    env = Env()
    lst = env.proto.listen(LOCAL, LPORT, 1, 0.0)
    ev = []
    lst.upcall = lambda _lst, e: ev.append(e)
    env.send(0.0, seg(sport=4000, seq=R_ISS, flags=TH_SYN))
    sa = env.recv()[0]
    env.send(0.0, seg(sport=4000, seq=R_ISS + 1, ack=sa.seq + 1))
    assert lst.pending() == 1 and ev
    env.send(0.0, seg(sport=4001, seq=R_ISS, flags=TH_SYN))
    env.nothing()
    assert env.stats.tcps_listendrop == 1
    assert lst.accept() is not None and lst.accept() is None
    env.send(0.0, seg(sport=4001, seq=R_ISS, flags=TH_SYN))
    assert len(env.recv()) == 1


def test_listener_close_resets_queued() -> None:
    env = Env()
    lst = env.proto.listen(LOCAL, LPORT, 5, 0.0)
    env.send(0.0, seg(seq=R_ISS, flags=TH_SYN))
    sa = env.recv()[0]
    env.send(0.0, seg(seq=R_ISS + 1, ack=sa.seq + 1))
    lst.close(0.0)
    got = env.recv()
    assert [g.flags for g in got] == [TH_RST | TH_ACK]
    assert not list(env.proto.pcbs())
    env.proto.listen(LOCAL, LPORT, 5, 0.0)   # port free again


# ----- reassembly cap --------------------------------------------------------------------
def test_reassembly_queue_capped() -> None:
    env = Env(reass_maxbytes=1000)
    cb = env.established()
    data(env, cb, 0.0, 100, b"a" * 600)
    data(env, cb, 0.0, 1000, b"b" * 600)      # would exceed the cap: dropped
    assert cb.reass_bytes == 600
    assert env.stats.tcps_reass_overflow == 1
    assert len(env.recv()) == 2                # both still ACKed (dup ACKs)
    data(env, cb, 0.0, 0, b"c" * 100)
    assert cb.recv(10_000, 0.0) == b"c" * 100 + b"a" * 600
    assert cb.reass_bytes == 0


def test_out_of_order_fin() -> None:
    env = Env()
    cb = env.established()
    data(env, cb, 0.0, 5, b"world", flags=TH_ACK | TH_FIN)
    assert cb.state == TcpState.ESTABLISHED
    data(env, cb, 0.0, 0, b"hello")
    assert cb.state == TcpState.CLOSE_WAIT
    assert cb.recv(100, 0.0) == b"helloworld" and cb.at_eof


# ----- ICMP ----------------------------------------------------------------------------------
def test_needfrag_lowers_mss_and_retransmits() -> None:
    env = Env()
    cb = env.established()
    cb.send(b"m" * 3000, 0.0)
    env.recv()
    inner = struct.pack("!BBHHHBBHII", 0x45, 0, 40, 0, 0, 64, 6, 0, LOCAL, REMOTE) + \
        struct.pack("!HHI", LPORT, RPORT, cb.iss + 1)
    env.proto.ctlinput("needfrag", REMOTE, LOCAL, inner, mtu=1000)
    assert cb.t_maxseg == 960
    got = env.recv()
    assert got[0].seq == cb.iss + 1 and len(got[0].payload) == 960
    env.proto.ctlinput("needfrag", REMOTE, LOCAL, inner[:10], mtu=1000)   # garbage: ignored


# ----- bindings, buffers ---------------------------------------------------------------------
def test_bind_ephemeral_and_conflicts() -> None:
    env = Env()
    p = env.proto
    port = p.bind(LOCAL, 0)
    assert 49152 <= port <= 65535
    with pytest.raises(OSError) as ei:
        p.bind(LOCAL, port)
    assert ei.value.errno == errno.EADDRINUSE
    with pytest.raises(OSError):
        p.bind(0, port)
    p.unbind(LOCAL, port)
    assert p.bind(LOCAL, port) == port
    lst = p.listen(LOCAL, port, 5, 0.0)          # takes over the reservation
    with pytest.raises(OSError):
        p.bind(LOCAL, port, reuseaddr=True)
    lst.close(0.0)
    cb = p.connect(LOCAL, 0, REMOTE, 80, 0.0)
    assert cb.lport >= 49152


def test_time_wait_blocks_bind_without_reuseaddr() -> None:
    env = Env()
    cb = env.established()
    cb.close(0.0)
    env.send(0.0, seg(seq=R_ISS + 1, ack=cb.iss + 2, flags=TH_FIN | TH_ACK))
    assert cb.state == TcpState.TIME_WAIT
    with pytest.raises(OSError):
        env.proto.bind(LOCAL, LPORT)
    assert env.proto.bind(LOCAL, LPORT, reuseaddr=True) == LPORT


def test_time_wait_reuse() -> None:
    """Without timestamps a SYN reopens a TIME_WAIT 4-tuple only from beyond the receive
    window (4.4BSD/NetBSD tcp_input; RFC 1122 4.2.2.13): one inside the window is a SYN in
    a synchronized state (RFC 5961 4.2: challenge ACK), one at or below RCV.NXT an old
    duplicate."""
    env = Env()
    lst = env.proto.listen(LOCAL, LPORT, 5, 0.0)
    env.send(0.0, seg(seq=R_ISS, flags=TH_SYN))
    iss = env.recv()[0].seq
    env.send(0.0, seg(seq=R_ISS + 1, ack=iss + 1))
    cb = lst.accept()
    assert cb is not None
    cb.close(0.0)
    env.send(0.0, seg(seq=R_ISS + 1, ack=iss + 2, flags=TH_FIN | TH_ACK))
    env.recv()
    assert cb.state == TcpState.TIME_WAIT
    env.send(1.0, seg(seq=R_ISS - 100, flags=TH_SYN))     # old ISN: treated by TIME_WAIT
    assert env.recv()[0].flags == TH_ACK
    window = max(cb.rcv_space(), cb.rcv_wnd)
    challenges = env.stats.tcps_challenge_ack
    env.send(1.0, seg(seq=R_ISS + window, flags=TH_SYN))    # higher, but in the window
    assert [(s.flags, s.ack) for s in env.recv()] == [(TH_ACK, R_ISS + 2)]
    assert cb.state == TcpState.TIME_WAIT and env.stats.tcps_challenge_ack == challenges + 1
    assert env.stats.tcps_tw_reuse == 0
    beyond = R_ISS + 2 + window
    env.send(1.0, seg(seq=beyond, flags=TH_SYN))             # beyond it: new incarnation
    got = env.recv()
    assert got[0].flags == TH_SYN | TH_ACK and got[0].ack == beyond + 1
    assert env.stats.tcps_tw_reuse == 1


def test_send_buffer_limit_and_peek() -> None:
    env = Env()
    cb = env.established(sndbuf=1000)
    assert cb.send(b"x" * 5000, 0.0) == 1000
    assert cb.send_space() == 0 and cb.send(b"y", 0.0) == 0
    data(env, cb, 0.0, 0, b"hello")
    assert cb.recv(3, 0.0, peek=True) == b"hel"
    assert cb.readable_bytes() == 5
    assert cb.recv(3, 0.0) == b"hel" and cb.recv(10, 0.0) == b"lo"


def test_pcbs_listing() -> None:
    env = Env()
    lst = env.proto.listen(0, 22, 5, 0.0)
    cb = env.established()
    cb.send(b"abc", 0.0)
    rows = {(p.lport, p.state.name, p.send_q, p.recv_q) for p in env.proto.pcbs()}
    assert (22, "LISTEN", 0, 0) in rows and (LPORT, "ESTABLISHED", 3, 0) in rows
    assert lst.pending() == 0


def test_ack_for_unsent_data_dropped_with_ack() -> None:
    env = Env()
    cb = env.established()
    env.send(0.0, seg(seq=R_ISS + 1, ack=cb.iss + 5000, payload=b"data"))
    env.expect(None, env.ack_of(cb))
    assert cb.readable_bytes() == 0 and env.stats.tcps_rcvacktoomuch == 1


def test_segment_beyond_window_acked_and_dropped() -> None:
    env = Env()
    cb = env.established(rcvbuf=1000)
    data(env, cb, 0.0, 5000, b"far")
    env.expect(None, env.ack_of(cb, window=1000))
    assert cb.reass_bytes == 0
    assert env.stats.tcps_rcvpackafterwin == 1 and env.stats.tcps_rcvbyteafterwin == 3


def test_passive_syn_with_fin_is_badsyn() -> None:
    env = Env()
    env.proto.listen(LOCAL, LPORT, 5, 0.0)
    env.send(0.0, seg(seq=R_ISS, flags=TH_SYN | TH_FIN))
    env.nothing()
    assert env.stats.tcps_badsyn == 1


# ----- more SYN cache / passive paths --------------------------------------------------------
def test_syn_cache_rst_removes_entry_and_bad_ack_gets_rst() -> None:
    env = Env()
    env.proto.listen(LOCAL, LPORT, 5, 0.0)
    env.send(0.0, seg(seq=R_ISS, flags=TH_SYN))
    sa = env.recv()[0]
    env.send(0.0, seg(seq=R_ISS + 1, ack=sa.seq + 7))          # wrong ACK: RST
    env.expect(None, TcpRepr(LPORT, RPORT, sa.seq + 7, 0, TH_RST, 0))
    assert env.proto.syn_cache_len() == 1
    env.send(0.0, seg(seq=R_ISS + 50, flags=TH_RST))          # in the window, not exact:
    assert [g.flags for g in env.recv()] == [TH_ACK]           # a challenge ACK (RFC 5961 3.2)
    env.send(0.0, seg(seq=R_ISS + 1_000_000, flags=TH_RST))   # outside it: dropped, counted
    env.nothing()
    assert env.proto.syn_cache_len() == 1 and env.stats.tcps_rst_outwin == 1
    env.send(0.0, seg(seq=R_ISS + 1, flags=TH_RST))
    assert env.proto.syn_cache_len() == 0 and env.stats.tcps_sc_reset == 1


def test_events_readable_writable() -> None:
    env = Env()
    cb = env.established()
    data(env, cb, 0.0, 0, b"abc")
    assert env.events and env.events[-1] & 0x01          # EV_READABLE
    cb.send(b"x" * 10, 0.0)
    env.recv()
    env.events.clear()
    env.send(0.1, seg(seq=R_ISS + 4, ack=cb.iss + 11))
    assert env.events and env.events[-1] & 0x02          # EV_WRITABLE


def test_hostunreach_ignored_when_established() -> None:
    env = Env()
    cb = env.established()
    cb.send(b"x", 0.0)
    inner = struct.pack("!BBHHHBBHII", 0x45, 0, 40, 0, 0, 64, 6, 0, LOCAL, REMOTE) + \
        struct.pack("!HHI", LPORT, RPORT, cb.iss + 1)
    env.proto.ctlinput("hostunreach", REMOTE, LOCAL, inner)
    env.proto.ctlinput("unreach", REMOTE, LOCAL, inner)
    assert cb.t_softerror == 0 and cb.error == 0
    # a quoted sequence number outside the flight is ignored (RFC 5927)
    bad = inner[:-4] + struct.pack("!I", cb.iss + 5000)
    # False: not taken, which IP's caller counts as icps_noconn
    assert env.proto.ctlinput("portunreach", REMOTE, LOCAL, bad) is False
    assert cb.t_softerror == 0


def test_stats_as_dict_and_params_names() -> None:
    env = Env()
    d = env.stats.as_dict()
    for name in ("tcps_connattempt", "tcps_rcvbadsum", "tcps_sc_overflowed",
                 "tcps_challenge_ack", "tcps_keepdrops", "tcps_rexmttimeo"):
        assert name in d
    assert "delack_ticks" in env.params.names() and "congctl" in env.params.names()


def test_persist_forces_small_window_send() -> None:
    env = Env(persmin=5.0)
    cb = env.established()
    cb.send(b"q" * 5000, 0.0)
    env.recv()
    env.send(0.1, seg(seq=R_ISS + 1, ack=cb.iss + 1 + 5000, window=100))
    cb.send(b"r" * 5000, 0.1)
    env.nothing()
    out = env.run_until(6.0)
    assert len(out) == 1 and len(out[0][1].payload) == 100


def test_syn_flood_memory_bounded() -> None:
    env = Env(syn_cache_limit=100)
    env.proto.listen(LOCAL, LPORT, 10, 0.0)
    rnd = __import__("random").Random(3)
    for i in range(20_000):
        src = 0x0B000000 + rnd.randrange(1 << 20)
        env.send(i * 1e-5, seg(sport=1024 + i % 60000, seq=rnd.getrandbits(32),
                               flags=TH_SYN), src=src)
        if i % 1000 == 0:
            env.out.clear()
    env.out.clear()
    assert env.proto.syn_cache_len() == 100
    assert env.proto.timer_entries() < 3000
    assert env.stats.tcps_sc_overflowed == 19_900
