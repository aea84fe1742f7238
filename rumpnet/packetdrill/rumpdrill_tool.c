/*
 * rumpdrill-tool: the kernel's own commands (sysctl, sockstat, tcpdrop) for
 * packetdrill's backtick lines, run against the kernel under test.
 *
 * Part of rumpnet (BSD-2-Clause). Installed as symlinks named after the tools in
 * the bin/ directory beside librumpdrill.so; its system() interposer puts that
 * directory first on PATH and the session's request socket in $RUMPDRILL_FD.
 * The command line goes to the session, which runs the tool in the kernel and
 * answers with the exit status, standard output and standard error.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rumpdrill.h"

static void die(const char *tool, const char *what)
{
	fprintf(stderr, "%s: %s\n", tool, what);
	exit(1);
}

static void write_all(int fd, const char *p, size_t n, const char *tool)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			die(tool, "lost the kernel session");
		p += w;
		n -= (size_t)w;
	}
}

static void read_all(int fd, void *buf, size_t n, const char *tool)
{
	char *p = buf;
	while (n > 0) {
		ssize_t r = read(fd, p, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			die(tool, "lost the kernel session");
		p += r;
		n -= (size_t)r;
	}
}

int main(int argc, char **argv)
{
	const char *tool = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
	const char *env = getenv("RUMPDRILL_FD");
	if (env == NULL || *env == '\0')
		die(tool, "not run by rumpdrill ($RUMPDRILL_FD is not set)");
	int fd = atoi(env);

	/* The payload: the tool's name and its arguments, each NUL-terminated. */
	size_t len = strlen(tool) + 1;
	for (int i = 1; i < argc; i++)
		len += strlen(argv[i]) + 1;
	char *payload = malloc(len);
	if (payload == NULL)
		die(tool, "out of memory");
	size_t off = 0;
	memcpy(payload, tool, strlen(tool) + 1);
	off = strlen(tool) + 1;
	for (int i = 1; i < argc; i++) {
		memcpy(payload + off, argv[i], strlen(argv[i]) + 1);
		off += strlen(argv[i]) + 1;
	}

	struct rd_req req;
	memset(&req, 0, sizeof(req));
	req.len = (uint32_t)(RD_REQ_HDR + len);
	req.op = RD_COMMAND;
	write_all(fd, (const char *)&req, sizeof(req), tool);
	write_all(fd, payload, len, tool);

	struct rd_rep rep;
	read_all(fd, &rep, sizeof(rep), tool);
	if (rep.len < RD_REP_HDR)
		die(tool, "bad reply from the kernel session");
	size_t n = rep.len - RD_REP_HDR;
	char *out = malloc(n + 1);
	if (out == NULL)
		die(tool, "out of memory");
	read_all(fd, out, n, tool);
	if (rep.err == RD_ERR_FATAL) {
		out[n] = '\0';
		die(tool, out);
	}
	size_t nout = (size_t)rep.aux <= n ? (size_t)rep.aux : n;
	write_all(1, out, nout, tool);
	write_all(2, out + nout, n - nout, tool);
	return (int)rep.ret;
}
