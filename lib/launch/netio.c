/*
 * netio.c - TCP sockets for the bridge: exact binding, connecting with
 * retries, and blocking frame I/O under a deadline (used by the rendezvous;
 * the bridge loop in bridge.c does its own non-blocking I/O).
 *
 * Invariants
 *   - A listener binds exactly the address it is given: never a wildcard
 *     that was not asked for, never another interface.  A port in use is an
 *     error that names the port.
 *   - Every socket is close-on-exec and non-blocking; every wait is a poll
 *     with a deadline (CLOCK_MONOTONIC) and, when cancel_fd >= 0, returns
 *     -EINTR as soon as cancel_fd is readable (psrun's signalfd), so no
 *     wait can outlast its deadline or a Ctrl-C.
 *   - A frame is read exactly (header, then its body): bytes after it stay
 *     in the socket for whoever reads next.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bridge.h"
#include "util.h"

int ps__addr_split(const char *s, char *host, size_t hostlen, uint16_t *port)
{
	const char *colon;
	const char *h = s;
	size_t hl;
	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (!close || close[1] != ':')
			return -EINVAL;
		h = s + 1;
		hl = (size_t)(close - h);
		colon = close + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return -EINVAL;
		hl = (size_t)(colon - s);
	}
	if (hl == 0 || hl >= hostlen)
		return -EINVAL;
	const char *p = colon + 1;
	unsigned long v = 0;
	if (!*p)
		return -EINVAL;
	for (; *p; p++) {
		if (*p < '0' || *p > '9' || v > 65535)
			return -EINVAL;
		v = v * 10 + (unsigned long)(*p - '0');
	}
	if (v > 65535)
		return -EINVAL;
	memcpy(host, h, hl);
	host[hl] = 0;
	*port = (uint16_t)v;
	return 0;
}

static int resolve(const char *host, uint16_t port, bool passive, struct addrinfo **res, char *msg, size_t msglen)
{
	char ps[8];
	snprintf(ps, sizeof ps, "%u", (unsigned)port);
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0)};
	int rc = getaddrinfo(host, ps, &hints, res);
	if (rc != 0) {
		snprintf(msg, msglen, "cannot resolve '%s': %s", host, gai_strerror(rc));
		return -EADDRNOTAVAIL;
	}
	return 0;
}

void ps__net_tune(int fd)
{
	int one = 1;
	/* small request frames must not wait for Nagle's timer */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	int buf = 4 << 20;
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
}

int ps__net_listen(const char *host, uint16_t port, char *msg, size_t msglen)
{
	struct addrinfo *res;
	int rc = resolve(host, port, true, &res, msg, msglen);
	if (rc)
		return rc;
	int fd = -1;
	rc = -EADDRNOTAVAIL;
	for (struct addrinfo *a = res; a; a = a->ai_next) {
		fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
		if (fd < 0) {
			rc = -errno;
			continue;
		}
		int one = 1;
		/* a previous job's connections in TIME_WAIT must not block the
		 * port; a live listener still does (EADDRINUSE) */
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 64) == 0) {
			rc = 0;
			break;
		}
		rc = -errno;
		close(fd);
		fd = -1;
		if (rc == -EADDRINUSE)
			break;
	}
	freeaddrinfo(res);
	if (rc == -EADDRINUSE)
		snprintf(msg, msglen, "cannot listen on %s port %u: port %u is in use (another job holds it?)", host,
			 (unsigned)port, (unsigned)port);
	else if (rc == -EADDRNOTAVAIL)
		snprintf(msg, msglen, "cannot listen on %s port %u: %s is not an address of this host", host,
			 (unsigned)port, host);
	else if (rc)
		snprintf(msg, msglen, "cannot listen on %s port %u: %s", host, (unsigned)port, strerror(-rc));
	return rc ? rc : fd;
}

static int sock_name(int fd, bool peer, char *addr, size_t addrlen, uint16_t *port)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	int rc = peer ? getpeername(fd, (struct sockaddr *)&ss, &sl) : getsockname(fd, (struct sockaddr *)&ss, &sl);
	if (rc != 0)
		return -errno;
	char ps[8];
	rc = getnameinfo((struct sockaddr *)&ss, sl, addr, (socklen_t)addrlen, ps, sizeof ps,
			 NI_NUMERICHOST | NI_NUMERICSERV);
	if (rc != 0)
		return -EINVAL;
	*port = (uint16_t)atoi(ps);
	return 0;
}

int ps__net_local(int fd, char *addr, size_t addrlen, uint16_t *port)
{
	return sock_name(fd, false, addr, addrlen, port);
}

int ps__net_peer(int fd, char *addr, size_t addrlen, uint16_t *port)
{
	return sock_name(fd, true, addr, addrlen, port);
}

/* Waits for events on fd until the deadline: 1 ready, -ETIMEDOUT, -EINTR
 * (cancel_fd readable) or -errno. */
static int wait_fd(int fd, short events, uint64_t deadline_ns, int cancel_fd)
{
	for (;;) {
		uint64_t now = ps__now_ns();
		if (now >= deadline_ns)
			return -ETIMEDOUT;
		uint64_t ms = (deadline_ns - now + 999999) / 1000000;
		struct pollfd p[2] = {{.fd = fd, .events = events}, {.fd = cancel_fd, .events = POLLIN}};
		int n = poll(p, cancel_fd >= 0 ? 2 : 1, ms > 1000 ? 1000 : (int)ms);
		if (n < 0 && errno != EINTR)
			return -errno;
		if (n > 0 && cancel_fd >= 0 && (p[1].revents & POLLIN))
			return -EINTR;
		if (n > 0 && p[0].revents)
			return 1;
	}
}

