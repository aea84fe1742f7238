"""RFC 9293 state machine: opens, closes, RSTs, TIME_WAIT, errors."""

from __future__ import annotations

import errno

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

from rumpnet.netinet.tcp_var import EV_CLOSED, EV_CONNECTED, EV_ERROR, EV_READABLE


def passive(env: Env, now: float = 0.0, backlog: int = 5):
    lst = env.proto.listen(LOCAL, LPORT, backlog, now)
    env.send(now, seg(seq=R_ISS, flags=TH_SYN, mss=1400))
    got = env.recv()
    assert len(got) == 1
    iss = got[0].seq
    assert got[0] == TcpRepr(LPORT, RPORT, iss, R_ISS + 1, TH_SYN | TH_ACK, 65535, mss=1460)
    env.send(now, seg(seq=R_ISS + 1, ack=iss + 1))
    env.nothing()
    cb = lst.accept()
    assert cb is not None and cb.state == TcpState.ESTABLISHED
    assert cb.t_maxseg == 1400
    cb.upcall = env.upcall
    return lst, cb, iss


def test_active_open_events() -> None:
    env = Env()
    cb = env.connect()
    env.expect(None, env.syn_of(cb))
    assert env.stats.tcps_connattempt == 1
    env.send(0.0, seg(seq=R_ISS, ack=cb.iss + 1, flags=TH_SYN | TH_ACK, mss=1460))
    env.expect(None, env.ack_of(cb))
    assert env.events and env.events[-1] & EV_CONNECTED
    assert env.stats.tcps_connects == 1


def test_passive_open_and_data() -> None:
    env = Env()
    lst, cb, iss = passive(env)
    assert env.stats.tcps_accepts == 1 and env.stats.tcps_sc_completed == 1
    assert lst.pending() == 0
    env.send(0.0, seg(seq=R_ISS + 1, ack=iss + 1, payload=b"hello", flags=TH_ACK | TH_PUSH))
    assert cb.recv(100, 0.0) == b"hello"
    assert cb.send(b"world", 0.0) == 5
    got = env.recv()
    assert got == [TcpRepr(LPORT, RPORT, iss + 1, R_ISS + 6, TH_ACK | TH_PUSH, 65535,
                           payload=b"world")]


def test_passive_open_data_on_handshake_ack() -> None:
    env = Env()
    lst = env.proto.listen(LOCAL, LPORT, 5, 0.0)
    env.send(0.0, seg(seq=R_ISS, flags=TH_SYN))
    iss = env.recv()[0].seq
    env.send(0.0, seg(seq=R_ISS + 1, ack=iss + 1, payload=b"abc", flags=TH_ACK | TH_FIN))
    cb = lst.accept()
    assert cb is not None and cb.state == TcpState.CLOSE_WAIT
    assert cb.recv(10, 0.0) == b"abc" and cb.at_eof
    assert cb.t_maxseg == 536  # no MSS option: RFC 9293 default


def test_simultaneous_open() -> None:
    env = Env()
    cb = env.connect()
    env.expect(None, env.syn_of(cb))
    env.send(0.0, seg(seq=R_ISS, flags=TH_SYN, mss=1460))
    assert cb.state == TcpState.SYN_RECEIVED
    env.expect(None, TcpRepr(LPORT, RPORT, cb.iss, R_ISS + 1, TH_SYN | TH_ACK, 65535,
                             mss=1460))
    # the peer's SYN,ACK
    env.send(0.0, seg(seq=R_ISS, ack=cb.iss + 1, flags=TH_SYN | TH_ACK, mss=1460))
    assert cb.state == TcpState.ESTABLISHED
    assert env.events[-1] & EV_CONNECTED


def test_simultaneous_open_plain_ack() -> None:
    env = Env()
    cb = env.connect()
    env.recv()
    env.send(0.0, seg(seq=R_ISS, flags=TH_SYN))
    env.recv()
    env.send(0.0, seg(seq=R_ISS + 1, ack=cb.iss + 1))
    assert cb.state == TcpState.ESTABLISHED


