/*
 * rumpdrill: a shared object for packetdrill's --so_filename interface that
 * forwards every call to a rumpnet kernel session over a socket.
 *
 * Part of rumpnet (BSD-2-Clause). packetdrill (GPLv2) is run as a separate,
 * unmodified program: this file contains none of its code. The interface struct
 * below is our own declaration of the ABI packetdrill.h fixes (member order and
 * types), which is all an object loaded through --so_filename needs.
 *
 * Loaded twice in one packetdrill process, and meant to be: with LD_PRELOAD (so
 * that its interposers of close, getsockopt, system, times and sched_setscheduler
 * see packetdrill's own calls) and through --so_filename (dlopen of an object
 * already loaded returns the same one, so both share this file's globals).
 * Why each interposer exists:
 *   close       packetdrill closes the sockets still open at the end of a script
 *               with the host's close() on the kernel's fd numbers;
 *   getsockopt  code snippets (%{ }%) read TCP_INFO, TCP_CC_INFO and SO_MEMINFO
 *               with the host's getsockopt() on the kernel's fd numbers;
 *   system      backtick commands: the kernel's own tools (sysctl, sockstat,
 *               tcpdrop) must reach the kernel under test, not the host;
 *   getsockname packetdrill takes the remote ports of its connections from the
 *               host (bind to port 0 on a host socket, then getsockname): in this
 *               mode they never meet the host's stack, and a port drawn by the
 *               host would make every run different (our ISNs hash the ports,
 *               RFC 6528); each run gets the same sequence instead (from the
 *               start: packetdrill reserves its first port before it loads us);
 *   times       packetdrill spins ~100 ms on times() to align its start with a
 *               jiffy: meaningless on the kernel's virtual clock;
 *   sched_setscheduler  packetdrill asks for SCHED_RR; a virtual clock needs no
 *               real-time priority, and a spinning real-time thread starves the
 *               Python session it waits for.
 *
 * Threads: packetdrill's main thread and its system-call thread both call in.
 * Requests go over one socket under a mutex, so a call from the system-call
 * thread is started in the kernel before any later call of the main thread is
 * served (packetdrill moves on as soon as that thread sleeps). A call that then
 * sleeps in the kernel is answered "pending"; its result comes on a second socket
 * that only the system-call thread reads.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/times.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stddef.h>

#include "rumpdrill.h"

#ifndef RUMPDRILL_PYTHON
#define RUMPDRILL_PYTHON "python3"
#endif

/* Our declaration of packetdrill's struct packetdrill_interface (same ABI). */
struct pd_interface {
	void *userdata;
	void (*free)(void *userdata);
	int (*socket)(void *userdata, int domain, int type, int protocol);
	int (*bind)(void *userdata, int sockfd, const struct sockaddr *addr, socklen_t addrlen);
	int (*listen)(void *userdata, int sockfd, int backlog);
	int (*accept)(void *userdata, int sockfd, struct sockaddr *addr, socklen_t *addrlen);
	int (*connect)(void *userdata, int sockfd, const struct sockaddr *addr, socklen_t addrlen);
	ssize_t (*read)(void *userdata, int fd, void *buf, size_t count);
	ssize_t (*readv)(void *userdata, int fd, const struct iovec *iov, int iovcnt);
	ssize_t (*recv)(void *userdata, int sockfd, void *buf, size_t len, int flags);
	ssize_t (*recvfrom)(void *userdata, int sockfd, void *buf, size_t len, int flags,
			    struct sockaddr *src_addr, socklen_t *addrlen);
	ssize_t (*recvmsg)(void *userdata, int sockfd, struct msghdr *msg, int flags);
	ssize_t (*write)(void *userdata, int fd, const void *buf, size_t count);
	ssize_t (*writev)(void *userdata, int fd, const struct iovec *iov, int iovcnt);
	ssize_t (*send)(void *userdata, int sockfd, const void *buf, size_t len, int flags);
	ssize_t (*sendto)(void *userdata, int sockfd, const void *buf, size_t len, int flags,
			  const struct sockaddr *dest_addr, socklen_t addrlen);
	ssize_t (*sendmsg)(void *userdata, int sockfd, const struct msghdr *msg, int flags);
	int (*fcntl)(void *userdata, int fd, int cmd, ...);
	int (*ioctl)(void *userdata, int fd, unsigned long request, ...);
	int (*close)(void *userdata, int fd);
	int (*shutdown)(void *userdata, int sockfd, int how);
	int (*getsockopt)(void *userdata, int sockfd, int level, int optname, void *optval,
			  socklen_t *optlen);
	int (*setsockopt)(void *userdata, int sockfd, int level, int optname, const void *optval,
			  socklen_t optlen);
	int (*poll)(void *userdata, struct pollfd *fds, nfds_t nfds, int timeout);
	int (*netdev_send)(void *userdata, const void *buf, size_t count);
	int (*netdev_receive)(void *userdata, void *buf, size_t *count, long long *time_usecs);
	int (*usleep)(void *userdata, useconds_t usec);
	int (*gettimeofday)(void *userdata, struct timeval *tv, struct timezone *tz);
	int (*epoll_create)(void *userdata, int size);
	int (*epoll_ctl)(void *userdata, int epfd, int op, int fd, struct epoll_event *event);
	int (*epoll_wait)(void *userdata, int epfd, struct epoll_event *events, int maxevents,
			  int timeout);
	int (*pipe)(void *userdata, int pipefd[2]);
	int (*splice)(void *userdata, int fd_in, loff_t *off_in, int fd_out, loff_t *off_out,
		      size_t len, unsigned int flags);
};

