"""TCP behaviour fixed or made selectable for conformance (docs/CONFORMANCE.md): option
layout, window scale choice, buffer rounding, RST/SYN acceptance (RFC 5961 and RFC 793),
SYN-cache RSTs, TIME_WAIT answers, TCP_NOOPT (the FIN repeated while unacknowledged:
test_tcp_states.test_simultaneous_close).

Each test is a segment in and exactly what comes out (the smoltcp shape), plus the counter
a drop increments."""

from __future__ import annotations

import errno

import pytest
from test_tcp_harness import LOCAL, LPORT, R_ISS, RPORT, TH_ACK, TH_FIN, TH_RST, TH_SYN, Env, TcpRepr, TcpState, replace, seg

from rumpnet.netinet import tcp as tcpw
from rumpnet.netinet.tcp_var import TF_SACK_PERMIT

FULL = {"rfc1323": 1, "sack": 1}


# ----- option layout (RFC 9293 3.1) --------------------------------------------------------
@pytest.mark.parametrize("kw, compact, aligned", [
    ({"mss": 1460, "wscale": 6, "sack_permitted": True, "timestamps": (100, 0)},
     "020405b4 01030306 0402080a 00000064 00000000",
     "020405b4 01030306 01010402 0101080a 00000064 00000000"),
    ({"mss": 1460, "sack_permitted": True},
     "020405b4 04020000",
     "020405b4 01010402"),
    ({"mss": 1460, "timestamps": (1, 2)},
     "020405b4 0101080a 00000001 00000002",
     "020405b4 0101080a 00000001 00000002"),
    ({"mss": 1460, "wscale": 7},
     "020405b4 01030307",
     "020405b4 01030307"),
])
def test_option_layouts(kw: dict[str, object], compact: str, aligned: str) -> None:
    """compact_options is FreeBSD's tcp_addoptions (NOPs only to put the window scale at
    an odd offset and the timestamps at 4n+2, EOL padding at the end); the default is
    NetBSD's, every option NOP-padded to 4 bytes. Both parse back to the same options."""
    r = TcpRepr(1, 2, 0, 0, TH_SYN, 0, **kw)  # type: ignore[arg-type]
    assert tcpw.options_bytes(r, compact=True).hex() == compact.replace(" ", "")
    assert tcpw.options_bytes(r).hex() == aligned.replace(" ", "")
    for layout in (True, False):
        back = tcpw.parse(tcpw.emit(r, 1, 2, compact=layout), 1, 2, csum_ok=False)
        assert (back.mss, back.wscale, back.sack_permitted, back.timestamps) == \
            (r.mss, r.wscale, r.sack_permitted, r.timestamps)


def test_compact_syn_on_the_wire() -> None:
    env = Env(compact_options=1, **FULL)
    cb = env.connect(0.0)
    raw = env.out[0][2]
    ws = cb.request_r_scale
    assert raw[20:40].hex() == f"020405b4010303{ws:02x}0402080a{cb.ts_now(0.0):08x}00000000"


# ----- window scale (RFC 7323 2.2) -----------------------------------------------------------
def test_window_scale_covers_sb_max_when_asked() -> None:
    """rcvscale_sbmax: the shift covers kern.sbmax (FreeBSD), not the receive buffer."""
    env = Env(rcvscale_sbmax=1, recvbuf_auto=0, recvspace=65536, **FULL)
    env.proto.sb_max = lambda: 2 * 1024 * 1024
    assert env.connect(0.0).request_r_scale == 6          # 65535 << 6 >= 2 MiB
    env = Env(recvbuf_auto=0, recvspace=65536, **FULL)
    assert env.connect(0.0).request_r_scale == 1          # NetBSD: the 64 KiB buffer


# ----- buffers in whole segments (4.4BSD tcp_mss / NetBSD tcp_established) ------------------
def test_buffers_rounded_when_the_syn_is_processed() -> None:
    """Even in SYN_RECEIVED (simultaneous open): the MSS is known from the peer's SYN."""
    env = Env(recvbuf_auto=0, sendbuf_auto=0, recvspace=65536, sendspace=32768)
    cb = env.connect(0.0)
    env.recv()
    env.send(0.1, seg(seq=R_ISS, flags=TH_SYN, mss=1460))
    assert cb.state == TcpState.SYN_RECEIVED
    assert (cb.rcvspace, cb.sndspace) == (45 * 1460, 23 * 1460)


