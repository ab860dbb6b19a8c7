/*
 * ucx_rpc.c - psmem's remote pull pattern between two processes of one host,
 * over UCX UCP against plain blocking TCP sockets (issue 13 item 3: should
 * the multi-host data path run on UCX?).
 *
 *   bench/ucx.sh [-n ROUNDS] [options]   builds and runs it, CSV of medians
 *   build/bench/ucx_rpc [options]        one run, one row per round
 *
 * The process forks before anything else: the child serves, the parent
 * measures.  A socketpair made before the fork is the side channel that
 * carries addresses (a TCP port, a UCX worker address) and teardown
 * barriers, as psrun's authenticated rendezvous connection would.  For each
 * round, every transport runs in turn (alternating, so drift of a busy
 * machine hits them all alike), each with a fresh connection:
 *
 *   tcp            one TCP connection on 127.0.0.1, TCP_NODELAY on both
 *                  ends; the server blocks in recv() and answers with one
 *                  send(); the client sends the request with one send() and
 *                  blocks in recv(MSG_WAITALL) for the reply.  This is the
 *                  direct node-to-node design of issue 13 (no bridge hop,
 *                  no per-frame CRC).
 *   ucx-tcp        UCX UCP, tag API, UCX_TLS=tcp (like for like with tcp)
 *   ucx-sm         UCX UCP, UCX_TLS=sm (shared memory: posix/sysv mm, cma)
 *   ucx-default    UCX UCP, whatever UCX picks on its own (the transports
 *                  it chose are printed as comments)
 *   ...-block      the same, but both ends sleep on the worker's event fd
 *                  (ucp_worker_arm + poll) instead of spinning in
 *                  ucp_worker_progress: what a serving thread that must not
 *                  burn a core next to the compute threads would do.
 *                  (ucx-default-block runs only when named in --transports.)
 *
 * Messages (the same bytes on every transport): request = 24-byte header
 * (magic, op, key count, value length, request id) + 8 bytes per key; reply
 * = 24-byte header (magic, status, key count, value length, request id) + 4
 * x value_len bytes per key.  The server owns a table of --mem-mb MiB of
 * float rows (default 1 GiB, far beyond the cache) and copies the rows of
 * the requested keys into its reply buffer, as a real pull would; keys are
 * uniform random, fresh for every call.  Every reply is checked (id, count,
 * first and last float of every row = the key).
 *
 * Rows: round,transport,pattern,calls,p50_us,p99_us,keys_per_s,mb_per_s
 *   setup    client side: UCX context + worker + address (tcp: nothing)
 *   connect  client side: from the server's address in hand to the first
 *            one-key reply (UCX: endpoint creation and wire-up included)
 *   onekey   one key per call (32-byte request, 24 + 4 L byte reply);
 *            keys_per_s = 1e6 / p50
 *   batch    --batch keys per call (default 4096 x 100 floats, 1.6 MB);
 *            keys_per_s = batch x 1e6 / p50; mb_per_s: value bytes
 * Quantiles are over the calls of the row (each call timed alone).  Lines
 * starting with '#' are comments (UCX's lanes per transport, address size).
 *
 * Authentication is not measured: UCX has none.  A UCX worker (tcp) listens
 * on every interface it uses (here 127.0.0.1 and eth0's address, ephemeral
 * ports, backlog 4096; `ss -ltnp` while this runs) for the worker's whole
 * life and accepts whoever connects.  psmem on UCX would exchange worker
 * addresses only inside psrun's HMAC-authenticated rendezvous (as the side
 * channel here does), but could not close those listeners after the mesh as
 * psrun closes its own, so a stranger could still connect and inject tagged
 * messages; only a check in every message (a job cookie: cheap, or a MAC:
 * a pass over every byte) would refuse them.
 */
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <ucp/api/ucp.h>

#include "bench_util.h"