/* An address inside this object, for dladdr(). */
int rumpdrill_marker = 1;
static int rd_preloaded;	/* $LD_PRELOAD named this object when the process started */

static int rd_fd = -1;		/* requests and their replies */
static int rd_cfd = -1;		/* completions of pending calls */
static int rd_active;		/* a session is open */
static pid_t rd_child = -1;	/* the session process we spawned, if any */
static pthread_t rd_main;	/* packetdrill's main thread */
static pthread_mutex_t rd_lock = PTHREAD_MUTEX_INITIALIZER;
static char rd_tooldir[PATH_MAX];
static clock_t rd_jiffies;
#define RD_FIRST_REMOTE_PORT 40000

/* ------------------------------------------------------------------------ */
/* the real functions behind our interposers */

static int real_close(int fd)
{
	static int (*fn)(int);
	if (fn == NULL)
		fn = (int (*)(int))dlsym(RTLD_NEXT, "close");
	return fn(fd);
}

static int real_getsockopt(int fd, int level, int name, void *val, socklen_t *len)
{
	static int (*fn)(int, int, int, void *, socklen_t *);
	if (fn == NULL)
		fn = (int (*)(int, int, int, void *, socklen_t *))dlsym(RTLD_NEXT, "getsockopt");
	return fn(fd, level, name, val, len);
}

static int real_system(const char *command)
{
	static int (*fn)(const char *);
	if (fn == NULL)
		fn = (int (*)(const char *))dlsym(RTLD_NEXT, "system");
	return fn(command);
}

/* ------------------------------------------------------------------------ */
/* talking to the session */

