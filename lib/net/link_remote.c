/*
 * link_remote.c - a node's requests to other hosts through its link:
 * routing groups (ps__rgroup) of pulls and pushes, redirects until keys
 * land (LK5), waiting for them, synchronous calls (MOVE), RPULL/RPUSH of
 * remote replica rounds, and the replies that complete them.
 * Invariants: bridge_link.c.
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
bool ps__lk_rpc_claim(struct ps__link *L, uint64_t req, struct rpc *out)
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
	uint8_t *f = ps__alloc(w, PS__FRAME_HDR + body + 8); /* + 8: a key-list id (filter.h) */
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
	if (type == PS__F_PULL || type == PS__F_PUSH)
		body = ps__filter_req_out(L->filt, (uint32_t)t->id, t->flags, host, b, (uint32_t)body);
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
	r->keyed = type == PS__F_PULL || type == PS__F_PUSH;
	uint64_t req = ((uint64_t)w->node << 56) | ((uint64_t)r->seq << 32) | slot;
	pthread_mutex_unlock(&L->lock);
	rc = ps__lk_send(L, host, f, type, req, (uint32_t)body);
	ps__free(w, f);
	if (rc) {
		/* no reply will come: take the slot back, unless the link
		 * thread's failure sweep completed it already */
		struct rpc mine;
		return ps__lk_rpc_claim(L, req, &mine) ? rc : 0;
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

void ps__lk_again(struct ps__rgroup *g, uint32_t p, int32_t hint)
{
	again(g, p, hint);
}

/* A failure of the whole group that no frame carries (relaxed: see
 * struct ps__rgroup) */
static void group_fail(struct ps__rgroup *g, int err)
{
	int32_t zero = 0;
	atomic_compare_exchange_strong_explicit(&g->err, &zero, err, memory_order_relaxed, memory_order_relaxed);
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
			int h = PS__LOC_OWNER(lw);
			if (h < H && ps__host_lost(w, h)) {
				/* its keys are at its backup host now (BK3) */
				int b = ps__backup_host(w, h);
				if (b < 0) {
					group_fail(g, PS_EHOSTDOWN); /* no host left to ask */
					continue;
				}
				int home = ps__home_of(w, t->num_keys, g->keys[p]);
				if (b == w->host) {
					/* promotion under way here: pause; done: the
					 * word read above may predate it (re-read), or
					 * this host had no copy: at the home (the
					 * directory named h) fail; elsewhere the word
					 * was a hint, maybe stale: ask the home */
					if (!ps__host_promoted(w, h))
						again(g, p, -1);
					else if (atomic_load_explicit(&t->loc[g->keys[p]], memory_order_acquire) != lw)
						again(g, p, -2);
					else if (home != w->host && !ps__host_lost(w, home))
						b = home;
					else
						group_fail(g, PS_EHOSTDOWN);
					if (b == w->host)
						continue;
				}
				h = b;
			}
			g->owner[j] = h;
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
			if (rc == PS_EHOSTDOWN && (w->link->bk || ps__host_lost(w, h)) && !ps__link_down(w)) {
				/* continue mode: its data connection ended, the
				 * bridge has not said yet whether host h is lost
				 * (then its keys go to the backup host), or host h
				 * left (drain.c): pause, then route again */
				for (uint32_t i = 0; i < k; i++)
					again(g, g->pos[at + i], -1);
				ps__lk_group_done(g, 0);
			} else if (rc) {
				ps__lk_group_done(g, rc);
			}
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
	/* acquire: pairs with ps__lk_group_done's release (LK2) */
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
		/* acquire: pairs with the release in ps__lk_group_done (LK2) */
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
	unsigned pause_us = 20, rounds = 0;
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
			if (h < 0 || h == w->host || ps__home_now(w, t->num_keys, g->keys[p]) == w->host)
				continue;
			/* nor at b(home) where the key's home left by agreement
			 * (EL7): there the word is the directory from the
			 * drain's TAKEDIR on, before this host saw the LEFT
			 * (relaxed: set at the agreement, long before; a hint
			 * skipped here costs a redirect, and a TAKEDIR replaces
			 * any REMOTE word) */
			int hh = ps__home_of(w, t->num_keys, g->keys[p]);
			if (hh < PS__MAX_CLOCK_HOSTS &&
			    atomic_load_explicit(&w->seg.hdr->clocks.hmember[hh], memory_order_relaxed) == PS__HOST_LEFT &&
			    ps__backup_host(w, hh) == w->host)
				continue;
			/* nor a hint naming a host that left (from a host that had
			 * not seen its LEFT): written after this host's rewrite
			 * (drain.c), it would name the leaver for ever */
			if (h < PS__MAX_CLOCK_HOSTS &&
			    atomic_load_explicit(&w->seg.hdr->clocks.hmember[h], memory_order_relaxed) == PS__HOST_LEFT)
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
		/* a redirect chain has at most two hops (MG3): more rounds than
		 * that, and a few moves, without a pause are a loop - two hosts
		 * naming each other for a lost host's key neither holds (the
		 * directory points at the backup host, which has no copy: DESIGN
		 * "Losing a host").  Pausing bounds it by the patience below. */
		pause |= ++rounds > 8;
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

/* A lost host's verdict comes this long at most after its data connection
 * ended: an EOF's in milliseconds, a silent host's at the 3 s heartbeat
 * bound; past it the call fails as before. */
#define VERDICT_PATIENCE_NS (10ULL * 1000 * 1000 * 1000)

/* Host h still counts as present (ps_hosts_alive's rule) */
static bool host_present(ps_world *w, int h)
{
	if (h < 0 || h >= PS__MAX_CLOCK_HOSTS)
		return false;
	const struct ps__clocks *ck = &w->seg.hdr->clocks;
	/* acquire: as in ps_hosts_alive, after the link thread's marks */
	return atomic_load_explicit(&ck->hmember[h], memory_order_acquire) == PS__HOST_MEMBER &&
	       atomic_load_explicit(&ck->hgone[h], memory_order_acquire) < 2;
}

/*
 * (LK4 under --on-host-failure continue) A call to host h got no reply and
 * failed PS_EHOSTDOWN: its data connection ended, and a send after that
 * fails at once, before the bridge's verdict on h.  The caller waits for
 * the verdict (h marked lost or gone, or the link down; bounded), so that
 * whoever sees the PS_EHOSTDOWN also sees h gone in ps_hosts_alive: a
 * localize is a hint whose failure for a lost host apps skip (mf), and
 * one that fails while the host still counts as present looks like a
 * real error.  Before, mf --policy localize died ("localize: a peer host
 * failed or left the job") when a move began in the milliseconds between
 * the EOF and the drop.  Calls run on a mover's or drainer's thread,
 * never on a link thread (MG4).
 */
static void await_verdict(ps_world *w, int h)
{
	uint64_t until = ps__now_ns() + VERDICT_PATIENCE_NS;
	while (!ps__link_down(w) && host_present(w, h) && ps__now_ns() < until)
		usleep(1000);
}

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
			ps__lk_group_done(&g, rc);
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
		r->keyed = false;
		uint64_t req = ((uint64_t)w->node << 56) | ((uint64_t)r->seq << 32) | slot;
		pthread_mutex_unlock(&L->lock);
		rc = ps__lk_send(L, hosts[i], frames[i], PS__F_MOVE, req, lens[i]);
		struct rpc mine;
		if (rc && ps__lk_rpc_claim(L, req, &mine))
			ps__lk_group_done(&g, rc);
	}
	wait_round(w, &g);
	int err = atomic_load_explicit(&g.err, memory_order_relaxed);
	for (int i = 0; err == PS_EHOSTDOWN && L->bk && i < n; i++)
		if (!replies[i])
			await_verdict(w, hosts[i]);
	return err;
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
				ps__lk_group_done(g, rc);
			at += m;
		}
	}
	ps__free(w, count);
	return 0;
}

