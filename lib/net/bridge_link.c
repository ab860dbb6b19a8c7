/*
 * bridge_link.c - a node's side of the multi-host bridge: its link (a Unix
 * stream socket inherited from psrun, PSMEM_LINK_FD) and the link thread
 * that serves it.
 *
 * Keys are range-partitioned over hosts: host h is the home of keys
 * [ceil(h K / H), ceil((h+1) K / H)), placed over its nodes as in a
 * one-host job; the location word of every other key is REMOTE with a
 * host in its owner field (at creation the home; keys move later:
 * migrate.c, and docs/DESIGN.md "Keys and routing").
 *
 * Callers (kv.c's routing hook):
 *   ps__route_batch   groups the batch's REMOTE keys per host and sends one
 *                     PULL/PUSH frame per host (split only at the frame
 *                     size limit), then returns: the local keys are done
 *                     while the frames travel;
 *   ps__remote_wait   waits for the replies (ps_wait, or at the end of a
 *                     synchronous call).
 * The link thread:
 *   REPLY             scatters a pull's values into the caller's buffer,
 *                     counts the group down, wakes the waiter;
 *   PULL/PUSH         executes a request of another host on this host's
 *                     keys (a registered reader thread of this node, so
 *                     grace periods cover it) and answers;
 *   CLOCK             another host's slowest clock, into the segment
 *                     (clock.c);
 *   ABORT             host f->host is gone: its requests in flight fail,
 *                     clock waiters waiting for it return PS_EHOSTDOWN.
 *   RELEASE           completes a barrier across hosts (with its tag: the
 *                     minimum of a PS__BAR_MIN barrier);
 *   CKPT              (node 0) a checkpoint asked for on another host: the
 *                     path is kept for checkpoint.c's poll (lowest host
 *                     first);
 *
 * Invariants
 *   (LK1) A request id is (node << 56) | (seq << 32) | slot: the bridges
 *        route replies by the node byte, and a reply whose seq does not
 *        match its slot's is stale and ignored, so a slot can be reused.
 *   (LK2) A group's counter is set to its number of frames before the first
 *        is sent; each reply (or failure) decrements it with release after
 *        writing the values, and the waiter reads them after an acquire
 *        load of 0.
 *   (LK3) One node's requests to a host are executed by one node there, in
 *        order (bridge.c), so a worker's synchronous operations on a key
 *        keep their order across hosts.
 *   (LK4) When the link breaks (psrun gone), every request in flight and
 *        every barrier waiter completes with PS_EHOSTDOWN; when the bridge
 *        loses a peer host, the requests that went there do: nothing hangs.
 *   (LK5) Each key of a batch is served exactly once: a round reads its
 *        word once and either sends it or does it here; a host that does
 *        not hold it (REDIRECT) or a word that changed under the local
 *        pass (a miss) sends it to the next round, never both.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include <urcu/urcu-memb.h>

#include "barrier.h"
#include "clock.h"
#include "kv.h"
#include "link.h"
#include "replica.h"
#include "table.h"
#include "link_in.h"

#define TAG_WORKERS 0x5745524b45525321ULL /* "!SREKREW" */
#define TAG_FINAL   0x4c414e49462d5350ULL /* "PS-FINAL" */

/* ------------------------------------------------------------ helpers */

int ps__lk_write_all(struct ps__link *L, const uint8_t *p, size_t n)
{
	int rc = 0;
	pthread_mutex_lock(&L->wlock);
	while (n > 0) {
		ssize_t r = send(L->fd, p, n, MSG_NOSIGNAL);
		if (r > 0) {
			p += r;
			n -= (size_t)r;
		} else if (r < 0 && errno == EINTR) {
			continue;
		} else {
			rc = PS_EHOSTDOWN;
			break;
		}
	}
	pthread_mutex_unlock(&L->wlock);
	return rc;
}

