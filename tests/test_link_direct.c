/*
 * test_link_direct.c - the link thread's handling of a data connection,
 * driven by hand on a socketpair (no psrun, no bridge, no other host):
 *
 *   direct_sweep   (LK7) a large REPLY received straight into a pull's rows
 *                  (direct_start), its request failed by the sweep
 *                  (sweep_inflight: ABORT, or the link broken) half-way: the
 *                  sweep must turn the receive into a discard (dst NULL) so
 *                  that no byte of the rest lands in the rows of the
 *                  released caller; on nodes 0, 1 and 2 (the request id
 *                  carries the node byte, LK1);
 *   abort_closes   ABORT for a host stops its data connection (shut down,
 *                  so the next read ends it: data_lost) and drops what was
 *                  queued for it;
 *   enomem_keeps   no memory to queue a request of which nothing was sent:
 *                  -ENOMEM, the connection stays (and a later frame goes
 *                  out whole); after a partial send, or for an answer, the
 *                  connection breaks (PS_EHOSTDOWN, shut down);
 *   data_fds_bad   a malformed PSMEM_DATA_FDS still marks every listed fd
 *                  close-on-exec, and ps__link_start unsets both variables
 *                  (a later ps_init, or a child, adopts no stray socket).
 *
 * bridge_link.c's functions are static: it is included here.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <errno.h>

#include "../lib/base/util.h"

/* Allocation failure on demand: bridge_link.c's buffer growth goes
 * through here (the macro renames its calls). */
static bool fail_reserve;
static int reserve_or_fail(uint8_t **p, size_t *cap, size_t need)
{
	return fail_reserve && need > *cap ? -ENOMEM : ps__buf_reserve(p, cap, need);
}
#define ps__buf_reserve reserve_or_fail
#include "../lib/net/bridge_link.c"
#undef ps__buf_reserve

enum { N = 200, V = 100 };

struct fixture {
	ps_world w;
	struct ps__link *L;
	int sv[2];
};

static void fx_init(struct fixture *x, int node)
{
	memset(x, 0, sizeof *x);
	x->w.host = 0;
	x->w.nhosts = 2;
	x->w.node = node;
	struct ps__link *L = calloc(1, sizeof *L);
	assert_non_null(L);
	L->w = &x->w;
	L->filt = ps__filter_new();
	assert_non_null(L->filt);
	L->data = calloc(2, sizeof *L->data);
	assert_non_null(L->data);
	conn_init(&L->data[0], -1, 0, true);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, x->sv), 0);
	fcntl(x->sv[0], F_SETFL, fcntl(x->sv[0], F_GETFL) | O_NONBLOCK);
	conn_init(&L->data[1], x->sv[0], 1, true);
	conn_init(&L->link, -1, -1, false);
	pthread_mutex_init(&L->lock, NULL);
	L->thread = pthread_self();
	L->free_head = UINT32_MAX;
	L->wake_fd = -1;
	x->L = L;
}

static void fx_free(struct fixture *x)
{
	struct ps__link *L = x->L;
	for (int h = 0; h < 2; h++)
		conn_free(&L->data[h]); /* closes sv[0] */
	pthread_mutex_destroy(&L->link.wlock);
	close(x->sv[1]);
	free(L->data);
	free(L->rpc);
	ps__filter_free(L->filt);
	pthread_mutex_destroy(&L->lock);
	free(L);
}

static void write_all(int fd, const void *p, size_t n)
{
	while (n > 0) {
		ssize_t r = write(fd, p, n);
		assert_true(r > 0);
		p = (const uint8_t *)p + r;
		n -= (size_t)r;
	}
}