static void rd_die(const char *fmt, ...)
{
	va_list ap;
	fflush(stdout);
	fputs("rumpdrill: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(EXIT_FAILURE);
}

/*
 * Reads for packetdrill's system-call thread spin instead of sleeping (spin != 0):
 * packetdrill's main thread waits for that thread to *sleep* before it goes on, and it
 * must go on only once the thread's blocking call has been started in the kernel (and
 * not while the thread merely waits for a reply to gettimeofday, which would let the
 * two threads race for the clock).
 */
static void rd_read_all(int fd, void *buf, size_t len, int spin)
{
	char *p = buf;
	while (len > 0) {
		ssize_t n = spin ? recv(fd, p, len, MSG_DONTWAIT) : read(fd, p, len);
		if (n < 0 && (errno == EINTR || (spin && (errno == EAGAIN || errno == EWOULDBLOCK)))) {
			if (spin)
				sched_yield();
			continue;
		}
		if (n <= 0)
			rd_die("lost the kernel session (%s)", n == 0 ? "it closed" : strerror(errno));
		p += n;
		len -= (size_t)n;
	}
}

/* One reply: the header into *rep, the payload (malloc'd, NUL-terminated) returned. */
static char *rd_read_reply(int fd, struct rd_rep *rep, size_t *plen, int spin)
{
	rd_read_all(fd, rep, sizeof(*rep), spin);
	if (rep->len < RD_REP_HDR)
		rd_die("bad reply from the kernel session");
	size_t n = rep->len - RD_REP_HDR;
	char *payload = malloc(n + 1);
	if (payload == NULL)
		rd_die("out of memory");
	rd_read_all(fd, payload, n, spin);
	payload[n] = '\0';
	*plen = n;
	return payload;
}

static void rd_send_request(int fd, int op, int flags, const int64_t args[6],
			    const void *p1, size_t n1, const void *p2, size_t n2)
{
	struct rd_req req;
	memset(&req, 0, sizeof(req));
	req.len = (uint32_t)(RD_REQ_HDR + n1 + n2);
	req.op = (uint16_t)op;
	req.flags = (uint16_t)flags;
	if (args != NULL)
		memcpy(req.arg, args, sizeof(req.arg));
	struct iovec iov[3] = {
		{ &req, sizeof(req) }, { (void *)p1, n1 }, { (void *)p2, n2 },
	};
	size_t total = sizeof(req) + n1 + n2;
	int idx = 0;
	while (total > 0) {
		ssize_t n = writev(fd, iov + idx, 3 - idx);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			rd_die("lost the kernel session (write: %s)", strerror(errno));
		total -= (size_t)n;
		while (idx < 3 && (size_t)n >= iov[idx].iov_len) {
			n -= (ssize_t)iov[idx].iov_len;
			idx++;
		}
		if (idx < 3) {
			iov[idx].iov_base = (char *)iov[idx].iov_base + n;
			iov[idx].iov_len -= (size_t)n;
		}
	}
}

/*
 * The system-call thread's clock after one of its calls completed. packetdrill reads
 * the clock there to time the call's return, while its main thread runs on: the time
 * the kernel completed the call is the answer (asking the session would advance the
 * clock in a race with the main thread). It stays the answer for a few reads, until
 * that thread's next request (its next call, or the usleep of its next wait: which
 * then sleeps until the completion time plus its length).
 */
#define RD_LOCAL_CLOCK_READS 3
static __thread int rd_completed;		/* local reads left */
static __thread int64_t rd_completed_at;	/* the completion time */

/*
 * One call: returns ret (errno set and -1 returned when the kernel failed the call);
 * *out (if not NULL) receives the reply payload, to be freed by the caller.
 */
static int64_t rd_call_flags(int op, int flags, const int64_t args[6], const void *p1, size_t n1,
			     const void *p2, size_t n2, char **out, size_t *outlen, int64_t *aux)
{
	struct rd_rep rep;
	size_t plen = 0;
	char *payload;
	int async = !pthread_equal(pthread_self(), rd_main);

	if (!rd_active)
		rd_die("no kernel session (call after free?)");
	if (async) {
		rd_completed = 0;
		while (pthread_mutex_trylock(&rd_lock) != 0)
			sched_yield();
	} else {
		pthread_mutex_lock(&rd_lock);
	}
	rd_send_request(rd_fd, op, flags | (async ? RD_F_ASYNC : 0), args, p1, n1, p2, n2);
	payload = rd_read_reply(rd_fd, &rep, &plen, async);
	pthread_mutex_unlock(&rd_lock);
	if (rep.err == RD_ERR_PENDING) {
		/* Sleeping in the kernel: this thread sleeps too (packetdrill sees it
		 * blocked, and goes on) until the session finishes the call. */
		free(payload);
		payload = rd_read_reply(rd_cfd, &rep, &plen, 0);
		rd_completed = RD_LOCAL_CLOCK_READS;
		rd_completed_at = rep.now;
	}
	if (rep.err == RD_ERR_FATAL)
		rd_die("%s", payload);
	if (aux != NULL)
		*aux = rep.aux;
	if (out != NULL) {
		*out = payload;
		*outlen = plen;
	} else {
		free(payload);
	}
	if (rep.err != 0) {
		errno = rep.err;
		return -1;
	}
	return rep.ret;
}

static int64_t rd_call(int op, const int64_t args[6], const void *p1, size_t n1,
		       const void *p2, size_t n2, char **out, size_t *outlen, int64_t *aux)
{
	return rd_call_flags(op, 0, args, p1, n1, p2, n2, out, outlen, aux);
}

static int64_t rd_simple(int op, int64_t a0, int64_t a1, int64_t a2, int64_t a3)
{
	int64_t args[6] = { a0, a1, a2, a3, 0, 0 };
	return rd_call(op, args, NULL, 0, NULL, 0, NULL, NULL, NULL);
}

/* Kernel fd from packetdrill's fd (negative for one that is not the kernel's). */
static int64_t kfd(int fd)
{
	return fd >= RD_FD_BASE ? fd - RD_FD_BASE : -1;
}

static int shown_fd(int64_t ret)
{
	return ret < 0 ? (int)ret : (int)ret + RD_FD_BASE;
}

/* ------------------------------------------------------------------------ */
/* the system calls */

static int pd_socket(void *ud, int domain, int type, int protocol)
{
	(void)ud;
	return shown_fd(rd_simple(RD_SOCKET, domain, type, protocol, 0));
}

static int pd_addr_call(int op, int fd, const struct sockaddr *addr, socklen_t addrlen)
{
	int64_t args[6] = { kfd(fd), (int64_t)addrlen, 0, 0, 0, 0 };
	return (int)rd_call(op, args, addr, addr ? addrlen : 0, NULL, 0, NULL, NULL, NULL);
}

static int pd_bind(void *ud, int fd, const struct sockaddr *addr, socklen_t addrlen)
{
	(void)ud;
	return pd_addr_call(RD_BIND, fd, addr, addrlen);
}

static int pd_connect(void *ud, int fd, const struct sockaddr *addr, socklen_t addrlen)
{
	(void)ud;
	return pd_addr_call(RD_CONNECT, fd, addr, addrlen);
}

static int pd_listen(void *ud, int fd, int backlog)
{
	(void)ud;
	return (int)rd_simple(RD_LISTEN, kfd(fd), backlog, 0, 0);
}

/* Copy an address from the session into the caller's buffer, as the kernel does:
 * truncated to *len, *len set to its full length. */
static void put_addr(const char *addr, size_t alen, struct sockaddr *dst, socklen_t *len)
{
	if (dst == NULL || len == NULL)
		return;
	size_t n = alen < *len ? alen : *len;
	memcpy(dst, addr, n);
	*len = (socklen_t)alen;
}

static int pd_accept(void *ud, int fd, struct sockaddr *addr, socklen_t *addrlen)
{
	char *out = NULL;
	size_t outlen = 0;
	int64_t args[6] = { kfd(fd), addr != NULL, 0, 0, 0, 0 };
	(void)ud;
	int64_t ret = rd_call(RD_ACCEPT, args, NULL, 0, NULL, 0, &out, &outlen, NULL);
	if (ret >= 0)
		put_addr(out, outlen, addr, addrlen);
	free(out);
	return shown_fd(ret);
}

/* read, readv, recv, recvfrom, recvmsg: the payload is u32 addrlen, addr, data. */
static ssize_t recv_common(int fd, const struct iovec *iov, int iovcnt, int flags,
			   struct sockaddr *addr, socklen_t *addrlen, int *msg_flags)
{
	size_t total = 0;
	char *out = NULL;
	size_t outlen = 0;
	int64_t aux = 0;
	for (int i = 0; i < iovcnt; i++)
		total += iov[i].iov_len;
	int64_t args[6] = { kfd(fd), (int64_t)total, flags, addr != NULL, 0, 0 };
	int64_t ret = rd_call(RD_RECV, args, NULL, 0, NULL, 0, &out, &outlen, &aux);
	if (ret >= 0) {
		uint32_t alen = 0;
		if (outlen >= 4)
			memcpy(&alen, out, 4);
		if (4 + (size_t)alen > outlen)
			rd_die("bad recv reply from the kernel session");
		put_addr(out + 4, alen, addr, addrlen);
		const char *data = out + 4 + alen;
		size_t left = outlen - 4 - alen;
		for (int i = 0; i < iovcnt && left > 0; i++) {
			size_t n = left < iov[i].iov_len ? left : iov[i].iov_len;
			memcpy(iov[i].iov_base, data, n);
			data += n;
			left -= n;
		}
		if (msg_flags != NULL)
			*msg_flags = (int)aux;
	}
	free(out);
	return (ssize_t)ret;
}

static ssize_t pd_read(void *ud, int fd, void *buf, size_t count)
{
	struct iovec iov = { buf, count };
	(void)ud;
	return recv_common(fd, &iov, 1, 0, NULL, NULL, NULL);
}

static ssize_t pd_readv(void *ud, int fd, const struct iovec *iov, int iovcnt)
{
	(void)ud;
	return recv_common(fd, iov, iovcnt, 0, NULL, NULL, NULL);
}

static ssize_t pd_recv(void *ud, int fd, void *buf, size_t len, int flags)
{
	struct iovec iov = { buf, len };
	(void)ud;
	return recv_common(fd, &iov, 1, flags, NULL, NULL, NULL);
}

static ssize_t pd_recvfrom(void *ud, int fd, void *buf, size_t len, int flags,
			   struct sockaddr *src, socklen_t *srclen)
{
	struct iovec iov = { buf, len };
	(void)ud;
	return recv_common(fd, &iov, 1, flags, src, srclen, NULL);
}

static ssize_t pd_recvmsg(void *ud, int fd, struct msghdr *msg, int flags)
{
	(void)ud;
	msg->msg_controllen = 0;
	return recv_common(fd, msg->msg_iov, (int)msg->msg_iovlen, flags,
			   (struct sockaddr *)msg->msg_name,
			   msg->msg_name ? &msg->msg_namelen : NULL, &msg->msg_flags);
}

/* write, writev, send, sendto, sendmsg: the payload is the address, then the data. */
static ssize_t send_common(int fd, const struct iovec *iov, int iovcnt, int flags,
			   const struct sockaddr *addr, socklen_t addrlen)
{
	size_t total = 0;
	for (int i = 0; i < iovcnt; i++)
		total += iov[i].iov_len;
	char *data = malloc(total ? total : 1);
	if (data == NULL)
		rd_die("out of memory");
	size_t off = 0;
	for (int i = 0; i < iovcnt; i++) {
		memcpy(data + off, iov[i].iov_base, iov[i].iov_len);
		off += iov[i].iov_len;
	}
	if (addr == NULL)
		addrlen = 0;
	int64_t args[6] = { kfd(fd), flags, (int64_t)addrlen, 0, 0, 0 };
	int64_t ret = rd_call(RD_SEND, args, addr, addrlen, data, total, NULL, NULL, NULL);
	free(data);
	return (ssize_t)ret;
}

static ssize_t pd_write(void *ud, int fd, const void *buf, size_t count)
{
	struct iovec iov = { (void *)buf, count };
	(void)ud;
	return send_common(fd, &iov, 1, 0, NULL, 0);
}

static ssize_t pd_writev(void *ud, int fd, const struct iovec *iov, int iovcnt)
{
	(void)ud;
	return send_common(fd, iov, iovcnt, 0, NULL, 0);
}

static ssize_t pd_send(void *ud, int fd, const void *buf, size_t len, int flags)
{
	struct iovec iov = { (void *)buf, len };
	(void)ud;
	return send_common(fd, &iov, 1, flags, NULL, 0);
}

static ssize_t pd_sendto(void *ud, int fd, const void *buf, size_t len, int flags,
			 const struct sockaddr *dst, socklen_t dstlen)
{
	struct iovec iov = { (void *)buf, len };
	(void)ud;
	return send_common(fd, &iov, 1, flags, dst, dstlen);
}

static ssize_t pd_sendmsg(void *ud, int fd, const struct msghdr *msg, int flags)
{
	(void)ud;
	return send_common(fd, msg->msg_iov, (int)msg->msg_iovlen, flags,
			   (const struct sockaddr *)msg->msg_name, msg->msg_namelen);
}

static int pd_fcntl(void *ud, int fd, int cmd, ...)
{
	int arg = 0;
	(void)ud;
	/* Linux's argument-less commands; every other one packetdrill passes an int. */
	if (cmd != F_GETFL && cmd != F_GETFD && cmd != F_GETOWN) {
		va_list ap;
		va_start(ap, cmd);
		arg = va_arg(ap, int);
		va_end(ap);
	}
	return (int)rd_simple(RD_FCNTL, kfd(fd), cmd, arg, 0);
}

/* The requests packetdrill can give a third argument: all take an int*. */
static int ioctl_takes_int_ptr(unsigned long request)
{
	return request == FIONREAD || request == FIONBIO || request == SIOCATMARK ||
	       request == TIOCOUTQ;
}

static int pd_ioctl(void *ud, int fd, unsigned long request, ...)
{
	int *argp = NULL;
	int64_t aux = 0;
	(void)ud;
	if (ioctl_takes_int_ptr(request)) {
		va_list ap;
		va_start(ap, request);
		argp = va_arg(ap, int *);
		va_end(ap);
	}
	int64_t args[6] = { kfd(fd), (int64_t)request, argp ? *argp : 0, argp != NULL, 0, 0 };
	int64_t ret = rd_call(RD_IOCTL, args, NULL, 0, NULL, 0, NULL, NULL, &aux);
	if (ret >= 0 && argp != NULL)
		*argp = (int)aux;
	return (int)ret;
}

static int pd_close(void *ud, int fd)
{
	(void)ud;
	return (int)rd_simple(RD_CLOSE, kfd(fd), 0, 0, 0);
}

static int pd_shutdown(void *ud, int fd, int how)
{
	(void)ud;
	return (int)rd_simple(RD_SHUTDOWN, kfd(fd), how, 0, 0);
}

static int getsockopt_common(int op, int fd, int level, int name, void *val, socklen_t *len)
{
	char *out = NULL;
	size_t outlen = 0;
	int64_t args[6] = { kfd(fd), level, name, len ? (int64_t)*len : 0, 0, 0 };
	int64_t ret = rd_call(op, args, NULL, 0, NULL, 0, &out, &outlen, NULL);
	if (ret >= 0 && len != NULL) {
		size_t n = outlen < *len ? outlen : *len;
		if (val != NULL)
			memcpy(val, out, n);
		*len = (socklen_t)n;
	}
	free(out);
	return (int)ret;
}

static int pd_getsockopt(void *ud, int fd, int level, int name, void *val, socklen_t *len)
{
	(void)ud;
	return getsockopt_common(RD_GETSOCKOPT, fd, level, name, val, len);
}

static int pd_setsockopt(void *ud, int fd, int level, int name, const void *val, socklen_t len)
{
	int64_t args[6] = { kfd(fd), level, name, (int64_t)len, 0, 0 };
	(void)ud;
	return (int)rd_call(RD_SETSOCKOPT, args, val, val ? len : 0, NULL, 0, NULL, NULL, NULL);
}

/* poll: the payload is (i32 fd, i16 events) per entry; the reply i16 revents each. */
static int pd_poll(void *ud, struct pollfd *fds, nfds_t nfds, int timeout)
{
	char *req = calloc(nfds + 1, 6);
	char *out = NULL;
	size_t outlen = 0;
	(void)ud;
	if (req == NULL)
		rd_die("out of memory");
	for (nfds_t i = 0; i < nfds; i++) {
		int32_t f = (int32_t)kfd(fds[i].fd);
		if (fds[i].fd < 0)
			f = -1;
		memcpy(req + 6 * i, &f, 4);
		memcpy(req + 6 * i + 4, &fds[i].events, 2);
	}
	int64_t args[6] = { (int64_t)nfds, timeout, 0, 0, 0, 0 };
	int64_t ret = rd_call(RD_POLL, args, req, nfds * 6, NULL, 0, &out, &outlen, NULL);
	if (ret >= 0) {
		for (nfds_t i = 0; i < nfds && 2 * i + 2 <= outlen; i++)
			memcpy(&fds[i].revents, out + 2 * i, 2);
	}
	free(req);
	free(out);
	return (int)ret;
}

/* ------------------------------------------------------------------------ */
/* packets and the clock */

static int pd_netdev_send(void *ud, const void *buf, size_t count)
{
	(void)ud;
	int64_t ret = rd_call(RD_NETDEV_SEND, NULL, buf, count, NULL, 0, NULL, NULL, NULL);
	return ret < 0 ? -1 : 0;
}

static int pd_netdev_receive(void *ud, void *buf, size_t *count, long long *time_usecs)
{
	char *out = NULL;
	size_t outlen = 0;
	int64_t args[6] = { (int64_t)*count, 0, 0, 0, 0, 0 };
	(void)ud;
	int64_t ret = rd_call(RD_NETDEV_RECEIVE, args, NULL, 0, NULL, 0, &out, &outlen, NULL);
	if (ret < 0) {
		free(out);
		*count = 0;
		return -1;
	}
	if (outlen > *count)
		outlen = *count;
	memcpy(buf, out, outlen);
	*count = outlen;
	*time_usecs = (long long)ret;
	free(out);
	return 0;
}

static int pd_usleep(void *ud, useconds_t usec)
{
	(void)ud;
	if (rd_completed > 0) {
		/* The system-call thread's wait for its next call, timed from the
		 * completion of its last one (what its clock read). */
		int64_t args[6] = { usec, rd_completed_at + (int64_t)usec, 0, 0, 0, 0 };
		return (int)rd_call_flags(RD_USLEEP, RD_F_ABSOLUTE, args, NULL, 0, NULL, 0, NULL, NULL, NULL);
	}
	return (int)rd_simple(RD_USLEEP, usec, 0, 0, 0);
}

static int pd_gettimeofday(void *ud, struct timeval *tv, struct timezone *tz)
{
	int64_t usecs;
	(void)ud;
	(void)tz;
	if (rd_completed > 0) {
		rd_completed--;
		usecs = rd_completed_at;
	} else {
		usecs = rd_simple(RD_GETTIMEOFDAY, 0, 0, 0, 0);
	}
	if (usecs < 0)
		return -1;
	tv->tv_sec = (time_t)(usecs / 1000000);
	tv->tv_usec = (suseconds_t)(usecs % 1000000);
	return 0;
}

static int pd_unsupported(void)
{
	errno = ENOSYS;
	return -1;
}

static int pd_epoll_create(void *ud, int size)
{
	(void)ud;
	(void)size;
	return pd_unsupported();
}

static int pd_epoll_ctl(void *ud, int epfd, int op, int fd, struct epoll_event *ev)
{
	(void)ud, (void)epfd, (void)op, (void)fd, (void)ev;
	return pd_unsupported();
}

static int pd_epoll_wait(void *ud, int epfd, struct epoll_event *evs, int max, int timeout)
{
	(void)ud, (void)epfd, (void)evs, (void)max, (void)timeout;
	return pd_unsupported();
}

static int pd_pipe(void *ud, int pipefd[2])
{
	(void)ud, (void)pipefd;
	return pd_unsupported();
}

static int pd_splice(void *ud, int fd_in, loff_t *off_in, int fd_out, loff_t *off_out,
		     size_t len, unsigned int flags)
{
	(void)ud, (void)fd_in, (void)off_in, (void)fd_out, (void)off_out, (void)len, (void)flags;
	return pd_unsupported();
}

/* ------------------------------------------------------------------------ */
/* the session: opening and closing */

static void pd_free(void *ud)
{
	(void)ud;
	if (!rd_active)
		return;
	rd_simple(RD_FREE, 0, 0, 0, 0);
	rd_active = 0;
	real_close(rd_fd);
	real_close(rd_cfd);
	if (rd_child > 0) {
		int status;
		waitpid(rd_child, &status, 0);
		rd_child = -1;
	}
}

/* The value of key=... in flags (comma-separated), copied into buf; 0 if absent. */
static int flag_value(const char *flags, const char *key, char *buf, size_t size)
{
	size_t klen = strlen(key);
	const char *p = flags;
	while (p != NULL && *p) {
		if (strncmp(p, key, klen) == 0 && p[klen] == '=') {
			const char *v = p + klen + 1;
			size_t n = strcspn(v, ",");
			if (n >= size)
				n = size - 1;
			memcpy(buf, v, n);
			buf[n] = '\0';
			return 1;
		}
		p = strchr(p, ',');
		if (p != NULL)
			p++;
	}
	return 0;
}

/* No session given: start one (python -m rumpnet.packetdrill.serve) on two socketpairs. */
static void spawn_session(void)
{
	int req[2], done[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, req) || socketpair(AF_UNIX, SOCK_STREAM, 0, done))
		rd_die("socketpair: %s", strerror(errno));
	pid_t pid = fork();
	if (pid < 0)
		rd_die("fork: %s", strerror(errno));
	if (pid == 0) {
		char fds[64];
		const char *py = getenv("RUMPDRILL_PYTHON");
		if (py == NULL || *py == '\0')
			py = RUMPDRILL_PYTHON;
		real_close(req[0]);
		real_close(done[0]);
		snprintf(fds, sizeof(fds), "%d,%d", req[1], done[1]);
		execlp(py, py, "-m", "rumpnet.packetdrill.serve", "--fds", fds, (char *)NULL);
		fprintf(stderr, "rumpdrill: cannot run %s: %s\n", py, strerror(errno));
		_exit(127);
	}
	real_close(req[1]);
	real_close(done[1]);
	rd_fd = req[0];
	rd_cfd = done[0];
	rd_child = pid;
}

