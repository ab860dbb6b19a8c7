/*
 * replica_remote.c - replication across hosts (RP8-RP10): serving other
 * hosts' RPULL/RPUSH on primaries held here, and the remote rounds of keys
 * whose primary is on another host (through w->net).  Invariants:
 * replica.c.
 */
#include <errno.h>
#include <math.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <urcu/urcu-memb.h>

#include "segment.h"
#include "util.h"
#include "world.h"
#include "arena.h"
#include "kv.h"
#include "replica.h"
#include "rules.h"
#include "replica_in.h"

/* ------------------------------------------------------- across hosts */

/* Adds node n's delta of index r into buf (sum rule; caller holds
 * repl_lock, so no round moves it, RP9): a seqlock read under the replica
 * slot's seq word, which guards the delta too (RP2). */
static void add_delta(ps_world *w, ps_table *t, int n, uint32_t r, float *buf, float *tmp)
{
	const uint32_t len = t->value_len;
	struct ps__slot *sl = ps__replica_at(t, n, r), *d = delta_of(t, sl);
	for (;;) {
		/* acquire: the data loads stay after it (kv.c seqlock) */
		uint64_t s1 = atomic_load_explicit(&sl->seq, memory_order_acquire);
		if (s1 & PS__SEQ_LOCKED)
			s1 = ps__wait_unlocked(w, t, sl, s1);
		ps__copy_out((uint32_t *)tmp, d, len);
		atomic_thread_fence(memory_order_acquire); /* data loads before the re-check */
		if (atomic_load_explicit(&sl->seq, memory_order_relaxed) == s1)
			break;
	}
	for (uint32_t j = 0; j < len; j++)
		buf[j] += tmp[j];
}

/* Reads ordinary key k (loc word lw) into out; false if lw is stale. */
static bool read_ordinary(ps_world *w, ps_table *t, ps_key k, uint64_t lw, float *out)
{
	struct ps__slot *sl = (struct ps__slot *)(w->seg.base + PS__LOC_OFF(lw));
	for (;;) {
		uint64_t s;
		int rc = ps__rp_try_read(sl, k, out, t->value_len, &s, false);
		if (rc != 0)
			return rc > 0;
		if (s & PS__SEQ_LOCKED)
			ps__wait_unlocked(w, t, sl, s);
	}
}

int ps__replica_serve(ps_table *t, const ps_key *keys, size_t n, float *out, const float *in)
{
	ps_world *w = t->w;
	const uint32_t len = t->value_len;
	if (!ps__rp_replicated(t)) /* the ordinary copy is the primary */
		return in ? ps_push_sync(t, keys, n, in) : ps_pull_sync(t, keys, n, out);
	float *tmp = ps__alloc(w, sizeof(float) * len);
	if (!tmp)
		return -ENOMEM;
	int rc = 0;
	ps__rp_repl_lock(w, t->d); /* RP9: no round moves a delta meanwhile; RP10 */
	/* All or nothing: a refused RPUSH makes its sender give every delta
	 * back (RP8), so no key is applied unless every key is held here.
	 * Under repl_lock no key changes replication state; a move to
	 * another host racing the batch (migrate.c) is not stopped by it, and
	 * such a key, found remote below, is skipped: its delta is lost
	 * rather than every other one counted twice. */
	for (size_t i = 0; i < n && rc == 0; i++) {
		/* acquire: as every load of a location word (kv.c KV1) */
		uint64_t lw = atomic_load_explicit(&t->loc[keys[i]], memory_order_acquire);
		if (PS__LOC_IS_REMOTE(lw) || ((lw & PS__LOC_REPL) && prim_remote(t, PS__LOC_RIDX(lw))))
			rc = PS_EMISMATCH; /* not held here, or replicated here and held elsewhere */
	}
	const int refused = rc;
	urcu_memb_read_lock();
	for (size_t i = 0; i < n && rc == 0; i++) {
		const ps_key k = keys[i];
		for (;;) {
			/* acquire: as every load of a location word (kv.c KV1) */
			uint64_t lw = atomic_load_explicit(&t->loc[k], memory_order_acquire);
			if (PS__LOC_IS_REMOTE(lw)) {
				if (!in)
					rc = PS_EMISMATCH; /* not held here */
				break;
			}
			if (!(lw & PS__LOC_REPL)) {
				/* ordinary: cannot become replicated, we hold repl_lock */
				if (in) {
					ps__push_key(w, t, k, in + i * len);
					break;
				}
				if (read_ordinary(w, t, k, lw, out + i * len))
					break;
				continue; /* relocated meanwhile */
			}
			uint32_t r = PS__LOC_RIDX(lw);
			if (prim_remote(t, r)) { /* cannot change under repl_lock */
				rc = PS_EMISMATCH; /* replicated here, held elsewhere */
				break;
			}
			uint64_t plw = atomic_load_explicit(&t->rprim[r], memory_order_relaxed);
			struct ps__slot *p = (struct ps__slot *)(w->seg.base + PS__LOC_OFF(plw));
			if (in) {
				uint64_t s = ps__rp_lock_any(w, t, p); /* MOVED-marked (RP6) */
				ps__rp_apply_delta(t, p, in + i * len);
				ps__slot_unlock(p, s, true);
				break;
			}
			float *o = out + i * len;
			for (;;) {
				uint64_t s;
				int trc = ps__rp_try_read(p, k, o, len, &s, true);
				if (trc > 0)
					break;
				if (trc < 0) { /* RP1/KV6 broken: tests assert 0 */
					stat_add(&w->me->stats.stale_reads, 1);
					break;
				}
				if (s & PS__SEQ_LOCKED)
					ps__wait_unlocked(w, t, p, s);
			}
			if (t->rule == PS_RULE_SUM) /* the deltas not merged yet (RP3) */
				for (int m = 0; m < w->nnodes; m++)
					add_delta(w, t, m, r, o, tmp);
			break;
		}
	}
	urcu_memb_read_unlock();
	ps__rp_repl_unlock(t->d);
	ps__free(w, tmp);
	return refused ? refused : rc;
}