static void sweep_on_node(int node, bool reroute)
{
	struct fixture x;
	fx_init(&x, node);
	struct ps__link *L = x.L;
	float *rows = calloc((size_t)N * V, 4);
	uint32_t *pos = malloc(N * sizeof *pos);
	uint8_t *vals = malloc(4u * N * V);
	assert_non_null(rows);
	assert_non_null(pos);
	assert_non_null(vals);
	for (uint32_t i = 0; i < N; i++)
		pos[i] = i;
	struct ps__rgroup g = {0};
	atomic_init(&g.left, 1);
	g.next = calloc(N, sizeof *g.next);
	g.hint = calloc(N, sizeof *g.hint);
	assert_non_null(g.next);
	assert_non_null(g.hint);
	L->cap = 1;
	L->rpc = calloc(1, sizeof *L->rpc);
	assert_non_null(L->rpc);
	L->rpc[0] = (struct rpc){.seq = 7, .busy = true, .g = &g, .out = rows, .pos = pos, .n = N, .value_len = V,
				 .host = 1};
	/* the reply as the peer sends it: the request id as we sent it (LK1) */
	uint64_t req = ((uint64_t)node << 56) | (7ULL << 32) | 0;
	uint32_t len = PS__REPLY_HDR + 4u * N * V;
	uint8_t hdr[PS__FRAME_HDR + PS__REPLY_HDR];
	ps__frame_hdr_nocrc(hdr, PS__F_REPLY, 1, req, len);
	ps__reply_enc_hdr(hdr + PS__FRAME_HDR, 0, N * V);
	memset(vals, 0xAB, 4u * N * V);
	write_all(x.sv[1], hdr, sizeof hdr);
	write_all(x.sv[1], vals, 1000);
	assert_int_equal(conn_read(L, &L->data[1]), 0);
	/* the receive went direct (else this test tests nothing) */
	assert_int_equal(L->data[1].direct_left, 4u * N * V - 1000);
	assert_ptr_equal(L->data[1].dst, (uint8_t *)rows + 1000);

	/* what ABORT for host 1, or the link broken, does; or, host 1 dropped
	 * under --on-host-failure continue, every key routed again (BK3) */
	sweep_inflight(L, 1, reroute);
	assert_int_equal(atomic_load(&g.left), 0);
	assert_int_equal(atomic_load(&g.err), reroute ? 0 : PS_EHOSTDOWN);
	assert_int_equal(atomic_load(&g.nnext), reroute ? N : 0);
	assert_null(L->data[1].dst); /* the rest is discarded (LK7) */

	/* the caller was released: it clears its rows (or frees them) */
	memset(rows, 0, 4u * N * V);
	write_all(x.sv[1], vals + 1000, 20000);
	assert_int_equal(conn_read(L, &L->data[1]), 0);
	size_t dirty = 0;
	for (size_t i = 0; i < 4u * N * V; i++)
		dirty += ((uint8_t *)rows)[i] != 0;
	assert_int_equal(dirty, 0);
	assert_int_equal(L->data[1].direct_left, 4u * N * V - 21000);

	free(g.next);
	free(g.hint);
	free(vals);
	free(pos);
	free(rows);
	fx_free(&x);
}

static void direct_sweep_node0(void **state)
{
	(void)state;
	sweep_on_node(0, false);
}

static void direct_reroute_node0(void **state)
{
	(void)state;
	sweep_on_node(0, true);
}

static void direct_sweep_node1(void **state)
{
	(void)state;
	sweep_on_node(1, false);
}

static void direct_reroute_node1(void **state)
{
	(void)state;
	sweep_on_node(1, true);
}

static void direct_sweep_node2(void **state)
{
	(void)state;
	sweep_on_node(2, false);
}

static void direct_reroute_node2(void **state)
{
	(void)state;
	sweep_on_node(2, true);
}

/* ABORT for host 1: its data connection is shut down (the peer reads its
 * end, our next read ends it), what was queued for it is dropped, and a
 * request sent there fails at once. */
static void abort_closes(void **state)
{
	(void)state;
	struct fixture x;
	fx_init(&x, 1);
	struct ps__link *L = x.L;
	/* something queued for host 1 */
	assert_int_equal(ps__buf_reserve(&L->data[1].out, &L->data[1].out_cap, 64), 0);
	L->data[1].out_len = 64;
	uint8_t f[PS__FRAME_HDR];
	ps__frame_seal(f, PS__F_ABORT, 1, 0, 0);
	struct ps__frame fr;
	assert_true(ps__frame_parse(f, sizeof f, PS__FRAME_MAX, PS__CRC_SKIP, false, &fr) > 0);
	L->cur = &L->link;
	/* ABORT also wakes clock waiters: a segment header of zeros */
	x.w.seg.hdr = calloc(1, sizeof *x.w.seg.hdr);
	assert_non_null(x.w.seg.hdr);
	dispatch(L, &fr);
	assert_true(atomic_load(&L->data[1].dead));
	assert_int_equal(L->data[1].out_len, 0);
	assert_false(data_pending(&L->data[1]));
	/* the peer sees the end of the stream: nothing more is served */
	char b;
	assert_int_equal(recv(x.sv[1], &b, 1, MSG_DONTWAIT), 0);
	/* and our next read of it ends it (data_lost) */
	assert_int_not_equal(conn_read(L, &L->data[1]), 0);
	free(x.w.seg.hdr);
	fx_free(&x);
}

/* A malformed PSMEM_DATA_FDS whose bad entry comes before a valid fd: that
 * fd is close-on-exec all the same, and neither variable survives
 * ps__link_start. */
static void data_fds_bad(void **state)
{
	(void)state;
	int link[2], d[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, link), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, d), 0);
	assert_int_equal(fcntl(d[0], F_GETFD) & FD_CLOEXEC, 0);
	char e[64];
	snprintf(e, sizeof e, "%d", link[0]);
	setenv("PSMEM_LINK_FD", e, 1);
	snprintf(e, sizeof e, "7:%d,2:%d", d[0], d[0]); /* host 7 of 3: bad */
	setenv("PSMEM_DATA_FDS", e, 1);
	ps_world w = {.host = 0, .nhosts = 3, .node = 0};
	assert_int_equal(ps__link_start(&w), PS_EHOSTDOWN);
	assert_null(w.link);
	assert_int_not_equal(fcntl(d[0], F_GETFD) & FD_CLOEXEC, 0);
	assert_null(getenv("PSMEM_DATA_FDS"));
	assert_null(getenv("PSMEM_LINK_FD"));
	close(link[0]);
	close(link[1]);
	close(d[0]);
	close(d[1]);
}