void ps__lk_group_done(struct ps__rgroup *g, int err)
{
	int32_t zero = 0;
	if (err)
		atomic_compare_exchange_strong_explicit(&g->err, &zero, err, memory_order_relaxed,
							memory_order_relaxed);
	/* release: the values scattered before are visible to the waiter (LK2) */
	if (atomic_fetch_sub_explicit(&g->left, 1, memory_order_release) == 1)
		ps__futex_wake(&g->left, 1, false);
}

/* ------------------------------------------------------------ clocks */

bool ps__link_down(ps_world *w)
{
	/* acquire: pairs with link_broken's release */
	return !w->link || atomic_load_explicit(&w->link->dead, memory_order_acquire);
}

int ps__link_send_clock(ps_world *w, uint64_t min, uint64_t cfg)
{
	struct ps__link *L = w->link;
	uint8_t f[PS__FRAME_HDR + PS__CLOCK_SIZE];
	struct ps__clock_msg m = {.min = min, .cfg = cfg};
	ps__clock_enc(f + PS__FRAME_HDR, &m);
	ps__frame_seal(f, PS__F_CLOCK, (uint16_t)w->host, 0, PS__CLOCK_SIZE);
	/* acquire: see send_chunk */
	if (!L || atomic_load_explicit(&L->dead, memory_order_acquire))
		return PS_EHOSTDOWN;
	return ps__lk_write_all(L, f, sizeof f);
}

/* ------------------------------------------------------------ barriers */

static int link_barrier_tag(ps_world *w, uint64_t tag, uint32_t flags, uint64_t *out)
{
	struct ps__link *L = w->link;
	pthread_mutex_lock(&L->bar_lock);
	uint64_t gen = ++L->bar_gen;
	pthread_mutex_unlock(&L->bar_lock);
	uint8_t f[PS__FRAME_HDR + PS__BARRIER_SIZE];
	struct ps__barrier_msg m = {.gen = gen, .tag = tag, .flags = flags};
	ps__barrier_enc(f + PS__FRAME_HDR, &m);
	ps__frame_seal(f, PS__F_BARRIER, (uint16_t)w->host, 0, PS__BARRIER_SIZE);
	if (ps__lk_write_all(L, f, sizeof f) != 0)
		return PS_EHOSTDOWN;
	ps__wait_set(w, PS__WAIT_BARRIER, gen, 2);
	for (;;) {
		uint32_t seq = atomic_load_explicit(&L->bar_seq, memory_order_acquire);
		/* acquire: pairs with the release in on_release */
		if (atomic_load_explicit(&L->released, memory_order_acquire) >= gen)
			break;
		if (atomic_load_explicit(&L->dead, memory_order_acquire)) {
			ps__wait_clear(w);
			return PS_EHOSTDOWN;
		}
		ps__futex_wait(&L->bar_seq, seq, 100 * 1000 * 1000, false);
	}
	ps__wait_clear(w);
	if (out)
		*out = atomic_load_explicit(&L->bar_tag[gen & 1], memory_order_relaxed);
	return atomic_load_explicit(&L->bar_status[gen & 1], memory_order_relaxed);
}

static int link_barrier(ps_world *w, uint64_t tag, uint32_t flags)
{
	return link_barrier_tag(w, tag, flags, NULL);
}

int ps__link_barrier_min(ps_world *w, uint64_t *tag)
{
	return link_barrier_tag(w, *tag, PS__BAR_MIN, tag);
}

int ps__link_ckpt_send(ps_world *w, const char *path)
{
	uint8_t f[PS__FRAME_HDR + 6 + PS__NOTE_MAX];
	if (strlen(path) > PS__NOTE_MAX)
		return -ENAMETOOLONG;
	uint32_t len = ps__note_enc(f + PS__FRAME_HDR, 0, path);
	ps__frame_seal(f, PS__F_CKPT, (uint16_t)w->host, 0, len);
	return ps__lk_write_all(w->link, f, PS__FRAME_HDR + len) ? PS_EHOSTDOWN : 0;
}