static void find_tooldir(void)
{
	Dl_info info;
	if (dladdr((void *)&rumpdrill_marker, &info) == 0 || info.dli_fname == NULL)
		rd_die("cannot find where librumpdrill.so lives");
	snprintf(rd_tooldir, sizeof(rd_tooldir), "%s", info.dli_fname);
	char *slash = strrchr(rd_tooldir, '/');
	if (slash == NULL)
		snprintf(rd_tooldir, sizeof(rd_tooldir), "./bin");
	else
		snprintf(slash, sizeof(rd_tooldir) - (size_t)(slash - rd_tooldir), "/bin");
	if (strchr(rd_tooldir, '\'') != NULL)
		rd_die("the path of librumpdrill.so must not contain a quote: %s", rd_tooldir);
}

void packetdrill_interface_init(const char *flags, struct pd_interface *ifc)
{
	char buf[32];
	if (flags == NULL)
		flags = "";
	if (!rd_preloaded)
		rd_die("librumpdrill.so must also be in LD_PRELOAD (packetdrill calls the "
		       "host's close(), getsockopt() and system() on the kernel's sockets); "
		       "rump_packetdrill runs packetdrill that way");
	/* Our interposers are for packetdrill only: not for the shell and the programs its
	 * backtick commands run. */
	unsetenv("LD_PRELOAD");
	if (flag_value(flags, "fd", buf, sizeof(buf))) {
		rd_fd = atoi(buf);
		if (!flag_value(flags, "cfd", buf, sizeof(buf)))
			rd_die("--so_flags has fd= without cfd=");
		rd_cfd = atoi(buf);
	} else {
		spawn_session();
	}
	find_tooldir();
	rd_main = pthread_self();
	rd_active = 1;
	int64_t args[6] = { RD_PROTO_VERSION, getpid(), 0, 0, 0, 0 };
	rd_call(RD_HELLO, args, flags, strlen(flags), NULL, 0, NULL, NULL, NULL);

	memset(ifc, 0, sizeof(*ifc));
	ifc->free = pd_free;
	ifc->socket = pd_socket;
	ifc->bind = pd_bind;
	ifc->listen = pd_listen;
	ifc->accept = pd_accept;
	ifc->connect = pd_connect;
	ifc->read = pd_read;
	ifc->readv = pd_readv;
	ifc->recv = pd_recv;
	ifc->recvfrom = pd_recvfrom;
	ifc->recvmsg = pd_recvmsg;
	ifc->write = pd_write;
	ifc->writev = pd_writev;
	ifc->send = pd_send;
	ifc->sendto = pd_sendto;
	ifc->sendmsg = pd_sendmsg;
	ifc->fcntl = pd_fcntl;
	ifc->ioctl = pd_ioctl;
	ifc->close = pd_close;
	ifc->shutdown = pd_shutdown;
	ifc->getsockopt = pd_getsockopt;
	ifc->setsockopt = pd_setsockopt;
	ifc->poll = pd_poll;
	ifc->netdev_send = pd_netdev_send;
	ifc->netdev_receive = pd_netdev_receive;
	ifc->usleep = pd_usleep;
	ifc->gettimeofday = pd_gettimeofday;
	ifc->epoll_create = pd_epoll_create;
	ifc->epoll_ctl = pd_epoll_ctl;
	ifc->epoll_wait = pd_epoll_wait;
	ifc->pipe = pd_pipe;
	ifc->splice = pd_splice;
}