# ----- RST acceptance (RFC 5961 3.2; RFC 793 with insecure_rst) ------------------------------
@pytest.mark.parametrize("insecure", [0, 1])
def test_rst_in_window_not_exact(insecure: int) -> None:
    env = Env(insecure_rst=insecure)
    cb = env.established()
    env.send(1.0, seg(seq=R_ISS + 100, flags=TH_RST))
    if insecure:
        assert cb.state == TcpState.CLOSED and cb.error == errno.ECONNRESET
        env.nothing()
    else:
        assert cb.state == TcpState.ESTABLISHED
        env.expect(None, env.ack_of(cb))                  # challenge ACK
        assert env.stats.tcps_challenge_ack == 1


def test_rst_outside_window_counted() -> None:
    env = Env(insecure_rst=1)
    cb = env.established()
    env.send(1.0, seg(seq=R_ISS, flags=TH_RST))           # RCV.NXT - 1
    assert cb.state == TcpState.ESTABLISHED and env.stats.tcps_rst_outwin == 1
    env.nothing()


# ----- SYN in a synchronized state (RFC 5961 4.2; RFC 793 with insecure_syn) -----------------
@pytest.mark.parametrize("insecure", [0, 1])
def test_syn_in_window(insecure: int) -> None:
    env = Env(insecure_syn=insecure)
    cb = env.established()
    env.send(1.0, seg(seq=R_ISS + 1, flags=TH_SYN))
    if insecure:
        assert cb.state == TcpState.CLOSED and cb.error == errno.ECONNRESET
        env.expect(None, env.ack_of(cb, flags=TH_RST | TH_ACK, window=0))
    else:
        assert cb.state == TcpState.ESTABLISHED
        env.expect(None, env.ack_of(cb))


# ----- SYN+FIN (drop_synfin) -----------------------------------------------------------------
def test_syn_fin_to_listener_taken_as_syn_when_allowed() -> None:
    """drop_synfin=0: the SYN opens a connection and the FIN is ignored (no FIN
    processing in LISTEN, RFC 9293 3.10.7.2)."""
    env = Env(drop_synfin=0)
    env.proto.listen(LOCAL, LPORT, 5, 0.0)
    env.send(0.0, seg(seq=R_ISS, flags=TH_SYN | TH_FIN, payload=b"abc"))
    (sa,) = env.recv()
    assert sa.flags == TH_SYN | TH_ACK and sa.ack == R_ISS + 1


def test_syn_fin_dropped_at_listener_but_challenged_when_synchronized() -> None:
    """drop_synfin=1: a SYN+FIN to a listener is dropped and counted; in ESTABLISHED it
    is a SYN like any other and gets RFC 5961 4.2's challenge ACK, as the FreeBSD
    suite's STANDARD branch expects in TIME-WAIT."""
    env = Env(drop_synfin=1)
    env.proto.listen(LOCAL, LPORT, 5, 0.0)
    env.send(0.0, seg(seq=R_ISS, flags=TH_SYN | TH_FIN))
    env.nothing()
    assert env.stats.tcps_badsyn == 1
    env2 = Env(drop_synfin=1)
    cb = env2.established()
    env2.send(0.0, seg(seq=R_ISS + 500, flags=TH_SYN | TH_FIN))
    env2.expect(None, env2.ack_of(cb, seq=cb.iss + 1))
    assert cb.state == TcpState.ESTABLISHED and env2.stats.tcps_challenge_ack == 1
    assert env2.stats.tcps_badsyn == 0


# ----- SYN cache: RSTs for half-open connections ------------------------------------------
def _half_open(env: Env) -> TcpRepr:
    env.proto.listen(LOCAL, LPORT, 5, 0.0)
    env.send(0.0, seg(seq=R_ISS, flags=TH_SYN, mss=1460))
    (sa,) = env.recv()
    return sa