#define MAGIC_REQ 0x51525350u /* "PSRQ" */
#define MAGIC_REP 0x50525350u /* "PSRP" */
#define OP_PULL 1u
#define OP_QUIT 2u
#define HDR 24
#define TAG_REQ 0x1ull
#define TAG_REP 0x2ull

/* 24 bytes on the wire, both directions (op = status in a reply). */
struct hdr {
	uint32_t magic;
	uint32_t op;
	uint32_t nkeys;
	uint32_t vlen;
	uint64_t id;
};
_Static_assert(sizeof(struct hdr) == HDR, "header is 24 bytes");

enum kind { K_TCP, K_UCX };

struct transport {
	const char *name;
	enum kind kind;
	const char *tls; /* UCX_TLS value; NULL: UCX's own choice */
	bool block;	 /* sleep on the event fd instead of spinning */
};

static const struct transport transports[] = {
	{"tcp", K_TCP, NULL, true},
	{"ucx-tcp", K_UCX, "tcp", false},
	{"ucx-tcp-block", K_UCX, "tcp", true},
	{"ucx-sm", K_UCX, "sm", false},
	{"ucx-sm-block", K_UCX, "sm", true},
	{"ucx-default", K_UCX, NULL, false},
	{"ucx-default-block", K_UCX, NULL, true},
};
#define NTRANSPORTS (sizeof transports / sizeof transports[0])

struct opts {
	int rounds;
	long iters, pulls, warm_iters, warm_pulls;
	uint32_t batch, vlen;
	double mem_mb;
	bool use[NTRANSPORTS];
};

static const char *who = "ucx_rpc", *cur = "-"; /* process, transport */

static void die(const char *what, const char *why)
{
	fprintf(stderr, "%s (%s): %s: %s\n", who, cur, what, why);
	exit(1);
}

static void die_errno(const char *what)
{
	die(what, strerror(errno));
}

static void die_ucs(const char *what, ucs_status_t st)
{
	die(what, ucs_status_string(st));
}

/* splitmix64: keys for the client */
static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* ---- side channel (socketpair): length-prefixed blobs, barriers ---- */

static void write_all(int fd, const void *buf, size_t n, const char *what)
{
	const char *p = buf;
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			die_errno(what);
		p += w;
		n -= (size_t)w;
	}
}

