/*
 * rumpdrill: the wire protocol between packetdrill's --so_filename object
 * (rumpdrill.c), the kernel tools (rumpdrill_tool.c) and the Python session that
 * drives a rumpnet kernel (rumpnet/packetdrill/wire.py mirrors these numbers).
 *
 * Part of rumpnet (BSD-2-Clause). This is our own code: packetdrill (GPLv2) is run
 * as a separate program and none of its code is included here.
 *
 * Every call is one request and one reply on a stream socket, little-endian:
 *   request: u32 len, u16 op, u16 flags, i64 arg[6], then len - 56 payload bytes
 *   reply:   u32 len, i32 err, i64 ret, i64 aux, i64 now, then len - 32 payload bytes
 * (now: the kernel clock in microseconds when the call completed)
 * err is 0 (success), an errno value (the call failed with it, ret is -1),
 * RD_ERR_FATAL (the payload is a message: the script cannot go on) or RD_ERR_PENDING
 * (a call from packetdrill's system-call thread sleeps in the kernel: its final
 * reply comes later on the completion socket).
 */
#ifndef RUMPDRILL_H
#define RUMPDRILL_H

#include <stdint.h>

#define RD_PROTO_VERSION 1

/* Kernel fds are shown to packetdrill shifted by this much, so that they can never
 * be mistaken for packetdrill's own host fds (packetdrill calls the host's close()
 * and getsockopt() on them, which we interpose). */
#define RD_FD_BASE 1000

enum rd_op {
	RD_HELLO = 1,
	RD_FREE,
	RD_SOCKET,
	RD_BIND,
	RD_LISTEN,
	RD_ACCEPT,
	RD_CONNECT,
	RD_RECV,	/* read, readv, recv, recvfrom, recvmsg */
	RD_SEND,	/* write, writev, send, sendto, sendmsg */
	RD_FCNTL,
	RD_IOCTL,
	RD_CLOSE,
	RD_SHUTDOWN,
	RD_GETSOCKOPT,
	RD_SETSOCKOPT,
	RD_POLL,
	RD_NETDEV_SEND,
	RD_NETDEV_RECEIVE,
	RD_USLEEP,
	RD_GETTIMEOFDAY,
	RD_INFO,	/* getsockopt(TCP_INFO, TCP_CC_INFO, SO_MEMINFO) for code snippets */
	RD_COMMAND,	/* a kernel tool: sysctl, sockstat, tcpdrop */
};

/* request flags */
#define RD_F_ASYNC 0x1	/* from packetdrill's system-call thread: may complete later */
#define RD_F_ABSOLUTE 0x2	/* USLEEP: arg[1] is the time to sleep until (microseconds) */

#define RD_ERR_FATAL (-1)
#define RD_ERR_PENDING (-2)

#define RD_REQ_HDR 56
#define RD_REP_HDR 32

struct rd_req {
	uint32_t len;
	uint16_t op;
	uint16_t flags;
	int64_t arg[6];
} __attribute__((packed));

struct rd_rep {
	uint32_t len;
	int32_t err;
	int64_t ret;
	int64_t aux;
	int64_t now;
} __attribute__((packed));

#endif /* RUMPDRILL_H */