/* Reads the primaries' totals of keys[i] at hosts[i] into out (RPULL)
 * and waits (no lock held but repl_xlock and remote-primary replica
 * locks, RP10).  Only multi-host jobs have primaries on other hosts. */
int ps__rp_remote_pull(ps_table *t, const ps_key *keys, const uint16_t *hosts, size_t n, float *out)
{
	struct ps__rgroup *g;
	const struct ps__net_ops *net = t->w->net;
	int rc = net->replica_start(t, keys, hosts, n, out, NULL, false, &g);
	return rc ? rc : (g ? net->remote_wait(t->w, g) : 0);
}

/*
 * RPUSHes vals[i] to keys[i] at hosts[i]: one group per host, all in
 * flight together, so that failed[i] (set for each entry whose host
 * failed) says exactly which deltas did not arrive.  Returns the first
 * failure or 0.  Holds nothing but what its caller holds (RP10).
 */
int ps__rp_rpush_hosts(ps_table *t, const ps_key *keys, const uint16_t *hosts, size_t n, const float *vals,
		       uint8_t *failed)
{
	ps_world *w = t->w;
	const int H = w->nhosts;
	const uint32_t len = t->value_len;
	memset(failed, 1, n);
	if (n == 0)
		return 0;
	size_t *at = ps__alloc(w, (size_t)(H + 1) * sizeof *at);
	size_t *perm = ps__alloc(w, n * sizeof *perm);
	ps_key *k2 = ps__alloc(w, n * sizeof *k2);
	uint16_t *h2 = ps__alloc(w, n * sizeof *h2);
	float *v2 = ps__alloc(w, n * len * sizeof *v2);
	struct ps__rgroup **g = ps__alloc(w, (size_t)H * sizeof *g);
	int *hrc = ps__alloc(w, (size_t)H * sizeof *hrc);
	int rc = -ENOMEM;
	if (!at || !perm || !k2 || !h2 || !v2 || !g || !hrc)
		goto out;
	memset(at, 0, (size_t)(H + 1) * sizeof *at);
	for (size_t i = 0; i < n; i++)
		at[hosts[i] + 1]++;
	for (int h = 0; h < H; h++)
		at[h + 1] += at[h];
	for (size_t i = 0; i < n; i++) { /* counting sort by host */
		size_t j = at[hosts[i]]++;
		perm[j] = i;
		k2[j] = keys[i];
		h2[j] = hosts[i];
		memcpy(v2 + j * len, vals + i * len, sizeof(float) * len);
	}
	for (int h = H; h > 0; h--) /* at[h]: start of host h's run again */
		at[h] = at[h - 1];
	at[0] = 0;
	for (int h = 0; h < H; h++) {
		g[h] = NULL;
		hrc[h] = 0;
		if (at[h + 1] > at[h])
			hrc[h] = w->net->replica_start(t, k2 + at[h], h2 + at[h], at[h + 1] - at[h], NULL,
						       v2 + at[h] * len, true, &g[h]);
	}
	rc = 0;
	for (int h = 0; h < H; h++) {
		if (g[h]) {
			int wrc = w->net->remote_wait(w, g[h]);
			hrc[h] = hrc[h] ? hrc[h] : wrc;
		}
		rc = rc ? rc : hrc[h];
	}
	for (size_t j = 0; j < n; j++)
		failed[perm[j]] = hrc[h2[j]] != 0;
out:
	ps__free(w, at);
	ps__free(w, perm);
	ps__free(w, k2);
	ps__free(w, h2);
	ps__free(w, v2);
	ps__free(w, g);
	ps__free(w, hrc);
	return rc;
}

