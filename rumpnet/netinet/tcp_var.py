"""TCP per-connection state, counters and tunables (NetBSD tcp_var.h).

:class:`TcpCb` carries RFC 9293 / RFC 7323 / RFC 6298 names for its state and the user
requests the socket layer calls (``send``, ``recv``, ``shutdown_write``, ``close``,
``abort``, ...).  The protocol machinery lives in tcp_input / tcp_output / tcp_timer.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from rumpnet.netinet import tcp_output as _out
from rumpnet.netinet import tcp_rack as _rack
from rumpnet.netinet import tcp_timer as _timer
from rumpnet.netinet.tcp_const import (  # noqa: F401  (re-exported: tcp_var.h's names)
    EV_CLOSED,
    EV_CONNECTED,
    EV_ERROR,
    EV_READABLE,
    EV_WRITABLE,
    TCPT_2MSL,
    TCPT_DELACK,
    TCPT_KEEP,
    TCPT_NTIMERS,
    TCPT_PERSIST,
    TCPT_REORDER,
    TCPT_REXMT,
    TCPT_TLP,
    TF_ACKNOW,
    TF_DELACK,
    TF_ECN,
    TF_ECN_PERMIT,
    TF_ECN_SND_CWR,
    TF_ECN_SND_ECE,
    TF_FORCE,
    TF_NODELAY,
    TF_PASSIVE,
    TF_RCVD_SCALE,
    TF_RCVD_TSTMP,
    TF_REQ_ECN,
    TF_REQ_SCALE,
    TF_REQ_TSTMP,
    TF_SACK_PERMIT,
    TF_SENTFIN,
    TF_WILL_SACK,
    TS_BOTH,
)
from rumpnet.netinet.tcp_fsm import Ev, TcpState, next_state
from rumpnet.netinet.tcp_sack import SackScoreboard

if TYPE_CHECKING:
    from rumpnet.netinet.tcp_congctl import CongCtl
    from rumpnet.netinet.tcp_subr import TcpProtocol


def _err(code: int) -> OSError:
    return OSError(code, os.strerror(code))


@dataclass
class TcpParams:
    """Tunables; the kernel binds each to sysctl ``net.inet.tcp.<name>``."""

    mssdflt: int = 536
    rfc1323: int = 1
    sack: int = 1
    congctl: str = "newreno"
    delack_ticks: int = 100          # delayed-ACK timer, milliseconds
    delack_max_segs: int = 2         # ACK at least every this many full segments
    # 1: the ACK due after delack_max_segs segments is sent when the caller next runs
    # the timers (a deadline of "now": the end of this loop turn), so a batch of
    # segments that arrives in one turn is acknowledged once, as with GRO/LRO (but at
    # least every quarter of the receive buffer).
    # 0: ACK at once (BSD).  Out-of-order data, FIN, window probes: always at once.
    ack_batch: int = 1
    # 1: in slow start a stretch ACK (covering more than two segments, e.g. from a peer
    # with ack_batch or GRO) grows cwnd by all it acknowledges (Linux), not by at most
    # 2*SMSS (RFC 3465 L); not while retransmissions are acknowledged.  0: L=2*SMSS.
    abc_stretch: int = 1
    # 1: toward an interface without TSO, TCP still builds superframes of whole segments
    # and IP cuts them just before the interface (Linux's GSO, on for every device
    # there): the wire sees the same frames, built in one pass instead of one
    # tcp_output round per segment.  0: one segment per round.
    gso: int = 1
    # Receive buffer autosizing (NetBSD/FreeBSD net.inet.tcp.recvbuf_auto): a socket
    # whose SO_RCVBUF the user never set doubles its receive buffer, up to recvbuf_max,
    # whenever the peer sent more than 7/8 of it within one round trip (measured with
    # timestamps): the window, not the path, was the limit.  The window scale asked for
    # in the SYN allows recvbuf_max.
    recvbuf_auto: int = 1
    recvbuf_max: int = 4 * 1024 * 1024
    # Send buffer autosizing (net.inet.tcp.sendbuf_auto, FreeBSD's tcp_autosndbuf): a
    # socket whose SO_SNDBUF the user never set doubles its send buffer, up to
    # sendbuf_max, when it is nearly full, the peer's window is larger than it and the
    # send window would take all of it: the buffer, not the path, was the limit.
    sendbuf_auto: int = 1
    sendbuf_max: int = 4 * 1024 * 1024
    keepidle: float = 7200.0         # seconds
    keepintvl: float = 75.0
    keepcnt: int = 8
    keepinit: float = 75.0           # connection-establishment timeout
    msl: float = 30.0                # TIME_WAIT lasts 2*msl
    rtomin: float = 1.0
    rtomax: float = 64.0
    init_rto: float = 1.0
    rexmit_max: int = 12
    syn_retries: int = 6
    synack_retries: int = 3
    init_win: int = 10               # RFC 6928, in segments
    syn_cache_limit: int = 10240
    syn_bucket_limit: int = 105
    syn_cache_buckets: int = 512
    challenge_ack_limit: int = 1000  # per second (RFC 5961 section 7)
    # Conformance knobs (docs/CONFORMANCE.md), where the RFCs leave a choice:
    # options of SYN and SYN-ACK packed as FreeBSD packs them (mss,nop,wscale,sackOK,TS;
    # EOL padding), not each NOP-aligned to 4 bytes as NetBSD (RFC 9293 3.1).
    compact_options: int = 0
    # The window scale we ask for covers the largest socket buffer (kern.sbmax), as
    # FreeBSD's, not this socket's receive buffer as NetBSD's (RFC 7323 2.2).
    rcvscale_sbmax: int = 0
    # RFC 793's acceptance instead of RFC 5961's (FreeBSD's knobs of the same names): a
    # RST (insecure_rst) or SYN (insecure_syn) anywhere in the window resets the
    # connection, where RFC 5961 3.2/4.2 answer with a challenge ACK unless a RST is exact.
    insecure_rst: int = 0
    insecure_syn: int = 0
    # Segments with both SYN and FIN are dropped where a SYN would open or synchronize
    # a connection: at listeners, in SYN-SENT and SYN-RECEIVED (FreeBSD's knob; NetBSD
    # drops them at listeners: no real stack sends one, scanners do). In a synchronized
    # state such a segment is a SYN, answered with RFC 5961 4.2's challenge ACK. 0: the
    # SYN is taken and the FIN ignored where RFC 9293 3.10.7.2/3.10.7.3 do not process it.
    drop_synfin: int = 1
    # RFC 1337 section 3 ("F1"): a RST in TIME_WAIT is ignored, so that an old
    # duplicate cannot cut the TIME_WAIT short (FreeBSD; Linux's tcp_rfc1337). 0: the
    # RST closes it, as RFC 9293 3.10.7.4 second says and NetBSD does.
    rfc1337: int = 0
    # 1: a scaled window is rounded up to the scale's granularity (FreeBSD's tcp_output,
    # Linux's __tcp_select_window), 0: down (NetBSD) -- RFC 7323 2.4 allows either.
    rcvwin_roundup: int = 0
    # 1: in TIME-WAIT a RST or SYN is in the window (RFC 5961 3.2/4.2, RFC 793 with
    # insecure_rst/insecure_syn) only within the window last advertised (RCV.ADV -
    # RCV.NXT), the one FreeBSD's compressed TIME-WAIT keeps (tcp_timewait.c, struct
    # tcptw: no socket buffer, only last_win); 0: within the buffer space, never less
    # than advertised, as in every state (4.4BSD/NetBSD rcv_wnd). RFC 9293 3.3.1 and
    # 3.10.7.4 give TIME-WAIT no window of its own. Trimming keeps the buffer space.
    tw_last_adv_window: int = 0
    # 1: the MSS option of our SYN and SYN-ACK comes from the route's path MTU when one
    # is known (FreeBSD's tcp_mssopt, from the host cache), not from the interface MTU
    # alone (NetBSD); RFC 1191 3.1 / RFC 8201 5.2 allow either.
    mssopt_pmtu: int = 0
    # Out-of-order bytes a connection may queue.  Only data inside the offered window is
    # queued (tcp_input trims the rest), so the window, up to recvbuf_max, is the real
    # bound; this is a cap on top of it.  Behind a hole a window's worth may wait.
    reass_maxbytes: int = 4 * 1024 * 1024
    sendspace: int = 256 * 1024
    recvspace: int = 256 * 1024
    persmin: float = 5.0
    persmax: float = 60.0
    dupthresh: int = 3
    limited_transmit: int = 1
    # Loss detection with SACK: "rack" (RFC 8985 RACK-TLP: time-based, the default, as in
    # Linux and FreeBSD's rack stack) or "dupack" (RFC 6675: DupThresh SACKed segments).
    # Without SACK, duplicate ACKs as RFC 5681 / RFC 6582 count them.
    recovery: str = "rack"
    tlp: int = 1                     # RFC 8985 section 7 tail loss probes (with SACK)
    prr: int = 1                     # RFC 6937 PRR sets cwnd in recovery (0: cwnd = ssthresh)
    spurious_rto: int = 1            # RFC 3522 detection (timestamps), RFC 4015 response
    hystart: int = 1                 # RFC 9406 HyStart++ in CUBIC's initial slow start
    maxidle_fin_wait_2: float = 600.0  # orphaned FIN_WAIT_2 limit (BSD tcp_maxidle)
    # 1: a hard ICMP error (protocol/port unreachable, administratively prohibited, TTL
    # exceeded in transit) aborts a connection attempt in SYN-SENT (FreeBSD's
    # net.inet.tcp.icmp_may_rst, RFC 1122 4.2.3.9, RFC 5461); 0: soft, as NetBSD.
    icmp_may_rst: int = 1
    # ECN (RFC 3168, tcp_ecn; sysctl net.inet.tcp.ecn.enable and .maxretries, the names of
    # NetBSD and FreeBSD): 0 off (NetBSD's default), 1 ask for it on active opens and take
    # it on passive ones, 2 take it only (FreeBSD's meanings; FreeBSD's default).
    ecn_enable: int = 0
    # ECN-setup SYNs resent before the SYN goes without ECE and CWR (RFC 3168 6.1.1.1).
    ecn_maxretries: int = 1

    def names(self) -> list[str]:
        return [f.name for f in fields(self)]


# The values a string tunable takes (sysctl refuses others, naming these).
PARAM_CHOICES: dict[str, tuple[str, ...]] = {
    "congctl": ("newreno", "cubic"),
    "recovery": ("rack", "dupack"),
}
# The sysctl names under net.inet.tcp that are not the field's own, and the largest
# values of int tunables that have one (sysctl refuses others with EINVAL).
PARAM_PATHS: dict[str, str] = {"ecn_enable": "ecn.enable", "ecn_maxretries": "ecn.maxretries"}
PARAM_MAX: dict[str, int] = {"ecn_enable": 2}


class TcpStats:
    """tcps_* counters as printed by NetBSD ``netstat -s -p tcp``."""

    tcps_connattempt: int = 0
    tcps_accepts: int = 0
    tcps_connects: int = 0
    tcps_drops: int = 0
    tcps_conndrops: int = 0
    tcps_closed: int = 0
    tcps_segstimed: int = 0
    tcps_rttupdated: int = 0
    tcps_delack: int = 0
    tcps_timeoutdrop: int = 0
    tcps_rexmttimeo: int = 0
    tcps_persisttimeo: int = 0
    tcps_keeptimeo: int = 0
    tcps_keepprobe: int = 0
    tcps_keepdrops: int = 0
    tcps_persistdrops: int = 0
    tcps_sndtotal: int = 0
    tcps_sndpack: int = 0
    tcps_sndbyte: int = 0
    tcps_sndrexmitpack: int = 0
    tcps_sndrexmitbyte: int = 0
    tcps_sndacks: int = 0
    tcps_sndprobe: int = 0
    tcps_sndurg: int = 0
    tcps_sndwinup: int = 0
    tcps_sndctrl: int = 0
    tcps_sndrst: int = 0
    tcps_rcvtotal: int = 0
    tcps_rcvpack: int = 0
    tcps_rcvbyte: int = 0
    tcps_rcvbadsum: int = 0
    tcps_rcvbadoff: int = 0
    tcps_rcvbadopt: int = 0
    tcps_rcvmemdrop: int = 0
    tcps_rcvshort: int = 0
    tcps_rcvduppack: int = 0
    tcps_rcvdupbyte: int = 0
    tcps_rcvpartduppack: int = 0
    tcps_rcvpartdupbyte: int = 0
    tcps_rcvoopack: int = 0
    tcps_rcvoobyte: int = 0
    tcps_rcvpackafterwin: int = 0
    tcps_rcvbyteafterwin: int = 0
    tcps_rcvafterclose: int = 0
    tcps_rcvwinprobe: int = 0
    tcps_rcvdupack: int = 0
    tcps_rcvacktoomuch: int = 0
    tcps_rcvackpack: int = 0
    tcps_rcvackbyte: int = 0
    tcps_rcvwinupd: int = 0
    tcps_rcvrst: int = 0
    tcps_badrst: int = 0      # RSTs ignored in SYN_SENT and LISTEN (FreeBSD's name)
    tcps_pawsdrop: int = 0
    tcps_predack: int = 0
    tcps_preddat: int = 0
    tcps_noport: int = 0
    tcps_badsyn: int = 0
    tcps_listendrop: int = 0
    tcps_connsdrained: int = 0
    tcps_sc_added: int = 0
    tcps_sc_completed: int = 0
    tcps_sc_timed_out: int = 0
    tcps_sc_overflowed: int = 0
    tcps_sc_reset: int = 0
    tcps_sc_unreach: int = 0
    tcps_sc_bucketoverflow: int = 0
    tcps_sc_aborted: int = 0
    tcps_sc_dupesyn: int = 0
    tcps_sc_dropped: int = 0
    tcps_sc_collisions: int = 0
    tcps_sc_retransmitted: int = 0
    tcps_sc_entries: int = 0
    tcps_sack_recovery_episode: int = 0
    tcps_sack_rexmits: int = 0
    tcps_sack_rexmit_bytes: int = 0
    tcps_sack_rcv_opts: int = 0
    tcps_sack_send_opts: int = 0
    tcps_newreno_recovery: int = 0
    # Loss recovery (names after FreeBSD's and Linux's counters).
    tcps_rexmttimeo_sacklost: int = 0   # RTOs of a segment SACK had deemed lost, never resent
    tcps_rexmttimeo_spurious: int = 0   # spurious RTOs detected (RFC 3522), cwnd restored
    tcps_sndrexmitbad: int = 0          # retransmissions a spurious RTO made needlessly
    tcps_rack_lost: int = 0             # segments RACK deemed lost (RFC 8985 6.2)
    tcps_rack_lost_rexmit: int = 0      # ... of them retransmissions lost again
    tcps_rack_reordertimeo: int = 0     # RACK reordering timer expirations
    tcps_rack_reorder_seen: int = 0     # connections on which reordering was seen
    tcps_dupack_lost: int = 0           # ACKs on which RFC 6675 IsLost found losses
    tcps_tlp_probes: int = 0            # tail loss probes sent (RFC 8985 7.3)
    tcps_tlp_probe_rexmit: int = 0      # ... of them retransmitting the last segment
    tcps_tlp_recovered: int = 0         # losses repaired by a probe (RFC 8985 7.4)
    tcps_prr_recoveries: int = 0        # recoveries whose cwnd PRR set (RFC 6937)
    tcps_hystart_css: int = 0           # HyStart++ entries into CSS (RFC 9406)
    tcps_hystart_exit: int = 0          # slow starts ended by HyStart++
    tcps_fast_rexmit: int = 0
    tcps_partial_acks: int = 0
    tcps_limited_transmit: int = 0
    tcps_challenge_ack: int = 0
    tcps_challenge_ack_limited: int = 0
    tcps_tw_reuse: int = 0
    tcps_tw_rst_ignored: int = 0     # RSTs ignored in TIME_WAIT (rfc1337)
    tcps_rst_outwin: int = 0         # RSTs outside the receive window, ignored
    tcps_reass_overflow: int = 0
    tcps_rcvinternalerr: int = 0
    # (not in NetBSD, whose tcp_input says "XXX stat") segments to or from a broadcast or
    # multicast address, dropped (RFC 1122 4.2.3.10, 3.2.1.3)
    tcps_rcvbcast: int = 0
    # ECN (RFC 3168; tcp_ecn). NetBSD's: successful ECN handshakes, segments received with
    # CE and with ECT(0); FreeBSD's: with ECT(1), cwnd reductions for ECE, segments sent
    # ECT(0); ours: segments sent with ECE, with CWR.
    tcps_ecn_shs: int = 0
    tcps_ecn_ce: int = 0
    tcps_ecn_ect: int = 0
    tcps_ecn_ect1: int = 0
    tcps_ecn_rcwnd: int = 0
    tcps_ecn_sndect0: int = 0
    tcps_ecn_sndece: int = 0
    tcps_ecn_sndcwr: int = 0

    NAMES: tuple[str, ...] = ()  # filled below

    def __init__(self) -> None:
        for n in self.NAMES:
            setattr(self, n, 0)

    def as_dict(self) -> dict[str, int]:
        return {n: getattr(self, n) for n in self.NAMES}


TcpStats.NAMES = tuple(n for n in TcpStats.__annotations__ if n.startswith("tcps_"))


class TcpCb:
    """One TCP connection (NetBSD struct tcpcb + the socket buffers it owns)."""

    _ids = 0
    # Defaults an instance overrides when set (rarely: socket options, counters).
    # Keepalive and connection-establishment times the socket set (TCP_KEEPIDLE..
    # TCP_KEEPINIT); 0: the sysctl's, whatever it is when used (FreeBSD's TP_KEEPIDLE(tp)).
    # Read them through keep_idle() and friends.
    t_keepidle = 0.0
    t_keepintvl = 0.0
    t_keepcnt = 0
    t_keepinit = 0.0
    ip_tos = 0                          # IP_TOS of its segments
    ip_ttl: int | None = None           # IP_TTL, None: net.inet.ip.ttl
    # Per-connection counters for TCP_INFO (NetBSD's t_sndrexmitpack, t_rcvoopack,
    # t_sndzerowin).
    t_sndrexmitpack = 0
    t_rcvoopack = 0
    t_sndzerowin = 0
    # An ECN reduction (tcp_ecn, RFC 3168 6.1.2) lasts until SND.UNA passes this SND.MAX.
    ecn_recover: int | None = None

    def __init__(self, proto: TcpProtocol, laddr: int, lport: int, faddr: int, fport: int,
                 now: float) -> None:
        """A CLOSED connection between the two endpoints. The fields stay flat, as in
        NetBSD's tcpcb (the per-segment paths read them without an extra hop), and are
        set here by meaning, one initialiser per group."""
        p = proto.params
        self.proto = proto
        self.params = p
        self.stats = proto.stats
        TcpCb._ids += 1
        self.id = TcpCb._ids
        self.state = TcpState.CLOSED
        self.laddr, self.lport, self.faddr, self.fport = laddr, lport, faddr, fport
        self.error = 0
        self.t_softerror = 0
        self.upcall: Callable[[TcpCb, int], None] | None = None
        self.t_flags = 0
        self._init_sequence()
        self._init_rtt_and_congestion(p)
        self._init_recovery()
        self._init_segment_options(p)
        self._init_buffers(p)
        self._init_timers(now)
        # Socket options.
        self._keepalive = False
        self.linger_on = False
        self.linger_secs = 0
        self.cc: CongCtl = proto.new_congctl(self)
        self.freed = False

    def _init_sequence(self) -> None:
        """Send and receive sequence variables (RFC 9293 3.3.1)."""
        self.iss = 0
        self.snd_una = self.snd_nxt = self.snd_max = 0
        self.snd_wl1 = self.snd_wl2 = self.snd_up = 0
        self.snd_wnd = 0
        self.max_sndwnd = 0
        self.irs = 0
        self.rcv_nxt = self.rcv_adv = self.rcv_up = 0
        self.last_ack_sent = 0

    def _init_rtt_and_congestion(self, p: TcpParams) -> None:
        """Congestion control (RFC 5681) and the RTT estimator (RFC 6298), seconds."""
        self.snd_cwnd = 0
        self.snd_ssthresh = 1 << 30
        self.t_srtt = 0.0
        self.t_rttvar = 0.0
        self.t_rttmin = p.rtomin
        self.t_rxtcur = p.init_rto
        self.t_rto_init = p.init_rto   # RTO before any sample (RFC 6298 2.1 / 5.7)
        self.t_rxtshift = 0
        self.t_rtttime: float | None = None   # send time of the timed segment (Karn)
        self.t_rtseq = 0

    def _init_recovery(self) -> None:
        """Loss recovery: duplicate ACKs and fast recovery (RFC 6675 / RFC 6582), PRR (RFC
        6937), spurious RTO detection (RFC 3522), the SACK scoreboard and RACK (RFC 8985)."""
        self.t_dupacks = 0
        self.snd_recover = 0
        self.in_recovery = False      # fast recovery (RFC 6675 / RFC 6582)
        self.sack_recovery = False
        self.rto_recovery = False     # after an RTO, until SND.UNA passes snd_recover
        # PRR: delivered and sent since recovery began, FlightSize then.
        self.prr_delivered = 0
        self.prr_out = 0
        self.recover_fs = 0
        # Spurious RTO detection: TSval of the first retransmission of an RTO, and what
        # the timeout took away (cwnd, ssthresh, the algorithm's own state).
        self.t_rxt_tsval: int | None = None
        self.t_rto_undo: tuple[int, int, object] | None = None
        self.t_rto_rexmits = 0
        self.sack = SackScoreboard()
        self.rack = _rack.Rack()
        self.t_sndtime: float | None = None             # last data transmission

    def _init_segment_options(self, p: TcpParams) -> None:
        """MSS (RFC 9293 3.7.1, RFC 6691), TSO, window scale and timestamps (RFC 7323),
        the SACK blocks we report (RFC 2018, RFC 2883)."""
        self.t_maxseg = p.mssdflt
        self.t_peermss = p.mssdflt
        self.t_ourmss = p.mssdflt
        self.user_maxseg = 0
        self.noopt = False          # TCP_NOOPT: no options in our SYN, none used
        self.t_tsomax = 0             # TSO: most TCP bytes per superframe, 0 = none
        self.t_pmtu_gen = -1          # route generation t_maxseg was last sized for
        self.snd_scale = 0
        self.rcv_scale = 0
        self.request_r_scale = 0
        self.ts_recent = 0
        self.ts_recent_age = 0.0
        self.ts_offset = 0
        self.rcv_sack_blocks: list[tuple[int, int]] = []
        self.rcv_dsack: tuple[int, int] | None = None   # RFC 2883 D-SACK to report once

    def _init_buffers(self, p: TcpParams) -> None:
        """The socket buffers TCP owns, their autosizing, reassembly, and the user's
        shutdowns."""
        self.snd_buf = bytearray()
        self.snd_buf_seq = 0          # sequence number of snd_buf[0]
        self.sndspace = p.sendspace
        self.snd_auto = bool(p.sendbuf_auto)   # SO_SNDBUF unset (TcpParams.sendbuf_auto)
        self.rcv_buf = bytearray()
        self.rcvspace = p.recvspace
        # Autosizing (TcpParams.recvbuf_auto): on until the user sets SO_RCVBUF; the
        # bytes received since our timestamp rfbuf_ts went out (FreeBSD's rfbuf_*).
        self.rcv_auto = bool(p.recvbuf_auto)
        self.rfbuf_ts: int | None = None
        self.rfbuf_cnt = 0
        self.reass: list[list[Any]] = []   # [[seq, bytearray], ...] sorted, disjoint
        self.reass_bytes = 0
        self.reass_fin: int | None = None  # sequence number of an out-of-order FIN
        self.fin_queued = False       # user shut down writing (FIN to be sent)
        self.fin_rcvd = False
        self.read_shut = False
        self.user_closed = False      # no socket references it any more (SS_NOFDREF)
        self.listener: Any = None     # TcpListener that spawned us, until accepted

    def _init_timers(self, now: float) -> None:
        """The TCPT_* deadlines (tcp_timer.h), the heap entry they hold, idle and
        keepalive bookkeeping."""
        self.timers: list[float | None] = [None] * TCPT_NTIMERS
        self._hdl: float | None = None
        self.t_rcvtime = now
        self.t_starttime = now
        self.t_keepprobes = 0
        self.delack_segs = 0

    # ----- helpers -------------------------------------------------------------
    def __repr__(self) -> str:
        return (f"<TcpCb {self.lport}->{self.fport} {self.state.name} una={self.snd_una} "
                f"nxt={self.snd_nxt} max={self.snd_max} rcv_nxt={self.rcv_nxt}>")

    @property
    def nodelay(self) -> bool:
        return bool(self.t_flags & TF_NODELAY)

    @nodelay.setter
    def nodelay(self, on: bool) -> None:
        if on:
            self.t_flags |= TF_NODELAY
        else:
            self.t_flags &= ~TF_NODELAY

    @property
    def rcv_wnd(self) -> int:
        """RCV.WND: the window currently offered to the peer (RCV.ADV - RCV.NXT)."""
        d = (self.rcv_adv - self.rcv_nxt) & 0xFFFFFFFF
        return 0 if d >= 0x80000000 else d

    @property
    def send_q(self) -> int:
        return len(self.snd_buf)

    @property
    def recv_q(self) -> int:
        return len(self.rcv_buf)

    @property
    def at_eof(self) -> bool:
        """True when no more data will ever be readable (FIN received or reset/closed)."""
        if self.rcv_buf:
            return False
        return self.fin_rcvd or self.read_shut or self.state == TcpState.CLOSED

    @property
    def keepalive(self) -> bool:
        return self._keepalive

    @keepalive.setter
    def keepalive(self, on: bool) -> None:
        """SO_KEEPALIVE (RFC 1122 4.2.3.6): probe after keepidle of silence."""
        self._keepalive = bool(on)
        if self.state >= TcpState.ESTABLISHED and not self.freed:
            if on:
                if self.timers[TCPT_KEEP] is None:
                    self.set_timer(TCPT_KEEP, self.keep_idle(), self.t_rcvtime)
            else:
                self.cancel_timer(TCPT_KEEP)

    def keep_idle(self) -> float:
        return self.t_keepidle or self.params.keepidle

    def keep_intvl(self) -> float:
        return self.t_keepintvl or self.params.keepintvl

    def keep_cnt(self) -> int:
        return self.t_keepcnt or self.params.keepcnt

    def keep_init(self) -> float:
        return self.t_keepinit or self.params.keepinit

    def next_deadline(self) -> float | None:
        return _timer.next_deadline(self)

    def on_timer(self, now: float) -> None:
        _timer.fire_cb(self, now)

    def set_timer(self, which: int, delay: float, now: float) -> None:
        d = now + delay
        self.timers[which] = d
        if self._hdl is None or d < self._hdl:
            self._hdl = d
            self.proto.timer_push(d, self)

    def cancel_timer(self, which: int) -> None:
        self.timers[which] = None

    def timer_armed(self, which: int) -> bool:
        return self.timers[which] is not None

    def notify(self, ev: int) -> None:
        up = self.upcall
        if up is not None and ev:
            up(self, ev)

    def transition(self, ev: Ev) -> None:
        self.state = next_state(self.state, ev)

    def ts_now(self, now: float) -> int:
        """Our RFC 7323 timestamp clock: milliseconds plus a per-connection offset."""
        return (int(now * 1000) + self.ts_offset) & 0xFFFFFFFF

    def segsize(self) -> int:
        """The effective segment size, SMSS (RFC 5681 section 2, RFC 9293 3.7.1): the MSS
        less the options every segment carries (NetBSD's t_segsz).  cwnd counts in these
        units."""
        n = self.t_maxseg
        if self.t_flags & TS_BOTH == TS_BOTH:
            n -= 12
        return max(n, 1)

    def rcv_space(self) -> int:
        return max(0, self.rcvspace - len(self.rcv_buf))

    # ----- user requests (NetBSD tcp_usrreq) -------------------------------------
    def send_space(self) -> int:
        if self.fin_queued or self.state == TcpState.CLOSED:
            return 0
        return max(0, self.sndspace - len(self.snd_buf))

    def send(self, data: bytes | bytearray | memoryview, now: float) -> int:
        if self.error and self.state == TcpState.CLOSED:
            raise _err(self.error)
        if self.fin_queued or self.state == TcpState.CLOSED or self.user_closed:
            raise _err(errno.EPIPE)
        if self.state < TcpState.SYN_SENT:
            raise _err(errno.ENOTCONN)
        n = min(len(data), self.send_space())
        if n <= 0:
            return 0
        self.snd_buf += data[:n] if n < len(data) else data
        if self.state >= TcpState.ESTABLISHED:
            _out.tcp_output(self, now)
        return n

    def readable_bytes(self) -> int:
        return len(self.rcv_buf)

    def recv(self, n: int, now: float, peek: bool = False) -> bytes:
        buf = self.rcv_buf
        if n <= 0 or not buf:
            return b""
        if n >= len(buf):
            out = bytes(buf)
            if not peek:
                buf.clear()
        else:
            with memoryview(buf) as mv:
                out = bytes(mv[:n])       # one copy; the view is released before del
            if not peek:
                del buf[:n]               # O(1): bytearray trims its head in place
        if not peek and self.state >= TcpState.ESTABLISHED and self.state != TcpState.CLOSED:
            # Window update if it opened enough (receiver SWS avoidance, RFC 9293 3.8.6.2.2).
            _out.tcp_output(self, now)
        return out

    def shutdown_write(self, now: float) -> None:
        """shutdown(SHUT_WR): queue a FIN after the data (NetBSD tcp_usrclosed)."""
        if self.fin_queued or self.state == TcpState.CLOSED:
            return
        st = self.state
        if st in (TcpState.SYN_SENT, TcpState.LISTEN):
            self.proto.drop(self, 0, now, send_rst=False)
            return
        self.fin_queued = True
        if st in (TcpState.SYN_RECEIVED, TcpState.ESTABLISHED, TcpState.CLOSE_WAIT):
            self.transition(Ev.CLOSE)
        if self.state >= TcpState.FIN_WAIT_1 or self.state == TcpState.LAST_ACK:
            _out.tcp_output(self, now)

    def shutdown_read(self, now: float) -> None:
        self.read_shut = True
        self.rcv_buf.clear()

    def close(self, now: float) -> None:
        """close(2): flush receive side, then graceful FIN (or RST with SO_LINGER 0)."""
        if self.state == TcpState.CLOSED:
            self.user_closed = True
            self.proto.free(self, now)
            return
        if self.linger_on and self.linger_secs == 0:
            self.abort(now)
            return
        self.user_closed = True
        self.read_shut = True
        self.rcv_buf.clear()
        if self.state < TcpState.ESTABLISHED and self.state != TcpState.SYN_RECEIVED:
            self.proto.drop(self, 0, now, send_rst=False)
            return
        self.shutdown_write(now)
        if self.state == TcpState.FIN_WAIT_2:
            # Orphaned FIN_WAIT_2 must not live forever (BSD tcp_maxidle).
            self.set_timer(TCPT_2MSL, self.params.maxidle_fin_wait_2, now)

    def abort(self, now: float) -> None:
        """Drop the connection, sending a RST if synchronized (RFC 9293 3.10.5 ABORT)."""
        self.user_closed = True
        if self.state == TcpState.CLOSED:
            self.proto.free(self, now)
            return
        self.proto.drop(self, 0, now, send_rst=self.state >= TcpState.SYN_RECEIVED)

    def set_linger(self, onoff: bool, seconds: int) -> None:
        self.linger_on = bool(onoff)
        self.linger_secs = int(seconds)

    def set_maxseg(self, n: int) -> None:
        """TCP_MAXSEG: caps the MSS we announce and use."""
        if n < 64:
            raise _err(errno.EINVAL)
        self.user_maxseg = n
        if self.state >= TcpState.ESTABLISHED:
            self.t_maxseg = min(self.t_maxseg, n)

    def round_buffers(self) -> None:
        """Once the MSS is known, both socket buffers grow to a whole number of segments (at
        most kern.sbmax), as 4.4BSD's tcp_mss does in NetBSD and FreeBSD: a window of whole
        segments avoids a last small one (RFC 9293 3.8.6.2.1, receiver SWS avoidance)."""
        mss = self.t_maxseg
        sb_max = self.proto.sb_max()
        if self.rcvspace > mss:
            self.rcvspace = max(self.rcvspace, min(-(-self.rcvspace // mss) * mss, sb_max))
        if self.sndspace > mss:
            self.sndspace = max(self.sndspace, min(-(-self.sndspace // mss) * mss, sb_max))

    def set_sndbuf(self, n: int) -> None:
        """SO_SNDBUF, set by the user: the size is fixed from now on (no autosizing)."""
        if n <= 0:
            raise _err(errno.EINVAL)
        self.sndspace = n
        self.snd_auto = False

    def set_rcvbuf(self, n: int) -> None:
        """SO_RCVBUF, set by the user: the size is fixed from now on (no autosizing)."""
        if n <= 0:
            raise _err(errno.EINVAL)
        self.rcvspace = n
        self.rcv_auto = False


def wscale_for(space: int) -> int:
    """The window scale that lets a window of ``space`` bytes be announced (RFC 7323 2.2)."""
    s = 0
    while s < 14 and (65535 << s) < space:
        s += 1
    return s


def rcvbuf_scale_space(p: TcpParams, rcvspace: int, auto: bool, sb_max: int) -> int:
    """The receive buffer a window scale must cover: with autosizing, the most it may
    grow to (TcpParams.recvbuf_max); with ``rcvscale_sbmax``, the largest any socket
    buffer may be (``sb_max``, FreeBSD's tcp_connect and syncache_add)."""
    if p.rcvscale_sbmax:
        return sb_max
    return max(rcvspace, p.recvbuf_max) if auto else rcvspace