/* ------------------------------------------------------------ link thread */

void ps__lk_on_reply(struct ps__link *L, const struct ps__frame *f)
{
	struct rpc r;
	if (!ps__lk_rpc_claim(L, f->req, &r))
		return; /* stale (LK1) */
	struct ps__reply m;
	int err = ps__reply_dec(f->body, f->len, &m);
	if (err == 0)
		err = m.status ? m.status : ps__filter_reply_in(L->filt, &m);
	if (err == PS__EKCMISS && r.keyed && !r.raw && r.pos) {
		/* our key-list id was not held there: nothing was done; the
		 * keys go to the next round, with their list (FL2) */
		ps__filter_forget(L->filt, (uint32_t)r.g->t->id, r.host, r.g->keys, r.pos, r.n);
		for (uint32_t i = 0; i < r.n; i++)
			again(r.g, r.pos[i], -2);
		err = 0;
	} else if (err == PS__EKCMISS) {
		/* private to PULL/PUSH of keys (FL2): an RPULL/RPUSH or MOVE
		 * answered so is a peer's error, never the caller's result */
		err = PS_EFRAME_BODY;
	} else if (err == 0 && r.raw) {
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
	ps__lk_group_done(r.g, err);
}

/* Keys of a request of ours that the other host did not hold: they go to
 * the group's next round (LK5).  The REPLY follows on the same path. */
void ps__lk_on_redirect(struct ps__link *L, const struct ps__frame *f)
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
		if (r.g->keys[r.pos[idx]] != key)
			continue;
		/* a lost host named by a host that did not know yet: route it
		 * again after a pause (to the backup host, BK3); a backup host
		 * without a copy answers PS_EHOSTDOWN itself (link_serve.c) */
		if (host >= 0 && host < L->w->nhosts && ps__host_lost(L->w, host)) {
			int bb = ps__backup_host(L->w, host); /* BK3, BK9 */
			host = bb >= 0 && bb != L->w->host ? bb : -1;
		}
		again(r.g, r.pos[idx], host);
	}
}

/* A MOVE_REPLY: the body goes to the caller of ps__link_calls. */
void ps__lk_on_move_reply(struct ps__link *L, const struct ps__frame *f)
{
	struct rpc r;
	if (!ps__lk_rpc_claim(L, f->req, &r))
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
	ps__lk_group_done(r.g, err);
}