/* ------------------------------------------------------------------------ */
/* the interposers (see the top of this file) */

__attribute__((constructor)) static void rd_check_preloaded(void)
{
	/* Preloaded, not (only) dlopen()ed: then our interposers see the calls of the
	 * program itself. (A wrapper such as timeout(1) or strace(1) in front of
	 * packetdrill passes $LD_PRELOAD on; packetdrill drops it for its own children
	 * when it loads us as its --so_filename.) */
	Dl_info info;
	const char *preload = getenv("LD_PRELOAD");
	if (preload == NULL || dladdr((void *)&rumpdrill_marker, &info) == 0 || info.dli_fname == NULL)
		return;
	rd_preloaded = strstr(preload, info.dli_fname) != NULL;
}

int close(int fd)
{
	if (rd_active && fd >= RD_FD_BASE)
		return pd_close(NULL, fd);
	return real_close(fd);
}

int getsockopt(int fd, int level, int name, void *val, socklen_t *len)
{
	if (rd_active && fd >= RD_FD_BASE)
		return getsockopt_common(RD_INFO, fd, level, name, val, len);
	return real_getsockopt(fd, level, name, val, len);
}

int system(const char *command)
{
	if (!rd_active || command == NULL)
		return real_system(command);
	/* The kernel's tools come first on PATH and reach the session through the
	 * request socket, which nobody else uses while we hold the lock. */
	size_t n = strlen(command) + strlen(rd_tooldir) + 128;
	char *line = malloc(n);
	if (line == NULL)
		rd_die("out of memory");
	snprintf(line, n, "PATH='%s':\"$PATH\"; RUMPDRILL_FD=%d; export PATH RUMPDRILL_FD; %s",
		 rd_tooldir, rd_fd, command);
	pthread_mutex_lock(&rd_lock);
	int status = real_system(line);
	pthread_mutex_unlock(&rd_lock);
	free(line);
	return status;
}