/* The replicated keys of t whose primary is on another host (RP8). */
struct rset {
	size_t m;
	ps_key *keys;
	uint16_t *hosts;
	uint32_t *ridx;
	float *vals;   /* m x value_len */
	uint8_t *dirty;
};

static void rset_free(ps_world *w, struct rset *s)
{
	ps__free(w, s->keys);
	ps__free(w, s->hosts);
	ps__free(w, s->ridx);
	ps__free(w, s->vals);
	ps__free(w, s->dirty);
}

/* Collects the set (caller holds repl_lock) with room for cap keys. */
static int rset_collect(ps_world *w, ps_table *t, struct rset *s)
{
	const uint32_t R = t->d->repl_max, len = t->value_len;
	memset(s, 0, sizeof *s);
	s->keys = ps__alloc(w, R * sizeof *s->keys);
	s->hosts = ps__alloc(w, R * sizeof *s->hosts);
	s->ridx = ps__alloc(w, R * sizeof *s->ridx);
	s->vals = ps__alloc(w, (size_t)R * len * sizeof *s->vals);
	s->dirty = ps__alloc(w, R);
	if (!s->keys || !s->hosts || !s->ridx || !s->vals || !s->dirty) {
		rset_free(w, s);
		return -ENOMEM;
	}
	for (uint32_t r = 0; r < R; r++) {
		uint64_t kp = atomic_load_explicit(&t->rkey[r], memory_order_relaxed);
		if (!kp || !prim_remote(t, r))
			continue;
		s->keys[s->m] = kp - 1;
		s->hosts[s->m] = (uint16_t)PS__LOC_OWNER(atomic_load_explicit(&t->rprim[r], memory_order_relaxed));
		s->ridx[s->m] = r;
		s->m++;
	}
	memset(s->vals, 0, (size_t)R * len * sizeof *s->vals);
	memset(s->dirty, 0, R);
	return 0;
}

/* Adds buf into node n's delta of index r (a failed RPUSH gives back). */
static void give_back(ps_world *w, ps_table *t, int n, uint32_t r, ps_key k, const float *buf)
{
	struct ps__slot *sl = ps__replica_at(t, n, r);
	bool moved;
	uint64_t s = ps__slot_lock(w, t, sl, &moved);
	if (moved || atomic_load_explicit(&sl->key, memory_order_relaxed) != k) {
		if (!moved)
			ps__slot_unlock(sl, s, false);
		return; /* cannot happen under repl_xlock (RP8) */
	}
	struct ps__slot *d = delta_of(t, sl);
	ps__add_values(d, buf, t->value_len);
	atomic_store_explicit(&d->seq, 1, memory_order_relaxed); /* dirty (RP7), under the lock */
	ps__slot_unlock(sl, s, false);
}

/*
 * A remote round (RP8) over nodes [n0, n1): caller holds repl_xlock and
 * nothing else.  With refresh false only the deltas travel (finalize).
 */