def test_active_close_to_time_wait_and_expiry() -> None:
    env = Env(msl=30.0)
    cb = env.established()
    cb.close(1.0)
    assert cb.state == TcpState.FIN_WAIT_1
    env.expect(None, env.ack_of(cb, seq=cb.iss + 1, flags=TH_FIN | TH_ACK))
    env.send(1.1, seg(seq=R_ISS + 1, ack=cb.iss + 2))
    assert cb.state == TcpState.FIN_WAIT_2
    env.nothing()
    env.send(1.2, seg(seq=R_ISS + 1, ack=cb.iss + 2, flags=TH_FIN | TH_ACK))
    assert cb.state == TcpState.TIME_WAIT
    env.expect(None, env.ack_of(cb, seq=cb.iss + 2, ack=R_ISS + 2))
    # retransmitted FIN in TIME_WAIT: ACK again, restart 2MSL
    env.send(31.0, seg(seq=R_ISS + 1, ack=cb.iss + 2, flags=TH_FIN | TH_ACK))
    env.expect(None, env.ack_of(cb, seq=cb.iss + 2, ack=R_ISS + 2))
    env.nothing(60.0)
    assert cb.state == TcpState.TIME_WAIT
    env.nothing(91.0)
    assert cb.state == TcpState.CLOSED
    assert env.events[-1] & EV_CLOSED
    assert not list(env.proto.pcbs())


def test_time_wait_exactly_2msl() -> None:
    env = Env(msl=10.0)
    cb = env.established()
    cb.shutdown_write(0.0)
    env.recv()
    env.send(0.0, seg(seq=R_ISS + 1, ack=cb.iss + 2, flags=TH_FIN | TH_ACK))
    assert cb.state == TcpState.TIME_WAIT  # FIN_WAIT_1 -> TIME_WAIT directly
    env.recv()
    assert env.proto.get_timer() == pytest.approx(20.0)
    env.proto.handle_timer(19.999)
    assert cb.state == TcpState.TIME_WAIT
    env.proto.handle_timer(20.0)
    assert cb.state == TcpState.CLOSED


def test_passive_close() -> None:
    env = Env()
    cb = env.established()
    env.send(1.0, seg(seq=R_ISS + 1, ack=cb.iss + 1, flags=TH_FIN | TH_ACK))
    assert cb.state == TcpState.CLOSE_WAIT
    assert cb.at_eof and cb.recv(10, 1.0) == b""
    assert env.events[-1] & EV_READABLE
    env.expect(None, env.ack_of(cb, ack=R_ISS + 2))
    cb.send(b"bye", 1.0)
    env.expect(None, TcpRepr(LPORT, RPORT, cb.iss + 1, R_ISS + 2, TH_ACK | TH_PUSH, 65535,
                             payload=b"bye"))
    cb.close(1.0)
    assert cb.state == TcpState.LAST_ACK
    env.expect(None, TcpRepr(LPORT, RPORT, cb.iss + 4, R_ISS + 2, TH_ACK | TH_FIN, 65535))
    env.send(1.1, seg(seq=R_ISS + 2, ack=cb.iss + 5))
    assert cb.state == TcpState.CLOSED
    assert env.events[-1] & EV_CLOSED and not env.events[-1] & EV_ERROR
    assert cb.error == 0


def test_simultaneous_close() -> None:
    env = Env()
    cb = env.established()
    cb.close(1.0)
    env.recv()
    env.send(1.0, seg(seq=R_ISS + 1, ack=cb.iss + 1, flags=TH_FIN | TH_ACK))
    assert cb.state == TcpState.CLOSING
    # Our FIN is still unacknowledged: the ACK carries it again from its own sequence
    # number (4.4BSD tcp_output, as NetBSD and FreeBSD send it).
    env.expect(None, env.ack_of(cb, seq=cb.iss + 1, ack=R_ISS + 2, flags=TH_FIN | TH_ACK))
    env.send(1.0, seg(seq=R_ISS + 2, ack=cb.iss + 2))
    assert cb.state == TcpState.TIME_WAIT


def test_fin_retransmitted_in_fin_wait_1() -> None:
    env = Env()
    cb = env.established()
    cb.close(0.0)
    fin = env.recv()
    out = env.run_until(1.5)
    assert [r for _, r in out] == fin
    assert cb.state == TcpState.FIN_WAIT_1