int ps__link_ckpt_take(ps_world *w, int host, char *path, size_t len)
{
	struct ps__link *L = w->link;
	pthread_mutex_lock(&L->ckpt_lock);
	int h = L->ckpt_host;
	if (h == host)
		snprintf(path, len, "%s", L->ckpt_path);
	L->ckpt_host = -1;
	pthread_mutex_unlock(&L->ckpt_lock);
	return h == host ? 0 : -ENOENT;
}

static void on_ckpt(struct ps__link *L, const struct ps__frame *f)
{
	struct ps__note n;
	if (ps__note_dec(f->body, f->len, &n) != 0)
		return;
	pthread_mutex_lock(&L->ckpt_lock);
	if (L->ckpt_host < 0 || f->host < L->ckpt_host) {
		L->ckpt_host = f->host;
		snprintf(L->ckpt_path, sizeof L->ckpt_path, "%s", n.text);
	}
	pthread_mutex_unlock(&L->ckpt_lock);
}

static void on_release(struct ps__link *L, const struct ps__barrier_msg *m)
{
	atomic_store_explicit(&L->bar_status[m->gen & 1], m->status, memory_order_relaxed);
	/* relaxed: published by the release of released below */
	atomic_store_explicit(&L->bar_tag[m->gen & 1], m->tag, memory_order_relaxed);
	/* release: the status is visible to whoever sees the generation */
	atomic_store_explicit(&L->released, m->gen, memory_order_release);
	atomic_fetch_add_explicit(&L->bar_seq, 1, memory_order_release);
	ps__futex_wake(&L->bar_seq, INT_MAX, false);
}

int ps__link_table_created(ps_world *w, ps_table *t, int id, const struct ps__tdesc *d, int local_rc)
{
	uint64_t tag = ps__mix64((uint64_t)id ^ ps__mix64(d->num_keys ^ ps__mix64(d->value_len)));
	tag = ps__mix64(tag ^ ((uint64_t)d->flags << 32 | d->placement << 8 | d->init));
	tag = ps__mix64(tag ^ d->seed);
	uint32_t a;
	memcpy(&a, &d->init_a, sizeof a);
	tag = ps__mix64(tag ^ a);
	/* update rule (with its fingerprint and parameters) and replication */
	tag = ps__mix64(tag ^ d->rule ^ ((uint64_t)d->repl_max << 32));
	tag = ps__mix64(tag ^ d->rule_fp);
	uint64_t rp[2];
	memcpy(rp, d->rule_params, sizeof rp);
	tag = ps__mix64(tag ^ rp[0] ^ ps__mix64(rp[1]));
	uint64_t rr;
	memcpy(&rr, &d->repl_rate, sizeof rr);
	tag = ps__mix64(tag ^ rr);
	/* a node that failed disagrees with everyone: all fail together */
	if (local_rc)
		tag = ps__mix64(tag ^ (uint64_t)(uint32_t)local_rc ^ ((uint64_t)w->host << 32) ^ (uint64_t)w->node);
	/* requests of other hosts may come as soon as the barrier completes,
	 * before this thread wakes up: publish first (w->tables[id] is set
	 * only after this barrier). */
	atomic_store_explicit(&w->link->tables[id], local_rc ? NULL : t, memory_order_release);
	int rc = link_barrier(w, tag, 0);
	if (rc) /* failed everywhere: nobody will ask; the handle is freed */
		atomic_store_explicit(&w->link->tables[id], NULL, memory_order_release);
	return rc;
}

int ps__link_barrier_workers(ps_world *w)
{
	struct ps__link *L = w->link;
	const uint64_t T = (uint64_t)(w->nthreads > 0 ? w->nthreads : 1);
	pthread_mutex_lock(&L->wb_lock);
	uint64_t k = L->wb_arrivals++;
	pthread_mutex_unlock(&L->wb_lock);
	uint64_t gen = k / T;
	if (k % T == 0) {
		/* the first thread of this process to get here speaks for it:
		 * every thread of every local node has arrived (the local
		 * barrier before), so this node has */
		int rc = link_barrier(w, TAG_WORKERS, 0);
		pthread_mutex_lock(&L->wb_lock);
		L->wb_rc[gen & 1] = rc;
		pthread_mutex_unlock(&L->wb_lock);
	}
	int rc = ps__barrier_wait(w, &w->seg.hdr->workers);
	pthread_mutex_lock(&L->wb_lock);
	if (rc == 0)
		rc = L->wb_rc[gen & 1];
	pthread_mutex_unlock(&L->wb_lock);
	return rc;
}

