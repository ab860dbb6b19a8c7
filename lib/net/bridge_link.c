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

#define TAG_WORKERS 0x5745524b45525321ULL /* "!SREKREW" */
#define TAG_FINAL   0x4c414e49462d5350ULL /* "PS-FINAL" */

struct rpc {
	uint32_t seq;             /* (LK1) */
	bool busy;
	uint32_t next_free;
	struct ps__rgroup *g;
	float *out;               /* pull: the caller's values; push: NULL */
	const uint32_t *pos;      /* n positions in the caller's key array */
	uint32_t n, value_len;
	int host;                 /* where the request went */
	uint8_t **raw;            /* a call (ps__link_calls): where its reply goes */
	uint32_t *raw_len;
};

/*
 * One pull or push batch of a multi-host job, routed in rounds (LK5): a
 * round sends the keys held elsewhere (by the hosts their words name) and
 * does the keys held here; keys redirected by the host that got them, or
 * that moved away while this host did them, are routed again in the next
 * round, when every frame of this one is answered.
 */
struct ps__rgroup {
	_Atomic uint32_t left;    /* frames not answered yet; futex word (LK2) */
	_Atomic int32_t err;      /* first failure, relaxed: read after left */
	ps_table *t;
	const ps_key *keys;
	float *out;
	const float *in;
	uint32_t n;               /* keys in the batch */
	uint32_t *pos;            /* this round's positions in flight, by host */
	/* positions to route again and, beside each, the host a redirect
	 * named (-1: the key is moving, pause first; -2: re-read its word).
	 * Appended by the link thread (redirects) and by the caller (its
	 * own misses), indexes from nnext (relaxed: the entries are read
	 * after left's acquire, or by the thread that wrote them) */
	uint32_t *next;
	int32_t *hint;
	_Atomic uint32_t nnext;
	uint32_t *cur, *scratch1, *scratch2; /* the round's own lists */
	int32_t *curhint, *owner;
	uint64_t local, repl;     /* keys done by this node's arena, by replicas */
};

struct ps__link {
	ps_world *w;
	int fd;
	pthread_t thread;
	/* acquire/release: a reader that sees true sees the failures the link
	 * thread recorded before (LK4) */
	_Atomic bool dead;
	pthread_mutex_t wlock;    /* one frame written at a time */
	pthread_mutex_t lock;     /* the rpc table */
	struct rpc *rpc;
	uint32_t cap, free_head;
	/* barriers across hosts (one arrival per node at a time: bar_lock) */
	pthread_mutex_t bar_lock;
	uint64_t bar_gen;         /* last generation this node arrived at */
	/* release by the link thread after status[] is written; acquire by
	 * the waiter.  bar_seq is the futex word that wakes it. */
	_Atomic uint64_t released;
	_Atomic uint32_t bar_seq;
	/* relaxed: written before the release of released, read after its
	 * acquire (at [gen & 1]: the next generation cannot be released
	 * before this node arrives at it) */
	_Atomic int32_t bar_status[2];
	_Atomic uint64_t bar_tag[2];    /* same as bar_status: the released tag */
	/* CKPT from other hosts (node 0): the lowest sending host since the
	 * last take and its path; written by the link thread before it
	 * dispatches the RELEASE that follows (the stream is ordered), read by
	 * the poll after that release; the mutex orders them */
	pthread_mutex_t ckpt_lock;
	int ckpt_host;                  /* -1: none */
	char ckpt_path[PS__NOTE_MAX + 1];
	/* Tables other hosts may use, published by their creator just before
	 * the creation barrier over hosts (release), read by the link thread
	 * (acquire): the handle's fields written before are visible.  The
	 * socket that carries the barrier orders nothing for TSan. */
	_Atomic(ps_table *) tables[PS__MAX_TABLES];
	/* ps_barrier across hosts: arrivals of this process's threads */
	pthread_mutex_t wb_lock;
	uint64_t wb_arrivals;
	int wb_rc[2];
	/* link thread only */
	uint8_t *in;
	size_t in_len, in_cap;
	uint8_t *scratch;
	size_t scratch_cap;
};

/* ------------------------------------------------------------ helpers */


static int write_all(struct ps__link *L, const uint8_t *p, size_t n)
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

