"""TCP's constants, in one leaf module that imports nothing: every TCP module takes them
from here, so none has to copy them to dodge an import cycle.

The sections follow NetBSD's headers: ``tcp.h`` (the window limit; the header flags
``TH_*`` live with the wire format in :mod:`rumpnet.netinet.tcp`), ``tcp_var.h``
(``t_flags`` bits, and the upcall events of this stack) and ``tcp_timer.h`` (timer
indices into ``TcpCb.timers``).
"""

from __future__ import annotations

# -- tcp.h ------------------------------------------------------------------------------
TCP_MAXWIN = 65535      # largest unscaled window (RFC 9293 3.1, RFC 7323 2.2)
# IP and TCP headers without options: MSS = path MTU - this (tcp_mssopt's hdrlen)
IP_TCP_HDRS = 40        # over IPv4
TCP6_HDRS = 60          # over IPv6 (RFC 8200 8.3: 1220 at IPv6's minimum MTU)

# -- tcp_var.h: t_flags (NetBSD TF_*) ---------------------------------------------------
TF_ACKNOW = 0x0001
TF_DELACK = 0x0002
TF_NODELAY = 0x0004
TF_SENTFIN = 0x0010
TF_REQ_SCALE = 0x0020
TF_RCVD_SCALE = 0x0040
TF_REQ_TSTMP = 0x0080
TF_RCVD_TSTMP = 0x0100
TF_SACK_PERMIT = 0x0200
TF_WILL_SACK = 0x0400
TF_FORCE = 0x0800
TF_PASSIVE = 0x1000
# ECN (tcp_ecn, RFC 3168 6.1; NetBSD's names).
TF_REQ_ECN = 0x2000        # our SYNs are ECN-setup SYNs (ecn.enable=1, active open)
TF_ECN_PERMIT = 0x4000     # negotiated: ECT on new data, ECE and CWR mean something
TF_ECN_SND_CWR = 0x8000    # CWR on the next new data segment
TF_ECN_SND_ECE = 0x10000   # ECE on every segment until a CWR arrives
TF_ECN = TF_REQ_ECN | TF_ECN_PERMIT   # ECN asked for or negotiated: tcp_output's hook runs
TS_BOTH = TF_REQ_TSTMP | TF_RCVD_TSTMP   # timestamps asked for and granted (RFC 7323)

# -- tcp_var.h: events of a connection's upcall (the socket layer's wakeups) ------------
EV_READABLE = 0x01
EV_WRITABLE = 0x02
EV_CONNECTED = 0x04
EV_CLOSED = 0x08
EV_ERROR = 0x10

# -- tcp_timer.h: timers (NetBSD TCPT_*); deadlines live in TcpCb.timers[index] --------
TCPT_REXMT = 0
TCPT_PERSIST = 1
TCPT_KEEP = 2
TCPT_2MSL = 3
TCPT_DELACK = 4
TCPT_REORDER = 5   # RACK reordering timer (RFC 8985 6.2 step 5)
TCPT_TLP = 6       # tail loss probe timeout, PTO (RFC 8985 7.2)
TCPT_NTIMERS = 7