def test_shutdown_write_then_send_epipe() -> None:
    env = Env()
    cb = env.established()
    cb.shutdown_write(0.0)
    with pytest.raises(OSError) as ei:
        cb.send(b"x", 0.0)
    assert ei.value.errno == errno.EPIPE
    assert cb.send_space() == 0


def test_data_after_close_resets() -> None:
    env = Env()
    cb = env.established()
    cb.close(0.0)
    env.recv()
    env.send(0.0, seg(seq=R_ISS + 1, ack=cb.iss + 2, payload=b"late"))
    got = env.recv()
    assert got[-1].flags & TH_RST
    assert cb.state == TcpState.CLOSED
    assert env.stats.tcps_rcvafterclose == 1


def test_syn_sent_rst_refused() -> None:
    env = Env()
    cb = env.connect()
    env.recv()
    env.send(0.0, seg(seq=0, ack=cb.iss + 1, flags=TH_RST | TH_ACK))
    assert cb.state == TcpState.CLOSED
    assert cb.error == errno.ECONNREFUSED
    assert env.events[-1] & EV_ERROR
    # error is sticky (the socket layer clears it)
    assert cb.error == errno.ECONNREFUSED


def test_syn_sent_rst_without_ack_or_bad_ack_ignored() -> None:
    env = Env()
    cb = env.connect()
    env.recv()
    env.send(0.0, seg(seq=0, flags=TH_RST))
    env.send(0.0, seg(seq=0, ack=cb.iss + 5, flags=TH_RST | TH_ACK))
    assert cb.state == TcpState.SYN_SENT
    env.nothing()
    assert env.stats.tcps_badrst == 2 and env.stats.tcps_rcvrst == 0


def test_syn_sent_bad_ack_gets_rst() -> None:
    env = Env()
    cb = env.connect()
    env.recv()
    env.send(0.0, seg(seq=R_ISS, ack=cb.iss + 100, flags=TH_SYN | TH_ACK))
    env.expect(None, TcpRepr(LPORT, RPORT, cb.iss + 100, 0, TH_RST, 0))
    assert cb.state == TcpState.SYN_SENT


def test_syn_received_rst_refused() -> None:
    env = Env()
    cb = env.connect()
    env.recv()
    env.send(0.0, seg(seq=R_ISS, flags=TH_SYN))
    env.recv()
    env.send(0.0, seg(seq=R_ISS + 1, flags=TH_RST))
    assert cb.state == TcpState.CLOSED and cb.error == errno.ECONNREFUSED


@pytest.mark.parametrize("where", ["ESTABLISHED", "FIN_WAIT_1", "FIN_WAIT_2", "CLOSE_WAIT",
                                   "CLOSING", "LAST_ACK", "TIME_WAIT"])
def test_rst_in_state(where: str) -> None:
    env = Env()
    cb = env.established()
    rseq = R_ISS + 1
    if where in ("FIN_WAIT_1", "FIN_WAIT_2", "CLOSING", "TIME_WAIT"):
        cb.close(0.0)
        if where == "FIN_WAIT_2":
            env.send(0.0, seg(seq=rseq, ack=cb.iss + 2))
        elif where == "CLOSING":
            env.send(0.0, seg(seq=rseq, ack=cb.iss + 1, flags=TH_FIN | TH_ACK))
            rseq += 1
        elif where == "TIME_WAIT":
            env.send(0.0, seg(seq=rseq, ack=cb.iss + 2, flags=TH_FIN | TH_ACK))
            rseq += 1
    elif where in ("CLOSE_WAIT", "LAST_ACK"):
        env.send(0.0, seg(seq=rseq, ack=cb.iss + 1, flags=TH_FIN | TH_ACK))
        rseq += 1
        if where == "LAST_ACK":
            cb.close(0.0)
    assert cb.state.name == where
    env.recv()
    env.send(0.0, seg(seq=rseq, flags=TH_RST))
    assert cb.state == TcpState.CLOSED
    env.nothing()
    expect = errno.ECONNRESET if where in ("ESTABLISHED", "FIN_WAIT_1", "FIN_WAIT_2",
                                           "CLOSE_WAIT") else 0
    assert cb.error == expect