static void group_done(struct ps__rgroup *g, int err)
{
	int32_t zero = 0;
	if (err)
		atomic_compare_exchange_strong_explicit(&g->err, &zero, err, memory_order_relaxed,
							memory_order_relaxed);
	/* release: the values scattered before are visible to the waiter (LK2) */
	if (atomic_fetch_sub_explicit(&g->left, 1, memory_order_release) == 1)
		ps__futex_wake(&g->left, 1, false);
}

/* ------------------------------------------------------------ requests */

static int rpc_take(struct ps__link *L, uint32_t *slot)
{
	pthread_mutex_lock(&L->lock);
	if (L->free_head == UINT32_MAX) {
		uint32_t cap = L->cap ? L->cap * 2 : 256;
		if (cap > (1u << 24)) {
			pthread_mutex_unlock(&L->lock);
			return -ENOMEM;
		}
		struct rpc *r = realloc(L->rpc, cap * sizeof *r);
		if (!r) {
			pthread_mutex_unlock(&L->lock);
			return -ENOMEM;
		}
		for (uint32_t i = L->cap; i < cap; i++)
			r[i] = (struct rpc){.next_free = i + 1 < cap ? i + 1 : UINT32_MAX};
		L->rpc = r;
		L->free_head = L->cap;
		L->cap = cap;
	}
	*slot = L->free_head;
	L->free_head = L->rpc[*slot].next_free;
	L->rpc[*slot].busy = true;
	L->rpc[*slot].seq = (L->rpc[*slot].seq + 1) & 0xffffff;
	pthread_mutex_unlock(&L->lock);
	return 0;
}

/* Frees the slot named by req; false if req is stale or unknown (LK1). */
static bool rpc_claim(struct ps__link *L, uint64_t req, struct rpc *out)
{
	uint32_t slot = (uint32_t)req, seq = (uint32_t)(req >> 32) & 0xffffff;
	bool ok = false;
	pthread_mutex_lock(&L->lock);
	if (slot < L->cap && L->rpc[slot].busy && L->rpc[slot].seq == seq) {
		*out = L->rpc[slot];
		L->rpc[slot].busy = false;
		L->rpc[slot].next_free = L->free_head;
		L->free_head = slot;
		ok = true;
	}
	pthread_mutex_unlock(&L->lock);
	return ok;
}

/* Most keys of one frame, in both directions (the pull's reply too). */
static uint32_t keys_per_frame(uint32_t value_len)
{
	uint64_t by_req = (PS__FRAME_MAX - PS__KV_HDR) / (8ULL + 4ULL * value_len);
	uint64_t by_reply = (PS__FRAME_MAX - PS__REPLY_HDR) / (4ULL * value_len);
	uint64_t m = by_req < by_reply ? by_req : by_reply;
	return m > UINT32_MAX ? UINT32_MAX : (uint32_t)m;
}

/* Sends one frame of keys pos[0..n) (positions in keys) to host; type:
 * PULL/PUSH, or RPULL/RPUSH (replica.c). */
static int send_chunk_as(ps_table *t, struct ps__rgroup *g, int host, const ps_key *keys, const uint32_t *pos,
			 uint32_t n, float *out, const float *in, unsigned type)
{
	ps_world *w = t->w;
	struct ps__link *L = w->link;
	const uint32_t vlen = t->value_len;
	uint64_t body = ps__kv_size(in != NULL, n, vlen);
	uint8_t *f = ps__alloc(w, PS__FRAME_HDR + body);
	if (!f)
		return -ENOMEM;
	/* ps_assign_sync pushes through a handle whose rule is ASSIGN */
	struct ps__kv_req m = {.table = (uint32_t)t->id, .value_len = vlen, .num_keys = t->num_keys, .n = n,
			       .flags = (in && t->rule == PS_RULE_ASSIGN) ? PS__KV_ASSIGN : 0};
	uint8_t *b = f + PS__FRAME_HDR;
	ps__kv_enc_hdr(b, &m);
	uint8_t *kp = b + PS__KV_HDR;
	for (uint32_t i = 0; i < n; i++)
		memcpy(kp + 8 * (size_t)i, &keys[pos[i]], 8);
	if (in) {
		uint8_t *vp = kp + 8 * (size_t)n;
		for (uint32_t i = 0; i < n; i++)
			memcpy(vp + 4 * (size_t)i * vlen, in + (size_t)pos[i] * vlen, 4 * (size_t)vlen);
	}
	uint32_t slot;
	int rc = rpc_take(L, &slot);
	if (rc) {
		ps__free(w, f);
		return rc;
	}
	pthread_mutex_lock(&L->lock);
	struct rpc *r = &L->rpc[slot];
	r->g = g;
	r->out = out;
	r->pos = pos;
	r->n = n;
	r->value_len = vlen;
	r->host = host;
	r->raw = NULL;
	r->raw_len = NULL;
	uint64_t req = ((uint64_t)w->node << 56) | ((uint64_t)r->seq << 32) | slot;
	pthread_mutex_unlock(&L->lock);
	ps__frame_seal(f, type, (uint16_t)host, req, (uint32_t)body);
	/* acquire: a link thread that died before our registration swept
	 * without seeing it; then we see dead here (LK4) */
	rc = atomic_load_explicit(&L->dead, memory_order_acquire) ? PS_EHOSTDOWN
								  : write_all(L, f, PS__FRAME_HDR + body);
	ps__free(w, f);
	if (rc) {
		/* no reply will come: take the slot back, unless the link
		 * thread's failure sweep completed it already */
		struct rpc mine;
		return rpc_claim(L, req, &mine) ? rc : 0;
	}
	return 0;
}