/* One connection attempt to a; 0 connected, or -errno. */
static int try_connect(const struct addrinfo *a, uint64_t deadline_ns, int cancel_fd, int *out)
{
	int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
	if (fd < 0)
		return -errno;
	int rc = 0;
	if (connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
		rc = errno == EINPROGRESS ? 0 : -errno;
		if (rc == 0)
			rc = wait_fd(fd, POLLOUT, deadline_ns, cancel_fd);
		if (rc == 1) {
			int err = 0;
			socklen_t sl = sizeof err;
			getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &sl);
			rc = -err;
		}
	}
	if (rc) {
		close(fd);
		return rc;
	}
	ps__net_tune(fd);
	*out = fd;
	return 0;
}

int ps__net_connect(const char *host, uint16_t port, uint64_t deadline_ns, int cancel_fd, char *msg, size_t msglen)
{
	struct addrinfo *res;
	int rc = resolve(host, port, false, &res, msg, msglen);
	if (rc)
		return rc;
	int fd = -1;
	for (;;) {
		for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
			rc = try_connect(a, deadline_ns, cancel_fd, &fd);
			if (rc == -EINTR || rc == -ETIMEDOUT)
				break;
		}
		if (fd >= 0 || rc == -EINTR || rc == -ETIMEDOUT)
			break;
		/* refused or unreachable: the peer may not listen yet */
		if (ps__now_ns() + 100000000ULL >= deadline_ns) {
			break;
		}
		rc = wait_fd(-1, 0, ps__now_ns() + 100000000ULL, cancel_fd);
		if (rc == -EINTR)
			break;
	}
	freeaddrinfo(res);
	if (fd >= 0)
		return fd;
	if (rc == -ETIMEDOUT || rc == 0)
		rc = -ETIMEDOUT;
	if (rc != -EINTR)
		snprintf(msg, msglen, "cannot connect to %s port %u: %s", host, (unsigned)port,
			 rc == -ETIMEDOUT ? "nobody answered in time" : strerror(-rc));
	return rc;
}

int ps__net_accept(int lfd, uint64_t deadline_ns, int cancel_fd)
{
	for (;;) {
		int rc = wait_fd(lfd, POLLIN, deadline_ns, cancel_fd);
		if (rc < 0)
			return rc;
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd >= 0) {
			ps__net_tune(fd);
			return fd;
		}
		if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
			return -errno;
	}
}

int ps__net_send(int fd, const void *buf, size_t n, uint64_t deadline_ns)
{
	const uint8_t *p = buf;
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w > 0) {
			p += w;
			n -= (size_t)w;
			continue;
		}
		if (w < 0 && errno != EAGAIN && errno != EINTR)
			return -errno;
		int rc = wait_fd(fd, POLLOUT, deadline_ns, -1);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* Reads exactly n bytes: 0, -ECONNRESET at EOF before the first byte,
 * PS_EFRAME_TRUNC at EOF after it, -ETIMEDOUT, -EINTR or -errno. */
static int recv_exact(int fd, uint8_t *p, size_t n, bool started, uint64_t deadline_ns, int cancel_fd)
{
	while (n > 0) {
		ssize_t r = recv(fd, p, n, 0);
		if (r > 0) {
			p += r;
			n -= (size_t)r;
			started = true;
			continue;
		}
		if (r == 0)
			return started ? PS_EFRAME_TRUNC : -ECONNRESET;
		if (errno != EAGAIN && errno != EINTR)
			return -errno;
		int rc = wait_fd(fd, POLLIN, deadline_ns, cancel_fd);
		if (rc < 0)
			return rc;
	}
	return 0;
}

long ps__net_recv_frame(int fd, uint8_t *buf, size_t cap, uint32_t max_body, uint64_t deadline_ns, int cancel_fd,
			struct ps__frame *f)
{
	return ps__net_recv_frame_mode(fd, buf, cap, max_body, PS__CRC_CHECK, deadline_ns, cancel_fd, f);
}

long ps__net_recv_frame_mode(int fd, uint8_t *buf, size_t cap, uint32_t max_body, unsigned crc, uint64_t deadline_ns,
			     int cancel_fd, struct ps__frame *f)
{
	int rc = recv_exact(fd, buf, PS__FRAME_HDR, false, deadline_ns, cancel_fd);
	if (rc)
		return rc;
	if (max_body > cap - PS__FRAME_HDR)
		max_body = (uint32_t)(cap - PS__FRAME_HDR);
	long r = ps__frame_parse(buf, PS__FRAME_HDR, max_body, crc, false, f);
	if (r != 0)
		return r; /* an error, or a complete frame with an empty body */
	uint32_t len = ps__get32(buf + 8);
	rc = recv_exact(fd, buf + PS__FRAME_HDR, len, true, deadline_ns, cancel_fd);
	if (rc)
		return rc;
	return ps__frame_parse(buf, PS__FRAME_HDR + len, max_body, crc, false, f);
}

int ps__net_send_frame(int fd, uint8_t *frame, unsigned type, uint16_t host, uint64_t req, uint32_t len,
		       uint64_t deadline_ns)
{
	ps__frame_seal(frame, type, host, req, len);
	return ps__net_send(fd, frame, PS__FRAME_HDR + len, deadline_ns);
}