/* Reads exactly n bytes; 0, or -1 at end of stream before any byte. */
static int read_all(int fd, void *buf, size_t n, const char *what)
{
	char *p = buf;
	size_t got = 0;
	while (got < n) {
		ssize_t r = recv(fd, p + got, n - got, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			die_errno(what);
		if (r == 0) {
			if (got == 0)
				return -1;
			die(what, "peer closed mid-message");
		}
		got += (size_t)r;
	}
	return 0;
}

static void ctl_send(int ctl, const void *blob, uint32_t len)
{
	write_all(ctl, &len, sizeof len, "side channel");
	write_all(ctl, blob, len, "side channel");
}

static void *ctl_recv(int ctl, uint32_t *len)
{
	if (read_all(ctl, len, sizeof *len, "side channel") < 0)
		die("side channel", "peer gone");
	if (*len > (1u << 20))
		die("side channel", "blob over 1 MiB");
	void *b = malloc(*len ? *len : 1);
	if (!b)
		die("side channel", "out of memory");
	if (*len && read_all(ctl, b, *len, "side channel") < 0)
		die("side channel", "peer gone");
	return b;
}

/* True once the other process has gone (its end of ctl closed). */
static bool peer_gone(int ctl)
{
	struct pollfd p = {.fd = ctl, .events = POLLIN};
	if (poll(&p, 1, 0) <= 0)
		return false;
	char c;
	return recv(ctl, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

/* ---- the server's table ---- */

struct table {
	float *rows;
	uint64_t nkeys;
	uint32_t vlen;
};

/* Row k holds the float k everywhere: a misplaced row shows. */
static void table_init(struct table *t, double mem_mb, uint32_t vlen)
{
	t->vlen = vlen;
	t->nkeys = (uint64_t)(mem_mb * 1048576.0 / (4.0 * vlen));
	if (t->nkeys < 1 || t->nkeys > (1ull << 24))
		die("--mem-mb", "the table must hold 1 to 2^24 keys (floats hold the key exactly)");
	t->rows = malloc(t->nkeys * vlen * sizeof(float));
	if (!t->rows)
		die("table", "out of memory");
	for (uint64_t k = 0; k < t->nkeys; k++)
		for (uint32_t j = 0; j < vlen; j++)
			t->rows[k * vlen + j] = (float)k;
}

/* Fills a reply (header + rows) for a request; returns its length. */
static size_t serve_one(const struct table *t, const char *req, size_t reqlen, char *rep, size_t repcap, bool *quit)
{
	struct hdr h, r = {.magic = MAGIC_REP};
	if (reqlen < HDR)
		die("server", "short request");
	memcpy(&h, req, HDR);
	if (h.magic != MAGIC_REQ || reqlen != HDR + 8ull * h.nkeys) {
		fprintf(stderr, "%s (%s): request of %zu bytes: magic %#x op %u nkeys %u id %" PRIu64 "\n", who, cur,
			reqlen, h.magic, h.op, h.nkeys, h.id);
		die("server", "malformed request");
	}
	r.id = h.id;
	r.nkeys = h.nkeys;
	r.vlen = t->vlen;
	*quit = h.op == OP_QUIT;
	size_t row = (size_t)t->vlen * sizeof(float);
	if (HDR + (size_t)h.nkeys * row > repcap)
		die("server", "request over the reply buffer");
	const uint64_t *keys = (const uint64_t *)(req + HDR);
	for (uint32_t i = 0; i < h.nkeys; i++) {
		if (keys[i] >= t->nkeys) {
			r.op = 1; /* status: bad key */
			r.nkeys = 0;
			break;
		}
		memcpy(rep + HDR + i * row, t->rows + keys[i] * t->vlen, row);
	}
	memcpy(rep, &r, HDR);
	return HDR + (size_t)r.nkeys * row;
}

/* ---- client's request and check ---- */

struct client {
	char *req, *rep;
	uint64_t seed, next_id, table_keys;
	uint32_t vlen;
};

static size_t make_request(struct client *c, uint32_t op, uint32_t n)
{
	struct hdr h = {.magic = MAGIC_REQ, .op = op, .nkeys = n, .vlen = c->vlen, .id = ++c->next_id};
	memcpy(c->req, &h, HDR);
	uint64_t *keys = (uint64_t *)(c->req + HDR);
	for (uint32_t i = 0; i < n; i++)
		keys[i] = rng_next(&c->seed) % c->table_keys;
	return HDR + 8ull * n;
}

static void check_reply(const struct client *c, size_t len)
{
	struct hdr q, r;
	memcpy(&q, c->req, HDR);
	memcpy(&r, c->rep, HDR);
	size_t row = (size_t)c->vlen * sizeof(float);
	if (len != HDR + (size_t)q.nkeys * row || r.magic != MAGIC_REP || r.op != 0 || r.id != q.id ||
	    r.nkeys != q.nkeys || r.vlen != c->vlen)
		die("client", "reply does not answer the request");
	const uint64_t *keys = (const uint64_t *)(c->req + HDR);
	const float *v = (const float *)(c->rep + HDR);
	for (uint32_t i = 0; i < q.nkeys; i++)
		if (v[(size_t)i * c->vlen] != (float)keys[i] || v[(size_t)i * c->vlen + c->vlen - 1] != (float)keys[i])
			die("client", "pulled values are not the key's row");
}

/* ---- plain TCP ---- */

static void set_nodelay(int fd)
{
	int one = 1;
	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
		die_errno("TCP_NODELAY");
}

static void tcp_server(int ctl, const struct table *t, char *req, size_t reqcap, char *rep, size_t repcap)
{
	int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof a;
	if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) < 0 || listen(ls, 1) < 0 ||
	    getsockname(ls, (struct sockaddr *)&a, &al) < 0)
		die_errno("tcp listen");
	ctl_send(ctl, &a.sin_port, sizeof a.sin_port);
	/* wait for the client, or notice that it died before connecting */
	for (;;) {
		struct pollfd p[2] = {{.fd = ls, .events = POLLIN}, {.fd = ctl, .events = POLLIN}};
		if (poll(p, 2, -1) < 0 && errno != EINTR)
			die_errno("poll");
		if (p[0].revents & POLLIN)
			break;
		if ((p[1].revents & (POLLIN | POLLHUP)) && peer_gone(ctl))
			die("tcp server", "client gone");
	}
	int fd = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		die_errno("accept");
	close(ls);
	set_nodelay(fd);
	for (bool quit = false; !quit;) {
		/* One recv() usually brings the whole request; the client sends
		 * the next one only after this reply, so no bytes of a second
		 * request can follow in the buffer. */
		size_t have = 0, need = HDR;
		while (have < need) {
			ssize_t r = recv(fd, req + have, reqcap - have, 0);
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0)
				die("tcp server", r == 0 ? "client closed" : strerror(errno));
			have += (size_t)r;
			if (need == HDR && have >= HDR) {
				struct hdr h;
				memcpy(&h, req, HDR);
				need = HDR + 8ull * h.nkeys;
				if (need > reqcap)
					die("tcp server", "request over the buffer");
			}
		}
		size_t n = serve_one(t, req, have, rep, repcap, &quit);
		write_all(fd, rep, n, "tcp send");
	}
	close(fd);
}