static int send_chunk(ps_table *t, struct ps__rgroup *g, int host, const ps_key *keys, const uint32_t *pos,
		      uint32_t n, float *out, const float *in)
{
	return send_chunk_as(t, g, host, keys, pos, n, out, in, in ? PS__F_PUSH : PS__F_PULL);
}

/* Another round for position p (LK5); hint as in struct ps__rgroup. */
static void again(struct ps__rgroup *g, uint32_t p, int32_t hint)
{
	/* relaxed: see struct ps__rgroup */
	uint32_t i = atomic_fetch_add_explicit(&g->nnext, 1, memory_order_relaxed);
	g->next[i] = p;
	g->hint[i] = hint;
}

static struct ps__rgroup *group_new(ps_table *t, const ps_key *keys, size_t n, float *out, const float *in)
{
	ps_world *w = t->w;
	struct ps__rgroup *g = ps__alloc(w, sizeof *g + 7 * n * sizeof(uint32_t));
	if (!g)
		return NULL;
	uint32_t *a = (uint32_t *)(void *)(g + 1);
	*g = (struct ps__rgroup){.t = t, .keys = keys, .out = out, .in = in, .n = (uint32_t)n};
	g->pos = a;
	g->next = a + n;
	g->hint = (int32_t *)(a + 2 * n);
	g->cur = a + 3 * n;
	g->curhint = (int32_t *)(a + 4 * n);
	g->scratch1 = a + 5 * n;
	g->scratch2 = a + 6 * n;
	g->owner = (int32_t *)g->scratch2;
	atomic_init(&g->left, 0);
	atomic_init(&g->err, 0);
	atomic_init(&g->nnext, 0);
	return g;
}

/*
 * One routing round over list[0..m) (NULL: every position).  Keys whose
 * words name another host are sent there first, so the network overlaps
 * the keys done here; a MOVING word (this is the key's home and the key
 * is between hosts) waits for the next round.
 */
static void route_round(struct ps__rgroup *g, const uint32_t *list, size_t m)
{
	ps_table *t = g->t;
	ps_world *w = t->w;
	const int H = w->nhosts;
	uint32_t count[PS__MAX_HOSTS + 1];
	memset(count, 0, (size_t)(H + 1) * sizeof count[0]);
	uint32_t *lpos = g->scratch1;
	size_t nloc = 0;
	for (size_t j = 0; j < m; j++) {
		uint32_t p = list ? list[j] : (uint32_t)j;
		/* relaxed: a routing decision only; whoever serves the key
		 * re-reads its word with acquire, and a wrong guess comes back
		 * as a redirect or a miss */
		uint64_t lw = atomic_load_explicit(&t->loc[g->keys[p]], memory_order_relaxed);
		g->owner[j] = -1;
		if (PS__LOC_IS_MOVING(lw)) {
			again(g, p, -1);
		} else if (PS__LOC_IS_REMOTE(lw)) {
			g->owner[j] = PS__LOC_OWNER(lw);
			count[g->owner[j] + 1]++;
		} else {
			lpos[nloc++] = p;
		}
	}
	const uint32_t per = keys_per_frame(t->value_len);
	uint32_t frames = 0;
	for (int h = 0; h < H; h++) {
		frames += (count[h + 1] + per - 1) / per;
		count[h + 1] += count[h];
	}
	for (size_t j = 0; j < m; j++)
		if (g->owner[j] >= 0)
			g->pos[count[g->owner[j]]++] = list ? list[j] : (uint32_t)j;
	/* (LK2): every frame counted before the first is sent; relaxed: the
	 * link thread's decrements of the earlier rounds are all done */
	atomic_fetch_add_explicit(&g->left, frames, memory_order_relaxed);
	/* count[h] is now the end of host h's run */
	uint32_t at = 0;
	for (int h = 0; h < H; h++) {
		while (at < count[h]) {
			uint32_t k = count[h] - at < per ? count[h] - at : per;
			int rc = send_chunk(t, g, h, g->keys, g->pos + at, k, g->out, g->in);
			if (rc)
				group_done(g, rc);
			at += k;
		}
	}
	if (nloc) {
		uint32_t *miss = g->scratch2; /* owner[] is used up */
		size_t nmiss = 0;
		ps__local_keys(t, g->keys, lpos, nloc, g->out, g->in, miss, &nmiss, &g->local, &g->repl);
		for (size_t j = 0; j < nmiss; j++)
			again(g, miss[j], -2);
	}
}