def test_syn_cache_rst_in_window_gets_challenge_ack() -> None:
    env = Env()
    sa = _half_open(env)
    env.send(0.1, seg(seq=R_ISS + 1 + 65534, flags=TH_RST))     # the right edge
    env.expect(None, TcpRepr(LPORT, RPORT, sa.seq + 1, R_ISS + 1, TH_ACK, sa.window))
    assert env.proto.syn_cache_len() == 1 and env.stats.tcps_challenge_ack == 1


def test_syn_cache_rst_insecure_or_exact_removes_entry() -> None:
    env = Env(insecure_rst=1)
    _half_open(env)
    env.send(0.1, seg(seq=R_ISS + 100, flags=TH_RST))
    assert env.proto.syn_cache_len() == 0 and env.stats.tcps_sc_reset == 1
    env.nothing()


def test_syn_cache_rst_outside_window_counted() -> None:
    env = Env()
    _half_open(env)
    env.send(0.1, seg(seq=R_ISS, flags=TH_RST))
    assert env.proto.syn_cache_len() == 1 and env.stats.tcps_rst_outwin == 1
    env.nothing()


# ----- simultaneous open: data on the SYN (RFC 9293 3.10.7.3) --------------------------------
def test_data_on_a_simultaneous_syn_waits_for_established() -> None:
    env = Env()
    cb = env.connect(0.0)
    env.recv()
    env.send(0.1, seg(seq=R_ISS, flags=TH_SYN, mss=1460, payload=b"abc"))
    (sa,) = env.recv()
    assert sa.flags == TH_SYN | TH_ACK and sa.ack == R_ISS + 1      # the data waits
    assert cb.readable_bytes() == 0
    env.send(0.2, seg(seq=R_ISS + 4, ack=cb.iss + 1))               # ACK after the data
    assert cb.state == TcpState.ESTABLISHED and cb.recv(10, 0.2) == b"abc"


# ----- TIME_WAIT ---------------------------------------------------------------------------
def _time_wait(env: Env) -> object:
    cb = env.established()
    cb.close(1.0)
    env.recv()
    env.send(1.0, seg(seq=R_ISS + 1, ack=cb.iss + 2, flags=TH_FIN | TH_ACK))
    env.recv()
    assert cb.state == TcpState.TIME_WAIT
    return cb


def test_time_wait_answers_all_but_the_exact_ack() -> None:
    env = Env()
    cb = _time_wait(env)
    env.send(1.1, seg(seq=R_ISS + 2, ack=cb.iss + 2))               # the exact ACK
    env.nothing()
    env.send(1.2, seg(seq=R_ISS + 3, ack=cb.iss + 2))               # inside the window
    env.expect(None, env.ack_of(cb))


@pytest.mark.parametrize("rfc1337", [0, 1])
def test_rst_in_time_wait(rfc1337: int) -> None:
    env = Env(rfc1337=rfc1337)
    cb = _time_wait(env)
    env.send(1.1, seg(seq=R_ISS + 2, flags=TH_RST))
    assert cb.state == (TcpState.TIME_WAIT if rfc1337 else TcpState.CLOSED)
    assert env.stats.tcps_tw_rst_ignored == rfc1337


@pytest.mark.parametrize("last_adv", [0, 1])
def test_syn_in_time_wait_judged_in_the_window_last_advertised(last_adv: int) -> None:
    """tw_last_adv_window: a SYN just beyond the window we last advertised (65535,
    unscaled) but inside the buffer space (256 KiB) is outside the window in TIME-WAIT
    (FreeBSD's tcptw keeps only last_win): challenge ACK (RFC 5961 4.2) even with
    insecure_syn. Off (NetBSD): inside the buffer space, so RFC 793 resets."""
    env = Env(insecure_syn=1, tw_last_adv_window=last_adv)
    cb = _time_wait(env)
    assert cb.rcv_wnd == 65535 and cb.rcv_space() > 65535
    env.send(1.1, seg(seq=R_ISS + 2 + 65535, flags=TH_SYN))
    if last_adv:
        assert cb.state == TcpState.TIME_WAIT
        env.expect(None, env.ack_of(cb))
        assert env.stats.tcps_tw_reuse == 0
    else:
        assert cb.state == TcpState.CLOSED
        env.expect(None, env.ack_of(cb, flags=TH_RST | TH_ACK, window=0))