struct tcp_client {
	int fd;
};

static void tcp_connect(struct tcp_client *tc, int ctl)
{
	uint32_t len;
	uint16_t *port = ctl_recv(ctl, &len);
	if (len != sizeof *port)
		die("side channel", "bad port");
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = *port, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	free(port);
	tc->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (tc->fd < 0 || connect(tc->fd, (struct sockaddr *)&a, sizeof a) < 0)
		die_errno("tcp connect");
	set_nodelay(tc->fd);
}

static void tcp_call(struct tcp_client *tc, struct client *c, size_t reqlen, size_t replen)
{
	write_all(tc->fd, c->req, reqlen, "tcp send");
	size_t got = 0;
	while (got < replen) {
		ssize_t r = recv(tc->fd, c->rep + got, replen - got, MSG_WAITALL);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			die("tcp client", r == 0 ? "server closed" : strerror(errno));
		got += (size_t)r;
	}
	check_reply(c, got);
}

/* ---- UCX UCP ---- */

struct ucx {
	ucp_context_h ctx;
	ucp_worker_h w;
	ucp_ep_h ep;
	ucp_address_t *addr;
	size_t addr_len;
	int efd, ctl;
	bool block;
	unsigned spins;
};

static void ucx_open(struct ucx *u, const struct transport *tr, int ctl)
{
	ucp_config_t *cfg;
	ucs_status_t st = ucp_config_read(NULL, NULL, &cfg);
	if (st != UCS_OK)
		die_ucs("ucp_config_read", st);
	if (tr->tls && (st = ucp_config_modify(cfg, "TLS", tr->tls)) != UCS_OK)
		die_ucs("UCX_TLS", st);
	ucp_params_t p = {.field_mask = UCP_PARAM_FIELD_FEATURES,
			  .features = UCP_FEATURE_TAG | (tr->block ? UCP_FEATURE_WAKEUP : 0)};
	st = ucp_init(&p, cfg, &u->ctx);
	ucp_config_release(cfg);
	if (st != UCS_OK)
		die_ucs("ucp_init", st);
	ucp_worker_params_t wp = {.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE,
				  .thread_mode = UCS_THREAD_MODE_SINGLE};
	if ((st = ucp_worker_create(u->ctx, &wp, &u->w)) != UCS_OK)
		die_ucs("ucp_worker_create", st);
	if ((st = ucp_worker_get_address(u->w, &u->addr, &u->addr_len)) != UCS_OK)
		die_ucs("ucp_worker_get_address", st);
	u->block = tr->block;
	u->ctl = ctl;
	u->ep = NULL;
	u->spins = 0;
	if (u->block && (st = ucp_worker_get_efd(u->w, &u->efd)) != UCS_OK)
		die_ucs("ucp_worker_get_efd", st);
}