int ps__route_batch(ps_table *t, const ps_key *keys, size_t n, float *out, const float *in,
		    struct ps__rgroup **async)
{
	ps_world *w = t->w;
	if (async)
		*async = NULL;
	if (n > UINT32_MAX / 8)
		return -E2BIG;
	/* a batch of keys all held here (the common case once localized):
	 * the one-host path, no group unless a key moves away under it */
	size_t remote = 0;
	for (size_t i = 0; i < n; i++) /* relaxed: a routing hint, as below */
		remote += PS__LOC_IS_REMOTE(atomic_load_explicit(&t->loc[keys[i]], memory_order_relaxed));
	if (remote == 0) {
		uint32_t small[256], *miss = n <= 256 ? small : ps__alloc(w, n * sizeof *miss);
		if (!miss)
			return -ENOMEM;
		size_t nmiss = 0;
		uint64_t local = 0, repl = 0;
		ps__local_keys(t, keys, NULL, n, out, in, miss, &nmiss, &local, &repl);
		ps__count_batch(w, t, keys, n, out != NULL, local, repl);
		struct ps__rgroup *g = nmiss ? group_new(t, keys, n, out, in) : NULL;
		for (size_t i = 0; g && i < nmiss; i++)
			again(g, miss[i], -2);
		if (miss != small)
			ps__free(w, miss);
		if (nmiss == 0)
			return 0;
		if (!g)
			return -ENOMEM;
		if (async) {
			*async = g;
			return 0;
		}
		return ps__remote_wait(w, g);
	}
	struct ps__rgroup *g = group_new(t, keys, n, out, in);
	if (!g)
		return -ENOMEM;
	route_round(g, NULL, n);
	ps__count_batch(w, t, keys, n, out != NULL, g->local, g->repl);
	/* acquire: pairs with group_done's release (LK2) */
	if (async && (atomic_load_explicit(&g->left, memory_order_acquire) || atomic_load(&g->nnext))) {
		*async = g;
		return 0;
	}
	return ps__remote_wait(w, g);
}

/* Waits until every frame of the round is answered (LK2). */
static void wait_round(ps_world *w, struct ps__rgroup *g)
{
	unsigned spins = 0;
	for (;;) {
		/* acquire: pairs with the release in group_done (LK2) */
		uint32_t left = atomic_load_explicit(&g->left, memory_order_acquire);
		if (left == 0)
			return;
		if (++spins < 512) {
			ps__cpu_relax();
			continue;
		}
		ps__wait_set(w, PS__WAIT_REQUEST, PS__OP_PULL, left);
		ps__futex_wait(&g->left, left, 10 * 1000 * 1000, false);
		ps__wait_clear(w);
	}
}

/* Moving keys wait at most this long in all before a batch fails: a move
 * takes a few round trips; this is a hang, not a slow move. */
#define MOVING_PATIENCE_NS (30ULL * 1000 * 1000 * 1000)