static void fail_inflight(struct ps__link *L, int host);

static void dispatch(struct ps__link *L, const struct ps__frame *f)
{
	switch (f->type) {
	case PS__F_REPLY:
		ps__lk_on_reply(L, f);
		break;
	case PS__F_REDIRECT:
		ps__lk_on_redirect(L, f);
		break;
	case PS__F_MOVE_REPLY:
		ps__lk_on_move_reply(L, f);
		break;
	case PS__F_PULL:
	case PS__F_PUSH:
		ps__lk_on_request(L, f);
		break;
	case PS__F_MOVE:
		ps__lk_on_move(L, f);
		break;
	case PS__F_RPULL:
	case PS__F_RPUSH:
		ps__lk_on_primary_request(L, f);
		break;
	case PS__F_RELEASE: {
		struct ps__barrier_msg m;
		if (ps__barrier_dec(f->body, f->len, &m) == 0)
			on_release(L, &m);
		break;
	}
	case PS__F_CLOCK: {
		struct ps__clock_msg m;
		if (f->host < L->w->nhosts && f->host != L->w->host && ps__clock_dec(f->body, f->len, &m) == 0)
			ps__clock_heard(L->w, f->host, m.min, m.cfg);
		break;
	}
	case PS__F_CKPT:
		on_ckpt(L, f);
		break;
	case PS__F_ABORT:
		/* the bridge lost host f->host: what went there is lost too */
		fail_inflight(L, f->host);
		/* after its last CLOCK on this link (clock.c CLH3) */
		if (f->host < L->w->nhosts)
			ps__clock_host_gone(L->w, f->host);
		break;
	default:
		break; /* nothing else is sent to a node */
	}
}

/* Fails every request in flight to host (all hosts: -1) with
 * PS_EHOSTDOWN: no reply will come for them (LK4). */
static void fail_inflight(struct ps__link *L, int host)
{
	for (uint32_t from = 0;;) {
		struct rpc r;
		pthread_mutex_lock(&L->lock);
		uint32_t slot = from;
		while (slot < L->cap && !(L->rpc[slot].busy && (host < 0 || L->rpc[slot].host == host)))
			slot++;
		uint64_t req = slot < L->cap ? ((uint64_t)L->rpc[slot].seq << 32) | slot : 0;
		pthread_mutex_unlock(&L->lock);
		if (slot >= L->cap)
			return;
		if (ps__lk_rpc_claim(L, req, &r))
			ps__lk_group_done(r.g, PS_EHOSTDOWN);
		from = slot + 1;
	}
}

/* The bridge is gone: fail everything in flight (LK4). */
static void link_broken(struct ps__link *L)
{
	/* release: pairs with the acquire loads of waiters */
	atomic_store_explicit(&L->dead, true, memory_order_release);
	fail_inflight(L, -1);
	atomic_fetch_add_explicit(&L->bar_seq, 1, memory_order_release);
	ps__futex_wake(&L->bar_seq, INT_MAX, false);
	ps__clock_host_gone(L->w, -1); /* no other host's clock can reach us now */
}