static void ucx_connect(struct ucx *u, const void *peer)
{
	ucp_ep_params_t ep = {.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS, .address = peer};
	ucs_status_t st = ucp_ep_create(u->w, &ep, &u->ep);
	if (st != UCS_OK)
		die_ucs("ucp_ep_create", st);
}

/* One step of waiting: progress; when blocking and nothing moved, sleep on
 * the event fd (or the side channel, to notice a dead peer). */
static void ucx_step(struct ucx *u)
{
	if (ucp_worker_progress(u->w))
		return;
	if (!u->block) {
		if ((++u->spins & 0xfffff) == 0 && peer_gone(u->ctl))
			die("ucx", "peer gone");
		return;
	}
	ucs_status_t st = ucp_worker_arm(u->w);
	if (st == UCS_ERR_BUSY)
		return;
	if (st != UCS_OK)
		die_ucs("ucp_worker_arm", st);
	struct pollfd p[2] = {{.fd = u->efd, .events = POLLIN}, {.fd = u->ctl, .events = POLLIN}};
	if (poll(p, 2, 1000) < 0 && errno != EINTR)
		die_errno("poll");
	if ((p[1].revents & (POLLIN | POLLHUP)) && peer_gone(u->ctl))
		die("ucx", "peer gone");
}

static void ucx_wait_send(struct ucx *u, ucs_status_ptr_t req, const char *what)
{
	if (req == NULL)
		return;
	if (UCS_PTR_IS_ERR(req))
		die_ucs(what, UCS_PTR_STATUS(req));
	ucs_status_t st;
	while ((st = ucp_request_check_status(req)) == UCS_INPROGRESS)
		ucx_step(u);
	ucp_request_free(req);
	if (st != UCS_OK)
		die_ucs(what, st);
}

/* Returns the received length. */
static size_t ucx_wait_recv(struct ucx *u, ucs_status_ptr_t req, ucp_tag_recv_info_t *info, const char *what)
{
	if (req == NULL)
		die(what, "completed at once despite UCP_OP_ATTR_FLAG_NO_IMM_CMPL");
	if (UCS_PTR_IS_ERR(req))
		die_ucs(what, UCS_PTR_STATUS(req));
	ucs_status_t st;
	while ((st = ucp_tag_recv_request_test(req, info)) == UCS_INPROGRESS)
		ucx_step(u);
	ucp_request_free(req);
	if (st != UCS_OK)
		die_ucs(what, st);
	return info->length;
}

/* Always a request (NO_IMM_CMPL): UCX 1.13.1 can complete a receive at once
 * without filling recv_info.tag_info (seen here: a 24-byte message reported
 * with the previous message's length), so the length is taken from
 * ucp_tag_recv_request_test() only. */
static ucs_status_ptr_t ucx_post_recv(struct ucx *u, void *buf, size_t cap, ucp_tag_t tag)
{
	ucp_request_param_t p = {.op_attr_mask = UCP_OP_ATTR_FLAG_NO_IMM_CMPL};
	return ucp_tag_recv_nbx(u->w, buf, cap, tag, ~0ull, &p);
}

static ucs_status_ptr_t ucx_send(struct ucx *u, const void *buf, size_t len, ucp_tag_t tag)
{
	ucp_request_param_t p = {.op_attr_mask = 0};
	return ucp_tag_send_nbx(u->ep, buf, len, tag, &p);
}

/* Both processes meet here while progressing their workers (a closing
 * endpoint may need the peer's progress). */