int ps__rp_remote_round(ps_world *w, ps_table *t, int n0, int n1, bool refresh)
{
	const uint32_t len = t->value_len;
	struct rset s;
	float *buf = ps__alloc(w, sizeof(float) * len);
	if (!buf)
		return -ENOMEM;
	ps__rp_repl_lock(w, t->d);
	int rc = rset_collect(w, t, &s);
	if (rc) {
		ps__rp_repl_unlock(t->d);
		ps__free(w, buf);
		return rc;
	}
	size_t np = 0;
	for (size_t i = 0; i < s.m; i++) {
		for (int n = n0; n < n1; n++) {
			struct ps__slot *sl = ps__replica_at(t, n, s.ridx[i]);
			/* relaxed: the dirty hint (RP7) */
			if (!atomic_load_explicit(&delta_of(t, sl)->seq, memory_order_relaxed))
				continue;
			bool moved;
			uint64_t sq = ps__slot_lock(w, t, sl, &moved);
			if (moved)
				continue;
			bool any = ps__rp_take_delta(delta_of(t, sl), buf, len);
			ps__slot_unlock(sl, sq, false);
			if (!any)
				continue;
			for (uint32_t j = 0; j < len; j++)
				s.vals[i * len + j] += buf[j];
			s.dirty[i] = 1;
		}
		if (s.dirty[i]) { /* compact the dirty ones to the front */
			if (np != i) {
				memcpy(s.vals + np * len, s.vals + i * len, sizeof(float) * len);
				memset(s.vals + i * len, 0, sizeof(float) * len);
			}
			ps_key k = s.keys[np];
			uint16_t h = s.hosts[np];
			uint32_t r = s.ridx[np];
			s.keys[np] = s.keys[i];
			s.hosts[np] = s.hosts[i];
			s.ridx[np] = s.ridx[i];
			s.keys[i] = k;
			s.hosts[i] = h;
			s.ridx[i] = r;
			np++;
		}
	}
	ps__rp_repl_unlock(t->d);
	if (np) {
		/* s.dirty now says, per pushed entry, whether its host failed */
		rc = ps__rp_rpush_hosts(t, s.keys, s.hosts, np, s.vals, s.dirty);
		if (rc) { /* nothing lost: what did not arrive goes back to this node */
			ps__rp_repl_lock(w, t->d);
			for (size_t i = 0; i < np; i++)
				if (s.dirty[i])
					give_back(w, t, w->node, s.ridx[i], s.keys[i], s.vals + i * len);
			ps__rp_repl_unlock(t->d);
		}
	}
	if (rc == 0 && refresh && s.m) {
		/* after the RPUSH completed: what we pull holds our deltas, so
		 * a replica never loses them (replica = pulled + delta) */
		rc = ps__rp_remote_pull(t, s.keys, s.hosts, s.m, s.vals);
		if (rc == 0) {
			ps__rp_repl_lock(w, t->d);
			for (int n = n0; n < n1; n++) {
				for (size_t i = 0; i < s.m; i++) {
					struct ps__slot *sl = ps__replica_at(t, n, s.ridx[i]);
					bool moved;
					uint64_t sq = ps__slot_lock(w, t, sl, &moved);
					if (moved)
						continue;
					if (atomic_load_explicit(&sl->key, memory_order_relaxed) == s.keys[i]) {
						struct ps__slot *d = delta_of(t, sl);
						for (uint32_t j = 0; j < len; j++) {
							uint32_t bits = atomic_load_explicit(&d->v[j], memory_order_relaxed);
							float f;
							memcpy(&f, &bits, sizeof f);
							buf[j] = s.vals[i * len + j] + f;
						}
						ps__rp_store_values(sl, buf, len);
					}
					ps__slot_unlock(sl, sq, false);
				}
			}
			ps__rp_repl_unlock(t->d);
		}
	}
	rset_free(w, &s);
	ps__free(w, buf);
	return rc;
}

/* ------------------------------------------------ backups (backup.c BK12) */

/*
 * Link thread of node `node` (a backup round, lib/net/backup.c BK12): if k
 * is replicated here with its primary in node's pool, copies what an RPULL
 * answers for it (RP9: the primary plus every node's pending delta, sum
 * rule) followed by the primary's rule state - value_len + state_len
 * floats, the layout of a slot - under repl_lock, so no round moves a
 * delta meanwhile and k stays replicated.  Returns 1, or 0 if k is not
 * such a key (ordinary, its primary on another host or another node).
 * Takes repl_lock and a primary's lock, as serving an RPULL does (RP10).
 */