int ps__remote_wait(ps_world *w, struct ps__rgroup *g)
{
	ps_table *t = g->t;
	unsigned pause_us = 20;
	uint64_t t0 = 0;
	int rc;
	for (;;) {
		wait_round(w, g);
		rc = atomic_load_explicit(&g->err, memory_order_relaxed);
		uint32_t m = atomic_load_explicit(&g->nnext, memory_order_relaxed);
		if (rc || m == 0)
			break;
		bool pause = false;
		for (uint32_t i = 0; i < m; i++) {
			uint32_t p = g->next[i];
			int32_t h = g->hint[i];
			g->cur[i] = p;
			pause |= h == -1;
			if (h < 0 || h == w->host || ps__home_of(w, t->num_keys, g->keys[p]) == w->host)
				continue;
			/* a better guess for the next time (away from the home
			 * only: there the word is the directory).  relaxed: a
			 * hint; a word that is no longer this REMOTE one is kept */
			uint64_t lw = atomic_load_explicit(&t->loc[g->keys[p]], memory_order_relaxed);
			if (PS__LOC_IS_REMOTE(lw) && !PS__LOC_IS_MOVING(lw) && PS__LOC_OWNER(lw) != h)
				atomic_compare_exchange_strong_explicit(&t->loc[g->keys[p]], &lw,
									PS__LOC_MAKE_REMOTE(h), memory_order_relaxed,
									memory_order_relaxed);
		}
		atomic_store_explicit(&g->nnext, 0, memory_order_relaxed);
		if (pause) {
			uint64_t now = ps__now_ns();
			if (!t0)
				t0 = now;
			if (now - t0 > MOVING_PATIENCE_NS) {
				rc = -ETIMEDOUT;
				break;
			}
			usleep(pause_us);
			pause_us = pause_us < 1000 ? pause_us * 2 : 1000;
		}
		route_round(g, g->cur, m);
	}
	ps__free(w, g);
	return rc;
}

/* ------------------------------------------------------------ calls */

int ps__link_calls(ps_world *w, int n, uint8_t *const frames[], const uint32_t lens[], const int hosts[],
		   uint8_t *replies[], uint32_t rlens[])
{
	struct ps__link *L = w->link;
	struct ps__rgroup g = {0};
	atomic_init(&g.left, (uint32_t)n); /* (LK2) */
	atomic_init(&g.err, 0);
	for (int i = 0; i < n; i++) {
		replies[i] = NULL;
		rlens[i] = 0;
		uint32_t slot;
		int rc = rpc_take(L, &slot);
		if (rc) {
			group_done(&g, rc);
			continue;
		}
		pthread_mutex_lock(&L->lock);
		struct rpc *r = &L->rpc[slot];
		r->g = &g;
		r->out = NULL;
		r->pos = NULL;
		r->n = 0;
		r->host = hosts[i];
		r->raw = &replies[i];
		r->raw_len = &rlens[i];
		uint64_t req = ((uint64_t)w->node << 56) | ((uint64_t)r->seq << 32) | slot;
		pthread_mutex_unlock(&L->lock);
		ps__frame_seal(frames[i], PS__F_MOVE, (uint16_t)hosts[i], req, lens[i]);
		/* acquire: as in send_chunk (LK4) */
		rc = atomic_load_explicit(&L->dead, memory_order_acquire)
			     ? PS_EHOSTDOWN
			     : write_all(L, frames[i], PS__FRAME_HDR + lens[i]);
		struct rpc mine;
		if (rc && rpc_claim(L, req, &mine))
			group_done(&g, rc);
	}
	wait_round(w, &g);
	return atomic_load_explicit(&g.err, memory_order_relaxed);
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
	return write_all(L, f, sizeof f);
}

/* ------------------------------------------------------------ replica rounds */