static void ucx_barrier(struct ucx *u)
{
	char c = 'b';
	write_all(u->ctl, &c, 1, "side channel");
	for (;;) {
		struct pollfd p = {.fd = u->ctl, .events = POLLIN};
		if (poll(&p, 1, 0) > 0) {
			if (read_all(u->ctl, &c, 1, "side channel") < 0)
				die("side channel", "peer gone");
			return;
		}
		ucp_worker_progress(u->w);
	}
}

static void ucx_close(struct ucx *u)
{
	ucx_barrier(u); /* both have stopped sending */
	if (u->ep) {
		ucp_request_param_t p = {.op_attr_mask = 0};
		ucs_status_ptr_t r = ucp_ep_close_nbx(u->ep, &p);
		if (UCS_PTR_IS_PTR(r)) {
			while (ucp_request_check_status(r) == UCS_INPROGRESS)
				ucp_worker_progress(u->w);
			ucp_request_free(r);
		}
	}
	ucx_barrier(u); /* both endpoints are closed: the workers can go */
	ucp_worker_release_address(u->w, u->addr);
	ucp_worker_destroy(u->w);
	ucp_cleanup(u->ctx);
}

static void ucx_server(int ctl, const struct transport *tr, const struct table *t, char *req, size_t reqcap,
		       char *rep, size_t repcap)
{
	struct ucx u;
	ucx_open(&u, tr, ctl);
	ctl_send(ctl, u.addr, (uint32_t)u.addr_len);
	uint32_t len;
	void *peer = ctl_recv(ctl, &len);
	ucx_connect(&u, peer);
	free(peer);
	for (bool quit = false; !quit;) {
		ucp_tag_recv_info_t info;
		size_t n = ucx_wait_recv(&u, ucx_post_recv(&u, req, reqcap, TAG_REQ), &info, "recv request");
		size_t m = serve_one(t, req, n, rep, repcap, &quit);
		ucx_wait_send(&u, ucx_send(&u, rep, m, TAG_REP), "send reply");
	}
	ucx_close(&u);
}

static void ucx_call(struct ucx *u, struct client *c, size_t reqlen, size_t replen)
{
	ucp_tag_recv_info_t info;
	ucs_status_ptr_t r = ucx_post_recv(u, c->rep, replen, TAG_REP);
	ucx_wait_send(u, ucx_send(u, c->req, reqlen, TAG_REQ), "send request");
	check_reply(c, ucx_wait_recv(u, r, &info, "recv reply"));
}

/* Prints UCX's lanes of the endpoint (which transports it chose). */
static void ucx_print_lanes(struct ucx *u, const char *name)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	if (!f)
		return;
	ucp_ep_print_info(u->ep, f);
	fclose(f);
	printf("# %s: worker address %zu bytes\n", name, u->addr_len);
	for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"))
		if (strstr(line, "lane[") || strstr(line, "tag_send:"))
			printf("# %s: %s\n", name, line + strspn(line, "# "));
	free(text);
}

/* ---- the client: one transport, one round ---- */

static void row(int round, const char *tr, const char *pattern, long calls, double *lat, double keys_per_call,
		uint32_t vlen)
{
	qsort(lat, (size_t)calls, sizeof *lat, bench_cmp_double);
	double p50 = lat[calls / 2], p99 = lat[(size_t)((double)calls * 0.99)];
	double kps = keys_per_call * 1e6 / p50;
	printf("%d,%s,%s,%ld,%.2f,%.2f,%.0f,%.1f\n", round, tr, pattern, calls, p50, p99, kps,
	       kps * 4.0 * vlen / 1e6);
	fflush(stdout);
}

