"""Option negotiation: MSS, window scaling, timestamps + PAWS, SACK-permitted (RFC 9293
3.7.1, RFC 7323, RFC 2018)."""

from __future__ import annotations

from test_tcp_harness import (
    LOCAL,
    LPORT,
    R_ISS,
    RPORT,
    TH_ACK,
    TH_PUSH,
    TH_SYN,
    Env,
    TcpRepr,
    TcpState,
    seg,
)

# A fixed 256 KiB receive buffer (no autosizing): window scale 3.
FULL = {"rfc1323": 1, "sack": 1, "recvbuf_auto": 0}


def test_autosized_buffer_asks_for_the_scale_of_its_maximum() -> None:
    """With receive buffer autosizing (the default) the SYN's window scale covers
    recvbuf_max (4 MiB: 7), as NetBSD's covers sb_max and Linux's tcp_rmem[2]."""
    env = Env(rfc1323=1, sack=1)
    cb = env.connect(0.0)
    assert cb.request_r_scale == 7 and cb.rcv_auto
    env = Env(rfc1323=1, sack=1, recvbuf_max=1 << 20)
    assert env.connect(0.0).request_r_scale == 5


def test_active_syn_carries_all_options() -> None:
    env = Env(**FULL)
    cb = env.connect(0.0)
    assert cb.request_r_scale == 3      # 256 KiB receive buffer
    env.expect(None, TcpRepr(LPORT, RPORT, cb.iss, 0, TH_SYN, 65535, mss=1460, wscale=3,
                             sack_permitted=True, timestamps=(cb.ts_now(0.0), 0)))
    env.send(0.05, seg(seq=R_ISS, ack=cb.iss + 1, flags=TH_SYN | TH_ACK, window=30000,
                       mss=1400, wscale=2, sack_permitted=True,
                       timestamps=(500, cb.ts_now(0.0))))
    assert cb.state == TcpState.ESTABLISHED
    assert (cb.snd_scale, cb.rcv_scale) == (2, 3)
    assert cb.snd_wnd == 30000          # SYN window is never scaled
    assert cb.t_maxseg == 1400
    assert cb.rcvspace == 188 * 1400    # 256 KiB rounded up to whole segments (tcp_mss)
    assert abs(cb.t_srtt - 0.05) < 0.002
    env.expect(None, TcpRepr(LPORT, RPORT, cb.iss + 1, R_ISS + 1, TH_ACK, 188 * 1400 >> 3,
                             timestamps=(cb.ts_now(0.05), 500)))
    # window field now scaled by 2
    env.send(0.1, seg(seq=R_ISS + 1, ack=cb.iss + 1, window=1000, timestamps=(501, 0)))
    assert cb.snd_wnd == 4000
    # data segments carry timestamps and leave room for them
    cb.send(b"x" * 3000, 0.1)
    got = env.recv()
    assert [len(g.payload) for g in got] == [1388, 1388, 224]   # idle: Nagle lets it go
    assert all(g.timestamps == (cb.ts_now(0.1), 501) for g in got)
    cb.send(b"y" * 10, 0.1)
    env.nothing()                                                # not idle now: Nagle
    env.send(0.2, seg(seq=R_ISS + 1, ack=cb.iss + 1 + 3000, window=1000, timestamps=(502, 0)))
    got = env.recv()
    assert [len(g.payload) for g in got] == [10]


def test_peer_without_wscale_or_ts() -> None:
    env = Env(**FULL)
    cb = env.connect(0.0)
    env.recv()
    env.send(0.0, seg(seq=R_ISS, ack=cb.iss + 1, flags=TH_SYN | TH_ACK, window=8192,
                      mss=1460))
    assert (cb.snd_scale, cb.rcv_scale) == (0, 0)
    assert not cb.t_flags & 0x0200     # no SACK
    env.expect(None, TcpRepr(LPORT, RPORT, cb.iss + 1, R_ISS + 1, TH_ACK, 65535))
    env.send(0.0, seg(seq=R_ISS + 1, ack=cb.iss + 1, window=8192))
    assert cb.snd_wnd == 8192


def test_rfc1323_off() -> None:
    env = Env(rfc1323=0, sack=1)
    cb = env.connect(0.0)
    env.expect(None, TcpRepr(LPORT, RPORT, cb.iss, 0, TH_SYN, 65535, mss=1460,
                             sack_permitted=True))
    # peer offers everything; we must not use wscale/timestamps
    env.send(0.0, seg(seq=R_ISS, ack=cb.iss + 1, flags=TH_SYN | TH_ACK, wscale=7,
                      timestamps=(1, 2), sack_permitted=True))
    env.expect(None, TcpRepr(LPORT, RPORT, cb.iss + 1, R_ISS + 1, TH_ACK, 65535))
    assert cb.snd_scale == 0