static void *link_main(void *arg)
{
	struct ps__link *L = arg;
	ps__thread_enter(L->w); /* executes requests: a reader of this node */
	for (;;) {
		/* room for the frame being received (its header says how big),
		 * at least 256 KiB: one allocation for a large frame */
		size_t want = L->in_len + (256u << 10);
		if (L->in_len >= PS__FRAME_HDR && want < PS__FRAME_HDR + (size_t)ps__get32(L->in + 8))
			want = PS__FRAME_HDR + (size_t)ps__get32(L->in + 8);
		if (ps__buf_reserve(&L->in, &L->in_cap, want) != 0)
			break;
		ssize_t r = recv(L->fd, L->in + L->in_len, L->in_cap - L->in_len, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		L->in_len += (size_t)r;
		size_t at = 0;
		long n;
		struct ps__frame f;
		while ((n = ps__frame_parse(L->in + at, L->in_len - at, PS__FRAME_MAX, false, false, &f)) > 0) {
			dispatch(L, &f);
			at += (size_t)n;
		}
		if (n < 0) {
			fprintf(stderr, "psmem: node %d: malformed frame on the bridge link: %s\n", L->w->node,
				ps_strerror((int)n));
			break;
		}
		memmove(L->in, L->in + at, L->in_len - at);
		L->in_len -= at;
	}
	link_broken(L);
	return NULL;
}

int ps__link_start(ps_world *w)
{
	const char *e = getenv("PSMEM_LINK_FD");
	char *end;
	long fd = e ? strtol(e, &end, 10) : -1;
	struct stat st;
	if (!e || *end || fd < 0 || fd > INT_MAX || fstat((int)fd, &st) != 0 || !S_ISSOCK(st.st_mode))
		return PS_EHOSTDOWN; /* a multi-host segment without its link */
	fcntl((int)fd, F_SETFD, FD_CLOEXEC);
	struct ps__link *L = calloc(1, sizeof *L);
	if (L && !(L->filt = ps__filter_new())) {
		free(L);
		L = NULL;
	}
	if (!L)
		return -ENOMEM;
	L->w = w;
	L->fd = (int)fd;
	L->free_head = UINT32_MAX;
	pthread_mutex_init(&L->wlock, NULL);
	pthread_mutex_init(&L->lock, NULL);
	pthread_mutex_init(&L->bar_lock, NULL);
	pthread_mutex_init(&L->wb_lock, NULL);
	pthread_mutex_init(&L->ckpt_lock, NULL);
	L->ckpt_host = -1;
	w->link = L;
	/* plain stores, as w->link: ps_init has not returned, so no table
	 * exists and no thread of this process calls through w->net yet */
	w->net = &ps__link_ops;
	if (pthread_create(&L->thread, NULL, link_main, L) != 0) {
		w->link = NULL;
		w->net = NULL;
		ps__filter_free(L->filt);
		free(L);
		return -EAGAIN;
	}
	return 0;
}

void ps__link_stop(ps_world *w)
{
	struct ps__link *L = w->link;
	if (!L)
		return;
	/* every node of every host passes this before any leaves, so no
	 * request can reach a node that is gone */
	link_barrier(w, TAG_FINAL, PS__BAR_FINAL);
	shutdown(L->fd, SHUT_RDWR);
	pthread_join(L->thread, NULL);
	close(L->fd);
	w->link = NULL;
	w->net = NULL;
	free(L->rpc);
	free(L->in);
	free(L->scratch);
	ps__filter_free(L->filt);
	pthread_mutex_destroy(&L->wlock);
	pthread_mutex_destroy(&L->lock);
	pthread_mutex_destroy(&L->bar_lock);
	pthread_mutex_destroy(&L->wb_lock);
	pthread_mutex_destroy(&L->ckpt_lock);
	free(L);
}

/* ------------------------------------------------------------ the net layer's table */

static int replica_start(ps_table *t, const ps_key *keys, const uint16_t *hosts, size_t n, float *out,
			 const float *in, bool push, struct ps__rgroup **g)
{
	return ps__remote_start_to(t, keys, hosts, n, out, in, push ? PS__F_RPUSH : PS__F_RPULL, g);
}

const struct ps__net_ops ps__link_ops = {
	.route_batch = ps__route_batch,
	.remote_wait = ps__remote_wait,
	.migrate_in = ps__migrate_in,
	.replica_start = replica_start,
	.table_created = ps__link_table_created,
	.barrier_workers = ps__link_barrier_workers,
	.send_clock = ps__link_send_clock,
	.link_down = ps__link_down,
	.barrier_min = ps__link_barrier_min,
	.ckpt_send = ps__link_ckpt_send,
	.ckpt_take = ps__link_ckpt_take,
};