int ps__remote_start_to(ps_table *t, const ps_key *keys, const uint16_t *hosts, size_t n, float *out,
			const float *in, unsigned type, struct ps__rgroup **gp)
{
	ps_world *w = t->w;
	const int H = w->nhosts;
	*gp = NULL;
	if (n == 0)
		return 0;
	if (n > UINT32_MAX)
		return -E2BIG;
	uint32_t *count = ps__alloc(w, (size_t)(H + 1) * sizeof *count);
	struct ps__rgroup *g = group_new(t, keys, n, out, in);
	if (!count || !g) {
		ps__free(w, count);
		ps__free(w, g);
		return -ENOMEM;
	}
	uint32_t *pos = g->pos;
	memset(count, 0, (size_t)(H + 1) * sizeof *count);
	for (size_t i = 0; i < n; i++)
		count[hosts[i] + 1]++;
	const uint32_t per = keys_per_frame(t->value_len);
	uint32_t frames = 0;
	for (int h = 0; h < H; h++) {
		frames += (count[h + 1] + per - 1) / per;
		count[h + 1] += count[h];
	}
	for (size_t i = 0; i < n; i++)
		pos[count[hosts[i]]++] = (uint32_t)i;
	atomic_init(&g->left, frames); /* (LK2): before the first frame is sent */
	*gp = g;
	uint32_t at = 0;
	for (int h = 0; h < H; h++) {
		while (at < count[h]) {
			uint32_t m = count[h] - at < per ? count[h] - at : per;
			int rc = send_chunk_as(t, g, h, keys, pos + at, m, out, in, type);
			if (rc)
				group_done(g, rc);
			at += m;
		}
	}
	ps__free(w, count);
	return 0;
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
	if (write_all(L, f, sizeof f) != 0)
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
	return write_all(w->link, f, PS__FRAME_HDR + len) ? PS_EHOSTDOWN : 0;
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

/* ------------------------------------------------------------ link thread */

static void on_reply(struct ps__link *L, const struct ps__frame *f)
{
	struct rpc r;
	if (!rpc_claim(L, f->req, &r))
		return; /* stale (LK1) */
	struct ps__reply m;
	int err = ps__reply_dec(f->body, f->len, &m);
	if (err == 0)
		err = m.status;
	if (err == 0 && r.raw) {
		err = PS_EFRAME_BODY; /* a call is answered by MOVE_REPLY */
	} else if (err == 0 && r.out) {
		if (m.nvals != (uint64_t)r.n * r.value_len) {
			err = PS_EFRAME_BODY;
		} else {
			const size_t row = 4 * (size_t)r.value_len;
			for (uint32_t i = 0; i < r.n; i++)
				memcpy(r.out + (size_t)r.pos[i] * r.value_len, m.vals + row * i, row);
		}
	}
	group_done(r.g, err);
}

/* Keys of a request of ours that the other host did not hold: they go to
 * the group's next round (LK5).  The REPLY follows on the same path. */
static void on_redirect(struct ps__link *L, const struct ps__frame *f)
{
	uint32_t slot = (uint32_t)f->req, seq = (uint32_t)(f->req >> 32) & 0xffffff;
	struct rpc r = {0};
	pthread_mutex_lock(&L->lock);
	bool ok = slot < L->cap && L->rpc[slot].busy && L->rpc[slot].seq == seq && !L->rpc[slot].raw;
	if (ok)
		r = L->rpc[slot];
	pthread_mutex_unlock(&L->lock);
	struct ps__redirect m;
	if (!ok || ps__redirect_dec(f->body, f->len, r.n, &m) != 0)
		return; /* stale, or malformed: its REPLY fails or completes it */
	for (uint32_t i = 0; i < m.n; i++) {
		uint32_t idx;
		int32_t host;
		uint64_t key;
		ps__redirect_get(&m, i, &idx, &host, &key);
		if (r.g->keys[r.pos[idx]] == key)
			again(r.g, r.pos[idx], host);
	}
}

/* A MOVE_REPLY: the body goes to the caller of ps__link_calls. */
static void on_move_reply(struct ps__link *L, const struct ps__frame *f)
{
	struct rpc r;
	if (!rpc_claim(L, f->req, &r))
		return; /* stale (LK1) */
	int err = PS_EFRAME_BODY;
	if (r.raw) {
		uint8_t *copy = malloc(f->len ? f->len : 1);
		err = copy ? 0 : -ENOMEM;
		if (copy) {
			memcpy(copy, f->body, f->len);
			*r.raw = copy;
			*r.raw_len = f->len;
		}
	}
	group_done(r.g, err);
}

static ps_table *table_by_id(struct ps__link *L, uint32_t id)
{
	if (id >= PS__MAX_TABLES)
		return NULL;
	/* acquire: pairs with the release in ps__link_table_created */
	return atomic_load_explicit(&L->tables[id], memory_order_acquire);
}

static void *scratch(struct ps__link *L, size_t n)
{
	if (ps__buf_reserve(&L->scratch, &L->scratch_cap, n) != 0)
		return NULL;
	return L->scratch;
}

/* Checks a request of another host against this host's table. */
static int check_request(ps_table *t, uint32_t value_len, uint64_t num_keys, uint32_t n, const uint8_t *kp,
			 ps_key *keys)
{
	if (!t)
		return PS_ETABLE;
	if (t->num_keys != num_keys || t->value_len != value_len)
		return PS_EMISMATCH;
	for (uint32_t i = 0; i < n; i++) {
		keys[i] = ps__get64(kp + 8 * (size_t)i);
		if (keys[i] >= t->num_keys)
			return PS_EKEY;
	}
	return 0;
}

/*
 * A PULL or PUSH of another host: the keys held here are done here; for
 * the others a REDIRECT names where to ask (the word's host; -1 while the
 * key is moving), then the REPLY (a pull's rows of redirected keys are
 * zero and overwritten by the requester's next round).
 */
static void on_request(struct ps__link *L, const struct ps__frame *f)
{
	ps_world *w = L->w;
	const bool push = f->type == PS__F_PUSH;
	struct ps__kv_req m;
	int rc = ps__kv_dec(f->body, f->len, push, &m);
	ps_table *t = rc ? NULL : table_by_id(L, m.table);
	size_t vals = (rc || push) ? 0 : (size_t)m.n * m.value_len;
	size_t keys_off = PS__ALIGN(PS__FRAME_HDR + PS__REPLY_HDR + 4 * vals, 16);
	size_t miss_off = keys_off + (rc ? 0 : 8 * (size_t)m.n);
	size_t upd_off = PS__ALIGN(miss_off + (rc ? 0 : 4 * (size_t)m.n), 16);
	size_t end = upd_off + (push && !rc ? 4 * (size_t)m.n * m.value_len : 0);
	size_t redir_off = PS__ALIGN(end, 16);
	size_t total = redir_off + (rc ? 0 : PS__FRAME_HDR + ps__redirect_size(m.n));
	uint8_t small[PS__FRAME_HDR + PS__REPLY_HDR];
	uint8_t *buf = scratch(L, total);
	if (!buf) {
		rc = -ENOMEM;
		buf = small;
	}
	ps_key *keys = (ps_key *)(void *)(buf + keys_off);
	if (rc == 0)
		rc = check_request(t, m.value_len, m.num_keys, m.n, m.keys, keys);
	size_t nmiss = 0;
	if (rc == 0) {
		struct ps_table shadow;
		ps_table *tt = t;
		if (push && (m.flags & PS__KV_ASSIGN)) { /* as ps_assign_sync */
			shadow = *t;
			shadow.rule = PS_RULE_ASSIGN;
			shadow.flags &= ~PS_HOGWILD;
			tt = &shadow;
		}
		float *out = push ? NULL : (float *)(void *)(buf + PS__FRAME_HDR + PS__REPLY_HDR);
		float *upd = NULL;
		if (push) {
			upd = (float *)(void *)(buf + upd_off);
			memcpy(upd, m.values, 4 * (size_t)m.n * m.value_len);
		}
		uint32_t *miss = (uint32_t *)(void *)(buf + miss_off);
		uint64_t local = 0, repl = 0;
		ps__local_keys(tt, keys, NULL, m.n, out, upd, miss, &nmiss, &local, &repl);
		ps__count_batch(w, t, keys, m.n, !push, local, repl);
		if (nmiss) {
			uint8_t *rf = buf + redir_off;
			ps__redirect_enc_hdr(rf + PS__FRAME_HDR, (uint32_t)nmiss);
			for (size_t i = 0; i < nmiss; i++) {
				ps_key k = keys[miss[i]];
				/* relaxed: a hint for the requester's next round */
				uint64_t lw = atomic_load_explicit(&t->loc[k], memory_order_relaxed);
				int32_t host = PS__LOC_IS_MOVING(lw)   ? -1
					       : PS__LOC_IS_REMOTE(lw) ? PS__LOC_OWNER(lw)
								       : w->host; /* back here */
				ps__redirect_put(rf + PS__FRAME_HDR, (uint32_t)i, miss[i], host, k);
				if (out)
					memset(out + (size_t)miss[i] * m.value_len, 0, 4 * (size_t)m.value_len);
			}
			uint32_t rlen = (uint32_t)ps__redirect_size((uint32_t)nmiss);
			ps__frame_seal(rf, PS__F_REDIRECT, f->host, f->req, rlen);
			write_all(L, rf, PS__FRAME_HDR + rlen);
		}
	}
	uint32_t nvals = (rc == 0) ? (uint32_t)vals : 0;
	ps__reply_enc_hdr(buf + PS__FRAME_HDR, rc, nvals);
	uint32_t len = PS__REPLY_HDR + 4 * nvals;
	ps__frame_seal(buf, PS__F_REPLY, f->host, f->req, len);
	write_all(L, buf, PS__FRAME_HDR + len);
}

/* A MOVE of another host (migrate.c executes it). */
static void on_move(struct ps__link *L, const struct ps__frame *f)
{
	struct ps__move_req m;
	int rc = ps__move_dec(f->body, f->len, &m);
	ps_table *t = rc ? NULL : table_by_id(L, m.table);
	if (rc == 0 && !t)
		rc = PS_ETABLE;
	if (rc == 0 && (t->num_keys != m.num_keys || t->value_len + t->state_len != m.nf))
		rc = PS_EMISMATCH;
	uint8_t small[PS__FRAME_HDR + PS__MOVE_REPLY_HDR];
	uint8_t *buf = rc ? NULL : scratch(L, PS__FRAME_HDR + ps__move_reply_size(m.n, m.nf, m.n));
	if (rc == 0 && !buf)
		rc = -ENOMEM;
	uint32_t len;
	if (rc == 0) {
		len = ps__migrate_serve(L->w, t, f->host, &m, buf + PS__FRAME_HDR);
	} else {
		buf = small;
		ps__move_reply_enc_hdr(buf + PS__FRAME_HDR, rc, 0, 0, 0);
		len = PS__MOVE_REPLY_HDR;
	}
	ps__frame_seal(buf, PS__F_MOVE_REPLY, f->host, f->req, len);
	write_all(L, buf, PS__FRAME_HDR + len);
}

/* RPULL / RPUSH: as on_request, on the keys' primaries (replica.c). */
static void on_primary_request(struct ps__link *L, const struct ps__frame *f)
{
	const bool push = f->type == PS__F_RPUSH;
	struct ps__kv_req m;
	int rc = ps__kv_dec(f->body, f->len, push, &m);
	ps_table *t = rc ? NULL : table_by_id(L, m.table);
	size_t vals = (rc || push) ? 0 : (size_t)m.n * m.value_len;
	size_t keys_off = PS__ALIGN(PS__FRAME_HDR + PS__REPLY_HDR + 4 * vals, 16);
	size_t upd_off = keys_off + (rc ? 0 : 8 * (size_t)m.n);
	uint8_t small[PS__FRAME_HDR + PS__REPLY_HDR];
	uint8_t *buf = scratch(L, upd_off + (push && !rc ? 4 * (size_t)m.n * m.value_len : 0));
	if (!buf) {
		rc = -ENOMEM;
		buf = small;
	}
	if (rc == 0)
		rc = check_request(t, m.value_len, m.num_keys, m.n, m.keys, (ps_key *)(void *)(buf + keys_off));
	if (rc == 0) {
		ps_key *keys = (ps_key *)(void *)(buf + keys_off);
		float *upd = NULL;
		if (push) {
			upd = (float *)(void *)(buf + upd_off);
			memcpy(upd, m.values, 4 * (size_t)m.n * m.value_len);
		}
		rc = ps__replica_serve(t, keys, m.n, push ? NULL : (float *)(void *)(buf + PS__FRAME_HDR + PS__REPLY_HDR),
				       upd);
	}
	uint32_t nvals = (rc == 0) ? (uint32_t)vals : 0;
	ps__reply_enc_hdr(buf + PS__FRAME_HDR, rc, nvals);
	uint32_t len = PS__REPLY_HDR + 4 * nvals;
	ps__frame_seal(buf, PS__F_REPLY, f->host, f->req, len);
	write_all(L, buf, PS__FRAME_HDR + len);
}

static void fail_inflight(struct ps__link *L, int host);

static void dispatch(struct ps__link *L, const struct ps__frame *f)
{
	switch (f->type) {
	case PS__F_REPLY:
		on_reply(L, f);
		break;
	case PS__F_REDIRECT:
		on_redirect(L, f);
		break;
	case PS__F_MOVE_REPLY:
		on_move_reply(L, f);
		break;
	case PS__F_PULL:
	case PS__F_PUSH:
		on_request(L, f);
		break;
	case PS__F_MOVE:
		on_move(L, f);
		break;
	case PS__F_RPULL:
	case PS__F_RPUSH:
		on_primary_request(L, f);
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
		if (rpc_claim(L, req, &r))
			group_done(r.g, PS_EHOSTDOWN);
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