@pytest.mark.parametrize("last_adv", [0, 1])
def test_rst_in_time_wait_judged_in_the_window_last_advertised(last_adv: int) -> None:
    """The same for a RST with insecure_rst (RFC 793): outside the window last
    advertised it is counted and dropped; inside the buffer space it closes."""
    env = Env(insecure_rst=1, tw_last_adv_window=last_adv)
    cb = _time_wait(env)
    env.send(1.1, seg(seq=R_ISS + 2 + 65535, flags=TH_RST))
    env.nothing()
    assert cb.state == (TcpState.TIME_WAIT if last_adv else TcpState.CLOSED)
    assert env.stats.tcps_rst_outwin == last_adv


@pytest.mark.parametrize("last_adv", [0, 1])
def test_time_wait_trims_to_the_buffer_space_either_way(last_adv: int) -> None:
    """Only RST and SYN use the window last advertised: a FIN without ACK beyond it but
    inside the buffer space is acceptable and, without ACK, dropped silently."""
    env = Env(tw_last_adv_window=last_adv)
    cb = _time_wait(env)
    env.send(1.1, seg(seq=R_ISS + 2 + 65535, flags=TH_FIN))
    env.nothing()
    assert cb.state == TcpState.TIME_WAIT


# ----- MSS option from the path MTU (mssopt_pmtu) ------------------------------------------
@pytest.mark.parametrize("pmtu, mss", [(0, 1460), (1, 1260)])
def test_resent_syn_mss_from_path_mtu(pmtu: int, mss: int) -> None:
    """mssopt_pmtu: a SYN resent after the path MTU fell (a Packet Too Big or
    fragmentation needed of 1300 lowered the route's MTU) says 1300 - 40 (FreeBSD's
    tcp_mssopt); off, it keeps the first SYN's 1460 (NetBSD; RFC 1191 3.1 allows
    either)."""
    env = Env(mssopt_pmtu=pmtu)
    cb = env.connect(0.0)
    env.expect(None, env.syn_of(cb))
    env.mtu = 1300
    assert env.run_until(1.5) == [(1.0, replace(env.syn_of(cb), mss=mss))]
    env.send(1.6, seg(seq=R_ISS, ack=cb.iss + 1, flags=TH_SYN | TH_ACK, mss=1460))
    assert cb.state == TcpState.ESTABLISHED and cb.t_maxseg == mss


# ----- TCP_NOOPT ---------------------------------------------------------------------------
def test_noopt_active_open_sends_a_bare_syn_and_uses_no_options() -> None:
    env = Env(**FULL)
    cb = env.connect(0.0, noopt=True)
    env.expect(None, TcpRepr(LPORT, RPORT, cb.iss, 0, TH_SYN, 65535))
    env.send(0.1, seg(seq=R_ISS, ack=cb.iss + 1, flags=TH_SYN | TH_ACK, mss=1460, wscale=3,
                      sack_permitted=True, timestamps=(5, 0)))
    assert cb.state == TcpState.ESTABLISHED and cb.snd_scale == 0
    env.expect(None, env.ack_of(cb))                    # no timestamps, window unscaled


def test_noopt_listener_answers_without_options() -> None:
    env = Env(**FULL)
    lst = env.proto.listen(LOCAL, LPORT, 5, 0.0)
    lst.noopt = True
    env.send(0.0, seg(seq=R_ISS, flags=TH_SYN, mss=1000, wscale=6, sack_permitted=True,
                      timestamps=(100, 0)))
    (sa,) = env.recv()
    assert (sa.mss, sa.wscale, sa.sack_permitted, sa.timestamps) == (None, None, False, None)
    env.send(0.0, seg(seq=R_ISS + 1, ack=sa.seq + 1))
    cb = lst.accept()
    assert cb is not None and cb.noopt and not cb.t_flags & TF_SACK_PERMIT