def test_passive_negotiation_echoes_only_offered() -> None:
    env = Env(**FULL)
    env.proto.listen(LOCAL, LPORT, 5, 0.0)
    env.send(0.0, seg(seq=R_ISS, flags=TH_SYN, mss=1200, wscale=5, sack_permitted=True,
                      timestamps=(77, 0)))
    got = env.recv()[0]
    assert got.flags == TH_SYN | TH_ACK
    assert (got.mss, got.wscale, got.sack_permitted) == (1460, 3, True)
    assert got.timestamps is not None and got.timestamps[1] == 77
    env.send(0.0, seg(seq=R_ISS, flags=TH_SYN, sport=RPORT + 1, mss=1200))
    got = env.recv()[0]
    assert (got.wscale, got.sack_permitted, got.timestamps) == (None, False, None)


def test_passive_scaled_connection() -> None:
    env = Env(**FULL)
    lst = env.proto.listen(LOCAL, LPORT, 5, 0.0)
    env.send(0.0, seg(seq=R_ISS, flags=TH_SYN, mss=1200, wscale=5, sack_permitted=True,
                      timestamps=(77, 0)))
    sa = env.recv()[0]
    assert sa.timestamps is not None
    env.send(0.0, seg(seq=R_ISS + 1, ack=sa.seq + 1, window=100,
                      timestamps=(78, sa.timestamps[0])))
    cb = lst.accept()
    assert cb is not None
    assert (cb.snd_scale, cb.rcv_scale, cb.snd_wnd, cb.t_maxseg) == (5, 3, 3200, 1200)
    assert cb.ts_recent == 78
    cb.send(b"abc", 0.0)
    got = env.recv()[0]
    assert cb.rcvspace == 219 * 1200    # 256 KiB rounded up to whole segments (tcp_mss)
    assert got.timestamps == (cb.ts_now(0.0), 78) and got.window == 219 * 1200 >> 3


def test_paws_drops_old_timestamp() -> None:
    env = Env(**FULL)
    cb = env.connect(0.0)
    env.recv()
    env.send(0.0, seg(seq=R_ISS, ack=cb.iss + 1, flags=TH_SYN | TH_ACK, wscale=0,
                      timestamps=(1000, cb.ts_now(0.0))))
    env.recv()
    env.send(0.1, seg(seq=R_ISS + 1, ack=cb.iss + 1, payload=b"new", timestamps=(1001, 0),
                      flags=TH_ACK | TH_PUSH))
    assert cb.recv(10, 0.1) == b"new"
    env.recv(0.5)
    env.send(0.5, seg(seq=R_ISS + 4, ack=cb.iss + 1, payload=b"old", timestamps=(900, 0)))
    assert cb.recv(10, 0.5) == b""
    assert env.stats.tcps_pawsdrop == 1
    got = env.recv()
    assert len(got) == 1 and got[0].ack == R_ISS + 4
    # RST is exempt from PAWS
    env.send(0.6, seg(seq=R_ISS + 4, flags=0x04, timestamps=(5, 0)))
    assert cb.state == TcpState.CLOSED


def test_effective_mss_min_of_peer_route_user() -> None:
    env = Env(mtu=9000)
    cb = env.connect(0.0, maxseg=4000)
    syn = env.recv()[0]
    assert syn.mss == 4000
    env.send(0.0, seg(seq=R_ISS, ack=cb.iss + 1, flags=TH_SYN | TH_ACK, mss=8960))
    assert cb.t_maxseg == 4000
    env2 = Env(mtu=9000)
    cb2 = env2.connect(0.0)
    assert env2.recv()[0].mss == 8960
    env2.send(0.0, seg(seq=R_ISS, ack=cb2.iss + 1, flags=TH_SYN | TH_ACK, mss=3000))
    assert cb2.t_maxseg == 3000


def test_large_segments_with_large_mtu() -> None:
    env = Env(mtu=65535)
    cb = env.established(peer_mss=65495)
    cb.send(b"z" * 150_000, 0.0)
    got = env.recv()
    assert len(got[0].payload) == 65495
    assert sum(len(g.payload) for g in got) <= 65535   # peer window


def test_sack_blocks_reported_for_out_of_order() -> None:
    env = Env(sack=1)
    cb = env.connect(0.0)
    env.recv()
    env.send(0.0, seg(seq=R_ISS, ack=cb.iss + 1, flags=TH_SYN | TH_ACK, sack_permitted=True))
    env.recv()
    base = R_ISS + 1
    env.send(0.0, seg(seq=base + 100, ack=cb.iss + 1, payload=b"b" * 100))
    got = env.recv()
    assert got == [TcpRepr(LPORT, RPORT, cb.iss + 1, base, TH_ACK, 65535,
                           sack_blocks=((base + 100, base + 200),))]
    env.send(0.0, seg(seq=base + 300, ack=cb.iss + 1, payload=b"d" * 100))
    got = env.recv()
    assert got[0].sack_blocks == ((base + 300, base + 400), (base + 100, base + 200))
    env.send(0.0, seg(seq=base, ack=cb.iss + 1, payload=b"a" * 100))
    got = env.recv()
    assert got[0].ack == base + 200 and got[0].sack_blocks == ((base + 300, base + 400),)
    env.send(0.0, seg(seq=base + 200, ack=cb.iss + 1, payload=b"c" * 100))
    got = env.recv()
    assert got[0].ack == base + 400 and got[0].sack_blocks == ()
    assert cb.recv(1000, 0.0) == b"a" * 100 + b"b" * 100 + b"c" * 100 + b"d" * 100