int getsockname(int fd, struct sockaddr *addr, socklen_t *len)
{
	static int (*fn)(int, struct sockaddr *, socklen_t *);
	static uint16_t next_port = RD_FIRST_REMOTE_PORT;
	if (fn == NULL)
		fn = (int (*)(int, struct sockaddr *, socklen_t *))dlsym(RTLD_NEXT, "getsockname");
	int ret = fn(fd, addr, len);
	if (ret == 0 && rd_preloaded && addr != NULL && len != NULL && *len >= sizeof(struct sockaddr_in) &&
	    (addr->sa_family == AF_INET || addr->sa_family == AF_INET6)) {
		uint16_t port = htons(next_port++);
		/* sin_port and sin6_port are at the same offset */
		memcpy((char *)addr + offsetof(struct sockaddr_in, sin_port), &port, sizeof(port));
	}
	return ret;
}

clock_t times(struct tms *buf)
{
	static clock_t (*fn)(struct tms *);
	if (!rd_active) {
		if (fn == NULL)
			fn = (clock_t (*)(struct tms *))dlsym(RTLD_NEXT, "times");
		return fn(buf);
	}
	if (buf != NULL)
		memset(buf, 0, sizeof(*buf));
	return ++rd_jiffies;
}

int sched_setscheduler(pid_t pid, int policy, const struct sched_param *param)
{
	static int (*fn)(pid_t, int, const struct sched_param *);
	if (rd_preloaded)
		return 0;
	if (fn == NULL)
		fn = (int (*)(pid_t, int, const struct sched_param *))dlsym(RTLD_NEXT, "sched_setscheduler");
	return fn(pid, policy, param);
}