/* The in buffer of a connection that received a frame larger than
 * SHRINK_OVER is freed once it drains (a stale REPLY: parsed, ignored). */
static void in_buffer_shrinks(void **state)
{
	(void)state;
	struct fixture x;
	fx_init(&x, 0);
	struct ps__link *L = x.L;
	const uint32_t nvals = (SHRINK_OVER / 4) + 1024;
	const uint32_t len = PS__REPLY_HDR + 4 * nvals;
	uint8_t *f = calloc(1, PS__FRAME_HDR + (size_t)len);
	assert_non_null(f);
	ps__frame_hdr_nocrc(f, PS__F_REPLY, 1, (9ULL << 32) | 3, len); /* no such request */
	ps__reply_enc_hdr(f + PS__FRAME_HDR, 0, nvals);
	fcntl(x.sv[1], F_SETFL, fcntl(x.sv[1], F_GETFL) | O_NONBLOCK);
	size_t sent = 0, total = PS__FRAME_HDR + (size_t)len, grew = 0;
	while (sent < total || L->data[1].in_len > 0) {
		if (sent < total) {
			ssize_t r = write(x.sv[1], f + sent, total - sent);
			assert_true(r > 0 || (r < 0 && errno == EAGAIN));
			if (r > 0)
				sent += (size_t)r;
		}
		assert_int_equal(conn_read(L, &L->data[1]), 0);
		if (L->data[1].in_cap > grew)
			grew = L->data[1].in_cap;
	}
	assert_true(grew > SHRINK_OVER); /* it did grow for the frame */
	assert_null(L->data[1].in);
	assert_int_equal(L->data[1].in_cap, 0);
	free(f);
	fx_free(&x);
}

/* Fills the socket's send buffer: the next send takes nothing. */
static void fill_socket(int fd)
{
	static uint8_t junk[65536];
	while (send(fd, junk, sizeof junk, MSG_DONTWAIT) > 0)
		;
	assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
}

static void enomem_keeps(void **state)
{
	(void)state;
	struct fixture x;
	fx_init(&x, 0);
	struct ps__link *L = x.L;
	struct ps__conn *c = &L->data[1];
	uint8_t hdr[PS__FRAME_HDR], body[4096] = {0};
	ps__frame_hdr_nocrc(hdr, PS__F_PULL, 0, 1, sizeof body);
	/* nothing sent (the socket is full), nothing queued, no memory */
	fill_socket(c->fd);
	fail_reserve = true;
	assert_int_equal(data_write(L, c, hdr, body, sizeof body, true), -ENOMEM);
	fail_reserve = false;
	assert_false(atomic_load(&c->dead));
	assert_int_equal(c->out_len, 0);
	/* the connection still works: the next frame is queued whole */
	assert_int_equal(data_write(L, c, hdr, body, sizeof body, true), 0);
	assert_int_equal(c->out_len, PS__FRAME_HDR + sizeof body);
	/* an answer that cannot be queued breaks it: its requester must
	 * not wait for it */
	fail_reserve = true;
	c->out_at = c->out_len = 0; /* as if flushed; the socket is still full */
	free(c->out);
	c->out = NULL;
	c->out_cap = 0;
	assert_int_equal(data_write(L, c, hdr, body, sizeof body, false), PS_EHOSTDOWN);
	fail_reserve = false;
	assert_true(atomic_load(&c->dead));
	fx_free(&x);

	/* a partial send (the peer's buffer takes part of the frame): breaks */
	fx_init(&x, 0);
	L = x.L;
	c = &L->data[1];
	int small = 4096;
	setsockopt(c->fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
	static uint8_t big[1 << 20];
	ps__frame_hdr_nocrc(hdr, PS__F_PULL, 0, 1, sizeof big);
	fail_reserve = true;
	assert_int_equal(data_write(L, c, hdr, big, sizeof big, true), PS_EHOSTDOWN);
	fail_reserve = false;
	assert_true(atomic_load(&c->dead));
	fx_free(&x);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(direct_sweep_node0),
		cmocka_unit_test(direct_sweep_node1),
		cmocka_unit_test(direct_sweep_node2),
		cmocka_unit_test(direct_reroute_node0),
		cmocka_unit_test(direct_reroute_node1),
		cmocka_unit_test(direct_reroute_node2),
		cmocka_unit_test(abort_closes),
		cmocka_unit_test(enomem_keeps),
		cmocka_unit_test(data_fds_bad),
		cmocka_unit_test(in_buffer_shrinks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