int ps__rp_backup_read(ps_table *t, ps_key k, int node, uint32_t *out)
{
	ps_world *w = t->w;
	const uint32_t len = t->value_len, nf = t->value_len + t->state_len;
	float tmp[64], *dt = len <= 64 ? tmp : ps__alloc(w, sizeof(float) * len);
	if (!dt)
		return 0; /* only lag: the next round tries again */
	int rc = 0;
	ps__rp_repl_lock(w, t->d);
	urcu_memb_read_lock();
	/* acquire: as every load of a location word (kv.c KV1) */
	uint64_t lw = atomic_load_explicit(&t->loc[k], memory_order_acquire);
	uint32_t r = PS__LOC_RIDX(lw);
	/* relaxed: under repl_lock (RP1) */
	uint64_t plw = (lw & PS__LOC_REPL) ? atomic_load_explicit(&t->rprim[r], memory_order_relaxed) : 0;
	if ((lw & PS__LOC_REPL) && !PS__LOC_IS_REMOTE(plw) && PS__LOC_OWNER(plw) == node) {
		struct ps__slot *p = (struct ps__slot *)(w->seg.base + PS__LOC_OFF(plw));
		uint64_t s = ps__rp_lock_any(w, t, p); /* MOVED-marked (RP6) */
		ps__copy_out(out, p, nf);
		ps__slot_unlock(p, s, true); /* stays MOVED (RP6) */
		if (t->rule == PS_RULE_SUM) { /* the deltas not merged yet (RP3) */
			float *o = (float *)(void *)out;
			for (int m = 0; m < w->nnodes; m++)
				add_delta(w, t, m, r, o, dt);
		}
		rc = 1;
	}
	urcu_memb_read_unlock();
	ps__rp_repl_unlock(t->d);
	if (dt != tmp)
		ps__free(w, dt);
	return rc;
}

/*
 * Link thread of the backup host of lost host x (lib/net/backup.c BK12):
 * k is replicated here and its primary was x's copy (rprim[r] =
 * REMOTE(x)).  vals (value_len + state_len floats: x's backup of the
 * primary and its state) becomes the primary in a fresh slot of this node,
 * MOVED-marked as every local primary (RP6), and rprim[r] names it: this
 * host's local rounds merge the deltas into it and refresh the replicas
 * from it (their delta key, 0 for a remote primary, never equals a slot's
 * seq: RP7 refreshes them), remote rounds no longer send them to x, and
 * other hosts' RPUSH/RPULL of k, routed here (BK3), are served (RP9).
 * repl_xlock (RP8: rprim of a remote primary changes under it) and
 * repl_lock are only tried: a link thread never waits for the first
 * (RP10), and a caller may be in a read-side section.  Returns 1 done, 0
 * not such a key (rprim[r] names something else, or k is not replicated
 * any more), 2 a lock busy, PS_EFULL this node's pool full; on 2 and
 * PS_EFULL the caller looks again later.
 */
int ps__rp_backup_promote(ps_table *t, ps_key k, int x, const uint32_t *vals)
{
	ps_world *w = t->w;
	if (!ps__rp_xtrylock(w, t->d))
		return 2;
	if (!ps__rp_repl_trylock(w, t->d)) {
		ps__rp_xunlock(w, t->d);
		return 2;
	}
	int rc = 0;
	/* acquire: as every load of a location word (kv.c KV1) */
	uint64_t lw = atomic_load_explicit(&t->loc[k], memory_order_acquire);
	uint32_t r = PS__LOC_RIDX(lw);
	/* relaxed: under repl_lock and repl_xlock (RP1, RP8) */
	if ((lw & PS__LOC_REPL) && atomic_load_explicit(&t->rprim[r], memory_order_relaxed) == PS__LOC_MAKE_REMOTE(x)) {
		uint64_t off;
		rc = ps__slot_alloc(w, t->id, w->node, t->slot_size, &off);
		if (rc == 0) {
			ps__slot_fill(w, t, off, k, vals);
			struct ps__slot *p = (struct ps__slot *)(w->seg.base + PS__LOC_OFF(PS__LOC_MAKE(w->node, off)));
			/* relaxed: published with rprim[r] under repl_lock
			 * (RP6: a primary is MOVED-marked) */
			uint64_t s = atomic_load_explicit(&p->seq, memory_order_relaxed);
			atomic_store_explicit(&p->seq, s | PS__SEQ_MOVED, memory_order_relaxed);
			/* release: the slot's content before the word, for the
			 * readers of rprim under repl_lock (the unlock orders it
			 * too) */
			atomic_store_explicit(&t->rprim[r], PS__LOC_MAKE(w->node, off), memory_order_release);
			/* relaxed: a count, under repl_lock (replica_switch.c) */
			atomic_fetch_sub_explicit(&t->d->repl_remote, 1, memory_order_relaxed);
			rc = 1;
		} else if (rc != PS_EFULL) {
			rc = 0;
		}
	}
	ps__rp_repl_unlock(t->d);
	ps__rp_xunlock(w, t->d);
	return rc;
}