def test_rst_in_window_challenge_and_out_of_window_ignored() -> None:
    env = Env()
    cb = env.established()
    env.send(0.0, seg(seq=R_ISS + 100, flags=TH_RST))
    assert cb.state == TcpState.ESTABLISHED
    env.expect(None, env.ack_of(cb, seq=cb.iss + 1))
    assert env.stats.tcps_challenge_ack == 1
    env.send(0.0, seg(seq=R_ISS + 1 + 1_000_000, flags=TH_RST))
    env.send(0.0, seg(seq=R_ISS - 5, flags=TH_RST))
    env.nothing()
    assert cb.state == TcpState.ESTABLISHED
    assert env.stats.tcps_rst_outwin == 2 and env.stats.tcps_challenge_ack == 1


def test_syn_in_established_challenge_ack() -> None:
    env = Env()
    cb = env.established()
    env.send(0.0, seg(seq=R_ISS + 500, flags=TH_SYN))
    env.expect(None, env.ack_of(cb, seq=cb.iss + 1))
    assert cb.state == TcpState.ESTABLISHED


def test_rst_to_listener_ignored_ack_gets_rst() -> None:
    env = Env()
    env.proto.listen(LOCAL, LPORT, 5, 0.0)
    env.send(0.0, seg(seq=5, flags=TH_RST))
    env.nothing()
    assert env.stats.tcps_badrst == 1
    env.send(0.0, seg(seq=5, ack=77))
    env.expect(None, TcpRepr(LPORT, RPORT, 77, 0, TH_RST, 0))


def test_closed_port_rst_forms() -> None:
    env = Env()
    env.send(0.0, seg(seq=5, flags=TH_SYN))
    env.expect(None, TcpRepr(LPORT, RPORT, 0, 6, TH_RST | TH_ACK, 0))
    env.send(0.0, seg(seq=5, ack=99, payload=b"abc"))
    env.expect(None, TcpRepr(LPORT, RPORT, 99, 0, TH_RST, 0))
    env.send(0.0, seg(seq=5, flags=TH_FIN, payload=b"ab"))
    env.expect(None, TcpRepr(LPORT, RPORT, 0, 8, TH_RST | TH_ACK, 0))
    env.send(0.0, seg(seq=5, flags=TH_RST))
    env.nothing()
    assert env.stats.tcps_noport == 4


def test_abort_sends_rst() -> None:
    env = Env()
    cb = env.established()
    cb.abort(0.0)
    env.expect(None, TcpRepr(LPORT, RPORT, cb.iss + 1, R_ISS + 1, TH_RST | TH_ACK, 0))
    assert cb.state == TcpState.CLOSED


def test_linger_zero_close_sends_rst() -> None:
    env = Env()
    cb = env.established()
    cb.set_linger(True, 0)
    cb.send(b"data", 0.0)
    env.recv()
    cb.close(0.0)
    got = env.recv()
    assert [g.flags for g in got] == [TH_RST | TH_ACK]
    assert cb.state == TcpState.CLOSED


def test_close_in_syn_sent_no_rst() -> None:
    env = Env()
    cb = env.connect()
    env.recv()
    cb.close(0.0)
    env.nothing()
    assert cb.state == TcpState.CLOSED
    assert env.proto.get_timer() is None


def test_syn_retries_etimedout() -> None:
    env = Env(syn_retries=3, init_rto=1.0, keepinit=1000.0)
    cb = env.connect()
    env.recv()
    out = env.run_until(100.0)
    times = [t for t, _ in out]
    assert times == [1.0, 3.0, 7.0]
    assert all(r.flags == TH_SYN for _, r in out)
    assert cb.state == TcpState.CLOSED and cb.error == errno.ETIMEDOUT
    assert env.stats.tcps_timeoutdrop == 1


def test_connection_establishment_timeout() -> None:
    env = Env(keepinit=5.0, syn_retries=100)
    cb = env.connect()
    env.recv()
    env.run_until(10.0)
    assert cb.state == TcpState.CLOSED and cb.error == errno.ETIMEDOUT


def test_data_retransmit_give_up() -> None:
    env = Env(rexmit_max=4, rtomin=1.0)
    cb = env.established()
    cb.send(b"x" * 10, 0.0)
    env.recv()
    out = env.run_until(1000.0)
    assert [t for t, r in out if r.payload] == [1.0, 3.0, 7.0, 15.0]
    assert out[-1][1].flags & TH_RST
    assert cb.state == TcpState.CLOSED and cb.error == errno.ETIMEDOUT