static void client_run(int ctl, int round, const struct transport *tr, const struct opts *o, struct client *c,
		       double *lat)
{
	struct tcp_client tc;
	struct ucx u;
	size_t row_bytes = (size_t)o->vlen * sizeof(float);
	double setup, t0;

	/* setup and connect: the first one-key call is part of connect */
	t0 = bench_now();
	if (tr->kind == K_UCX)
		ucx_open(&u, tr, ctl);
	setup = (bench_now() - t0) * 1e6;
	uint32_t len;
	void *peer = NULL;
	if (tr->kind == K_UCX)
		peer = ctl_recv(ctl, &len);
	t0 = bench_now();
	size_t q1 = make_request(c, OP_PULL, 1), r1 = HDR + row_bytes;
	if (tr->kind == K_TCP) {
		tcp_connect(&tc, ctl);
		tcp_call(&tc, c, q1, r1);
	} else {
		ucx_connect(&u, peer);
		ctl_send(ctl, u.addr, (uint32_t)u.addr_len);
		ucx_call(&u, c, q1, r1);
	}
	double connect = (bench_now() - t0) * 1e6;
	free(peer);
	if (tr->kind == K_UCX && round == 1)
		ucx_print_lanes(&u, tr->name);
	row(round, tr->name, "setup", 1, &setup, 0, o->vlen);
	row(round, tr->name, "connect", 1, &connect, 0, o->vlen);

	size_t qb = HDR + 8ull * o->batch, rb = HDR + (size_t)o->batch * row_bytes;
	for (int pat = 0; pat < 2; pat++) {
		uint32_t n = pat == 0 ? 1 : o->batch;
		long warm = pat == 0 ? o->warm_iters : o->warm_pulls, calls = pat == 0 ? o->iters : o->pulls;
		size_t q = pat == 0 ? q1 : qb, r = pat == 0 ? r1 : rb;
		for (long i = 0; i < warm + calls; i++) {
			make_request(c, OP_PULL, n);
			double s = bench_now();
			if (tr->kind == K_TCP)
				tcp_call(&tc, c, q, r);
			else
				ucx_call(&u, c, q, r);
			if (i >= warm)
				lat[i - warm] = (bench_now() - s) * 1e6;
		}
		row(round, tr->name, pat == 0 ? "onekey" : "batch", calls, lat, n, o->vlen);
	}

	/* QUIT: the server answers with an empty reply and leaves */
	make_request(c, OP_QUIT, 0);
	if (tr->kind == K_TCP) {
		tcp_call(&tc, c, HDR, HDR);
		close(tc.fd);
	} else {
		ucx_call(&u, c, HDR, HDR);
		ucx_close(&u);
	}
}

static void usage(FILE *f)
{
	fprintf(f, "usage: ucx_rpc [--rounds R] [--iters N] [--pulls P] [--batch B] [--vlen L] [--mem-mb M]\n"
		   "               [--transports NAME,...]\n"
		   "transports:");
	for (size_t i = 0; i < NTRANSPORTS; i++)
		fprintf(f, " %s", transports[i].name);
	fprintf(f, "\n");
}

static long parse_long(const char *flag, const char *s, long lo, long hi)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || *end || end == s || v < lo || v > hi) {
		fprintf(stderr, "ucx_rpc: %s: '%s' is not a whole number in [%ld, %ld]\n", flag, s, lo, hi);
		exit(2);
	}
	return v;
}

static void parse_transports(struct opts *o, const char *list)
{
	memset(o->use, 0, sizeof o->use);
	char *copy = strdup(list), *save = NULL;
	for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		size_t i = 0;
		while (i < NTRANSPORTS && strcmp(transports[i].name, t) != 0)
			i++;
		if (i == NTRANSPORTS) {
			fprintf(stderr, "ucx_rpc: --transports: unknown transport '%s'\n", t);
			usage(stderr);
			exit(2);
		}
		o->use[i] = true;
	}
	free(copy);
}

