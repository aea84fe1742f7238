"""TCP finite state machine (RFC 9293 section 3.3.2, NetBSD tcp_fsm.h).

The states are ordered exactly as NetBSD orders them so that "has the connection reached
ESTABLISHED" is a single comparison.  Every transition the input, timer and user code
makes is looked up in :data:`TRANSITIONS` (h11 style: ``(state, event) -> state``), so
the whole machine is visible in one table; :func:`dot` renders it as a Graphviz diagram.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class TcpState(IntEnum):
    CLOSED = 0
    LISTEN = 1
    SYN_SENT = 2
    SYN_RECEIVED = 3
    ESTABLISHED = 4
    CLOSE_WAIT = 5
    FIN_WAIT_1 = 6
    CLOSING = 7
    LAST_ACK = 8
    FIN_WAIT_2 = 9
    TIME_WAIT = 10


TCP_NSTATES = 11

CLOSED = TcpState.CLOSED
LISTEN = TcpState.LISTEN
SYN_SENT = TcpState.SYN_SENT
SYN_RECEIVED = TcpState.SYN_RECEIVED
ESTABLISHED = TcpState.ESTABLISHED
CLOSE_WAIT = TcpState.CLOSE_WAIT
FIN_WAIT_1 = TcpState.FIN_WAIT_1
CLOSING = TcpState.CLOSING
LAST_ACK = TcpState.LAST_ACK
FIN_WAIT_2 = TcpState.FIN_WAIT_2
TIME_WAIT = TcpState.TIME_WAIT


def TCPS_HAVEESTABLISHED(s: int) -> bool:  # noqa: N802 - NetBSD name
    return s >= ESTABLISHED


def TCPS_HAVERCVDSYN(s: int) -> bool:  # noqa: N802
    return s >= SYN_RECEIVED


def TCPS_HAVERCVDFIN(s: int) -> bool:  # noqa: N802
    return s == CLOSE_WAIT or (s >= CLOSING and s != FIN_WAIT_2)


def TCPS_SYNCHRONIZED(s: int) -> bool:  # noqa: N802
    return s >= ESTABLISHED


class Ev(StrEnum):
    """Events that move the state machine."""

    PASSIVE_OPEN = "passive_open"      # user listen()
    ACTIVE_OPEN = "active_open"        # user connect(): SYN sent
    RCV_SYN = "rcv_syn"                # SYN without ACK (LISTEN, or simultaneous open)
    RCV_SYNACK = "rcv_synack"          # acceptable SYN,ACK in SYN_SENT
    RCV_ACK = "rcv_ack"                # ACK of our SYN in SYN_RECEIVED
    RCV_FIN = "rcv_fin"                # in-sequence FIN
    RCV_ACK_OF_FIN = "rcv_ack_of_fin"  # ACK covering our FIN
    RCV_FIN_ACK_OF_FIN = "rcv_fin_ack_of_fin"  # FIN whose ACK also covers our FIN
    CLOSE = "close"                    # user shutdown(SHUT_WR)/close(): FIN queued
    TIMEOUT_2MSL = "timeout_2msl"
    RCV_RST = "rcv_rst"
    ABORT = "abort"                    # user abort / RST sent / give-up
    SYNCACHE_COMPLETE = "syncache_complete"  # SYN cache handshake completed


S = TcpState
# (state, event) -> new state.  RFC 9293 figure 5, plus the BSD SYN-cache shortcut.
TRANSITIONS: dict[tuple[TcpState, Ev], TcpState] = {
    (S.CLOSED, Ev.PASSIVE_OPEN): S.LISTEN,
    (S.CLOSED, Ev.ACTIVE_OPEN): S.SYN_SENT,
    (S.CLOSED, Ev.SYNCACHE_COMPLETE): S.ESTABLISHED,
    (S.LISTEN, Ev.RCV_SYN): S.SYN_RECEIVED,
    (S.LISTEN, Ev.CLOSE): S.CLOSED,
    (S.SYN_SENT, Ev.RCV_SYNACK): S.ESTABLISHED,
    (S.SYN_SENT, Ev.RCV_SYN): S.SYN_RECEIVED,       # simultaneous open
    (S.SYN_SENT, Ev.CLOSE): S.CLOSED,
    (S.SYN_RECEIVED, Ev.RCV_ACK): S.ESTABLISHED,
    (S.SYN_RECEIVED, Ev.CLOSE): S.FIN_WAIT_1,
    (S.SYN_RECEIVED, Ev.RCV_FIN): S.CLOSE_WAIT,
    (S.ESTABLISHED, Ev.CLOSE): S.FIN_WAIT_1,
    (S.ESTABLISHED, Ev.RCV_FIN): S.CLOSE_WAIT,
    (S.CLOSE_WAIT, Ev.CLOSE): S.LAST_ACK,
    (S.FIN_WAIT_1, Ev.RCV_FIN): S.CLOSING,          # simultaneous close
    (S.FIN_WAIT_1, Ev.RCV_ACK_OF_FIN): S.FIN_WAIT_2,
    (S.FIN_WAIT_1, Ev.RCV_FIN_ACK_OF_FIN): S.TIME_WAIT,
    (S.FIN_WAIT_2, Ev.RCV_FIN): S.TIME_WAIT,
    (S.CLOSING, Ev.RCV_ACK_OF_FIN): S.TIME_WAIT,
    (S.LAST_ACK, Ev.RCV_ACK_OF_FIN): S.CLOSED,
    (S.TIME_WAIT, Ev.TIMEOUT_2MSL): S.CLOSED,
}
# RST and abort lead to CLOSED from every state.
for _s in TcpState:
    TRANSITIONS.setdefault((_s, Ev.RCV_RST), S.CLOSED)
    TRANSITIONS.setdefault((_s, Ev.ABORT), S.CLOSED)
del _s


class TcpStateError(Exception):
    """A transition not in the table was requested (a bug, never caused by input)."""


def next_state(state: TcpState, event: Ev) -> TcpState:
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise TcpStateError(f"no transition from {state.name} on {event.value}") from None


# Flags a segment carries in each state when tcp_output sends (NetBSD tcp_outflags[]).
_F = {"FIN": 0x01, "SYN": 0x02, "RST": 0x04, "ACK": 0x10}
TCP_OUTFLAGS: tuple[int, ...] = (
    _F["RST"] | _F["ACK"],   # CLOSED
    0,                       # LISTEN
    _F["SYN"],               # SYN_SENT
    _F["SYN"] | _F["ACK"],   # SYN_RECEIVED
    _F["ACK"],               # ESTABLISHED
    _F["ACK"],               # CLOSE_WAIT
    _F["FIN"] | _F["ACK"],   # FIN_WAIT_1
    _F["FIN"] | _F["ACK"],   # CLOSING
    _F["FIN"] | _F["ACK"],   # LAST_ACK
    _F["ACK"],               # FIN_WAIT_2
    _F["ACK"],               # TIME_WAIT
)


def dot() -> str:
    """The transition table as a Graphviz digraph (h11 style generated diagram)."""
    lines = ["digraph tcp {"]
    for (src, ev), dst in TRANSITIONS.items():
        if ev in (Ev.RCV_RST, Ev.ABORT) and dst == S.CLOSED and src != S.CLOSED:
            continue
        lines.append(f'  {src.name} -> {dst.name} [label="{ev.value}"];')
    lines.append("}")
    return "\n".join(lines)