def test_icmp_unreach_soft_error_in_syn_sent() -> None:
    """With net.inet.tcp.icmp_may_rst=0 (NetBSD), port unreachable is a soft error."""
    env = Env(syn_retries=10, keepinit=1000.0, icmp_may_rst=0)
    cb = env.connect()
    env.recv()
    import struct
    inner = struct.pack("!BBHHHBBHII", 0x45, 0, 40, 0, 0, 64, 6, 0, LOCAL, REMOTE) + \
        struct.pack("!HHI", LPORT, RPORT, cb.iss)
    env.proto.ctlinput("portunreach", REMOTE, LOCAL, inner)
    assert cb.state == TcpState.SYN_SENT and cb.t_softerror == errno.ECONNREFUSED
    env.run_until(100.0)   # 4+ retransmissions
    env.proto.ctlinput("portunreach", REMOTE, LOCAL, inner)
    assert cb.error == errno.ECONNREFUSED or cb.state == TcpState.CLOSED
    env.run_until(10_000.0)
    assert cb.state == TcpState.CLOSED and cb.error == errno.ECONNREFUSED


def _quote(cb, seq: int) -> bytes:
    import struct
    return struct.pack("!BBHHHBBHII", 0x45, 0, 40, 0, 0, 64, 6, 0, LOCAL, REMOTE) + \
        struct.pack("!HHI", LPORT, RPORT, seq & 0xFFFFFFFF)


@pytest.mark.parametrize("kind,err", [("portunreach", errno.ECONNREFUSED), ("protounreach", errno.ECONNREFUSED),
                                      ("adminprohib", errno.ECONNREFUSED), ("timxceed", errno.EHOSTUNREACH)])
def test_icmp_hard_error_aborts_syn_sent(kind: str, err: int) -> None:
    """RFC 1122 4.2.3.9 / RFC 5461, FreeBSD's icmp_may_rst=1 (the default): a hard
    error quoting the SYN's sequence number aborts the attempt at once; quoting ISS+1
    or ISS-1 (not in flight, RFC 5927 4.1) it is not taken."""
    env = Env(syn_retries=10)
    cb = env.connect()
    env.recv()
    assert not env.proto.ctlinput(kind, REMOTE, LOCAL, _quote(cb, cb.iss + 1))
    assert not env.proto.ctlinput(kind, REMOTE, LOCAL, _quote(cb, cb.iss - 1))
    assert cb.state == TcpState.SYN_SENT and cb.t_softerror == 0
    assert env.proto.ctlinput(kind, REMOTE, LOCAL, _quote(cb, cb.iss))
    assert cb.state == TcpState.CLOSED and cb.error == err
    env.expect(None)


@pytest.mark.parametrize("kind", ["netunreach", "hostunreach", "srcfail", "paramprob", "timxceed_reass"])
def test_icmp_soft_errors_keep_syn_sent(kind: str) -> None:
    env = Env(syn_retries=10)
    cb = env.connect()
    env.recv()
    assert env.proto.ctlinput(kind, REMOTE, LOCAL, _quote(cb, cb.iss))
    assert cb.state == TcpState.SYN_SENT and cb.error == 0


def test_synack_with_fin_dropped_by_default() -> None:
    """net.inet.tcp.drop_synfin (on by default): SYN and FIN together are dropped and
    counted, in any state."""
    env = Env()
    cb = env.connect()
    env.recv()
    env.send(0.0, seg(seq=R_ISS, ack=cb.iss + 1, flags=TH_SYN | TH_ACK | TH_FIN, payload=b"early"))
    assert cb.state == TcpState.SYN_SENT and env.stats.tcps_badsyn == 1
    env.nothing()


def test_synack_carrying_data_and_fin() -> None:
    env = Env(drop_synfin=0)
    cb = env.connect()
    env.recv()
    env.send(0.0, seg(seq=R_ISS, ack=cb.iss + 1, flags=TH_SYN | TH_ACK | TH_FIN,
                      payload=b"early"))
    assert cb.state == TcpState.CLOSE_WAIT
    assert cb.recv(10, 0.0) == b"early" and cb.at_eof
    env.expect(None, env.ack_of(cb, seq=cb.iss + 1, ack=R_ISS + 7))