int main(int argc, char **argv)
{
	struct opts o = {.rounds = 3, .iters = 20000, .pulls = 200, .warm_iters = 1000, .warm_pulls = 10,
			 .batch = 4096, .vlen = 100, .mem_mb = 1024};
	parse_transports(&o, "tcp,ucx-tcp,ucx-tcp-block,ucx-sm,ucx-sm-block,ucx-default");
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(stdout);
			return 0;
		}
		if (i + 1 >= argc) {
			fprintf(stderr, "ucx_rpc: %s: missing value\n", a);
			usage(stderr);
			return 2;
		}
		const char *v = argv[++i];
		if (!strcmp(a, "--rounds"))
			o.rounds = (int)parse_long(a, v, 1, 1000);
		else if (!strcmp(a, "--iters"))
			o.iters = parse_long(a, v, 1, 100000000);
		else if (!strcmp(a, "--pulls"))
			o.pulls = parse_long(a, v, 1, 100000000);
		else if (!strcmp(a, "--batch"))
			o.batch = (uint32_t)parse_long(a, v, 1, 1 << 20);
		else if (!strcmp(a, "--vlen"))
			o.vlen = (uint32_t)parse_long(a, v, 1, 1 << 16);
		else if (!strcmp(a, "--mem-mb"))
			o.mem_mb = (double)parse_long(a, v, 1, 1 << 20);
		else if (!strcmp(a, "--transports"))
			parse_transports(&o, v);
		else {
			fprintf(stderr, "ucx_rpc: unknown option %s\n", a);
			usage(stderr);
			return 2;
		}
	}
	size_t row_bytes = (size_t)o.vlen * sizeof(float);
	size_t reqcap = HDR + 8ull * o.batch, repcap = HDR + (size_t)o.batch * row_bytes;
	char *req = malloc(reqcap), *rep = malloc(repcap);
	if (!req || !rep)
		die("buffers", "out of memory");
	memset(rep, 0, repcap);

	int sp[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0)
		die_errno("socketpair");
	/* Fork before any UCX call: UCX does not survive fork. */
	pid_t pid = fork();
	if (pid < 0)
		die_errno("fork");
	if (pid == 0) {
		who = "ucx_rpc server";
		close(sp[0]);
		struct table t;
		table_init(&t, o.mem_mb, o.vlen);
		char ready = 'r';
		write_all(sp[1], &ready, 1, "side channel");
		for (int r = 1; r <= o.rounds; r++)
			for (size_t i = 0; i < NTRANSPORTS; i++) {
				if (!o.use[i])
					continue;
				cur = transports[i].name;
				if (transports[i].kind == K_TCP)
					tcp_server(sp[1], &t, req, reqcap, rep, repcap);
				else
					ucx_server(sp[1], &transports[i], &t, req, reqcap, rep, repcap);
			}
		free(t.rows);
		free(req);
		free(rep);
		_exit(0);
	}
	who = "ucx_rpc client";
	close(sp[1]);
	int ctl = sp[0];
	char ready;
	if (read_all(ctl, &ready, 1, "side channel") < 0)
		die("server", "did not start (its error is above)");
	struct client c = {.req = req, .rep = rep, .seed = 42, .vlen = o.vlen,
			   .table_keys = (uint64_t)(o.mem_mb * 1048576.0 / (4.0 * o.vlen))};
	long most = o.iters > o.pulls ? o.iters : o.pulls;
	double *lat = malloc(sizeof(double) * (size_t)most);
	if (!lat)
		die("latencies", "out of memory");
	printf("# table %" PRIu64 " keys x %u floats (%.0f MiB), batch %u keys, %ld one-key calls, %ld batched pulls, "
	       "UCX %s\n",
	       c.table_keys, o.vlen, o.mem_mb, o.batch, o.iters, o.pulls, ucp_get_version_string());
	printf("round,transport,pattern,calls,p50_us,p99_us,keys_per_s,mb_per_s\n");
	for (int r = 1; r <= o.rounds; r++)
		for (size_t i = 0; i < NTRANSPORTS; i++)
			if (o.use[i]) {
				cur = transports[i].name;
				client_run(ctl, r, &transports[i], &o, &c, lat);
			}
	int status;
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		die("server", "did not exit cleanly");
	free(lat);
	free(req);
	free(rep);
	return 0;
}
