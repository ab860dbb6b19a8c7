/*
 * replica_switch.c - the replicated set: replicating and unreplicating
 * keys (install and drop, RP6), ps_replicate_top / _hot, queries.
 * Invariants: replica.c.
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
#include "lock.h"

/* ------------------------------------------------------- set membership */

/* Fills replica index r of every node with k's values vals and an empty
 * delta whose key word is dkey, then records r's primary word lw and key
 * (caller holds repl_lock and took r off the free list; it publishes with
 * the release store of loc[k], RP1). */
static void fill_replicas(ps_world *w, ps_table *t, uint32_t r, ps_key k, uint64_t lw, const float *vals,
			  uint64_t dkey)
{
	for (int n = 0; n < w->nnodes; n++) {
		struct ps__slot *rs = ps__replica_at(t, n, r);
		uint64_t rsq = ps__rp_lock_any(w, t, rs);
		atomic_store_explicit(&rs->key, k, memory_order_relaxed);
		ps__rp_store_values(rs, vals, t->value_len);
		struct ps__slot *ds = delta_of(t, rs);
		for (uint32_t j = 0; j < t->value_len; j++)
			atomic_store_explicit(&ds->v[j], 0, memory_order_relaxed);
		atomic_store_explicit(&ds->seq, 0, memory_order_relaxed);
		atomic_store_explicit(&ds->key, dkey, memory_order_relaxed);
		ps__slot_unlock(rs, rsq & ~(PS__SEQ_MOVED | PS__SEQ_FREED), false);
	}
	/* relaxed: published by the caller's release store of loc[k] (RP1) */
	atomic_store_explicit(&t->rprim[r], lw, memory_order_relaxed);
	atomic_store_explicit(&t->rkey[r], k + 1, memory_order_relaxed);
}

/* Replicates k (caller holds repl_lock, a free index exists).  Returns 1,
 * or 0 if it was replicated already. */
static int replicate_one(ps_world *w, ps_table *t, ps_key k, float *buf)
{
	struct ps__tdesc *d = t->d;
	int rc = 0;
	urcu_memb_read_lock();
	for (;;) {
		/* acquire: pairs with publishing release stores */
		uint64_t lw = atomic_load_explicit(&t->loc[k], memory_order_acquire);
		if (lw & PS__LOC_REPL)
			break;
		struct ps__slot *p = (struct ps__slot *)(w->seg.base + PS__LOC_OFF(lw));
		bool moved;
		uint64_t s = ps__slot_lock(w, t, p, &moved);
		if (moved)
			continue;
		if (atomic_load_explicit(&p->key, memory_order_relaxed) != k ||
		    atomic_load_explicit(&t->loc[k], memory_order_relaxed) != lw) {
			ps__slot_unlock(p, s, false);
			continue;
		}
		ps__copy_out((uint32_t *)buf, p, t->value_len);
		if (w->slow_switch)
			usleep(200);
		if (d->repl_nfree == 0) { /* a drop counted on stayed replicated */
			ps__slot_unlock(p, s, false);
			break;
		}
		uint32_t r = t->rfree[--d->repl_nfree];
		PS__KILL_POINT(PS__KP_REPL_POPPED);
		/* delta key: the primary's seq after the unlock below (RP7) */
		fill_replicas(w, t, r, k, lw, buf, (s + PS__SEQ_VER1) | PS__SEQ_MOVED);
		PS__KILL_POINT(PS__KP_REPL_HALF);
		/* release: replicas, rprim and rkey are visible to whoever
		 * acquires the REPL word */
		atomic_store_explicit(&t->loc[k], PS__LOC_MAKE_REPL(r), memory_order_release);
		ps__slot_unlock(p, s, true); /* RP6: stale users go to their replica */
		atomic_fetch_add_explicit(&d->repl_used, 1, memory_order_relaxed);
		rc = 1;
		break;
	}
	urcu_memb_read_unlock();
	return rc;
}

/* Turns k back into an ordinary key (caller holds repl_lock).  Returns 1,
 * or 0 if it was not replicated.  Every replica is locked, then the
 * primary; the deltas go into the primary and its word is published before
 * anything is unlocked, so no reader sees the key lose a push (RP3). */
static int unreplicate_one(ps_world *w, ps_table *t, ps_key k, float *buf)
{
	struct ps__tdesc *d = t->d;
	uint64_t lw = atomic_load_explicit(&t->loc[k], memory_order_acquire);
	if (!(lw & PS__LOC_REPL))
		return 0;
	uint32_t r = PS__LOC_RIDX(lw);
	uint64_t plw = atomic_load_explicit(&t->rprim[r], memory_order_relaxed);
	uint64_t rseq[PS__MAX_NODES];
	urcu_memb_read_lock();
	for (int n = 0; n < w->nnodes; n++)
		rseq[n] = ps__rp_lock_any(w, t, ps__replica_at(t, n, r));
	struct ps__slot *p = (struct ps__slot *)(w->seg.base + PS__LOC_OFF(plw));
	uint64_t ps = ps__rp_lock_any(w, t, p); /* MOVED-marked (RP6) */
	for (int n = 0; n < w->nnodes; n++)
		if (ps__rp_take_delta(delta_of(t, ps__replica_at(t, n, r)), buf, t->value_len))
			ps__rp_apply_delta(t, p, buf);
	/* The primary stops being MOVED-marked while still locked, before its
	 * word is published: a holder dying after the publication leaves it
	 * recoverable as an ordinary slot (RP11); nobody sees the mark go
	 * while the lock is held.  Relaxed: the unlock's release publishes. */
	ps &= ~PS__SEQ_MOVED;
	atomic_store_explicit(&p->seq, ps | PS__SEQ_LOCKED | (((uint64_t)w->node + 1) << PS__SEQ_HOLDER_SHIFT),
			      memory_order_relaxed);
	/* release: pushes and pulls that load it find the primary (locked
	 * until its values hold every delta) */
	atomic_store_explicit(&t->loc[k], plw, memory_order_release);
	PS__KILL_POINT(PS__KP_UNREPL_HALF);
	ps__slot_unlock(p, ps, false); /* an ordinary slot again */
	for (int n = 0; n < w->nnodes; n++) /* MOVED: stale users re-read loc[k] */
		ps__slot_unlock(ps__replica_at(t, n, r), rseq[n] & ~PS__SEQ_FREED, true);
	urcu_memb_read_unlock();
	atomic_store_explicit(&t->rkey[r], 0, memory_order_relaxed);
	t->rfree[d->repl_nfree++] = r;
	atomic_fetch_sub_explicit(&d->repl_used, 1, memory_order_relaxed);
	return 1;
}

static int cmp_key(const void *a, const void *b)
{
	ps_key x = *(const ps_key *)a, y = *(const ps_key *)b;
	return (x > y) - (x < y);
}

/* Sorted, de-duplicated copy of keys; *m its length. */
static ps_key *unique_keys(ps_world *w, const ps_key *keys, size_t n, size_t *m)
{
	ps_key *u = ps__alloc(w, (n ? n : 1) * sizeof *u);
	if (!u)
		return NULL;
	memcpy(u, keys, n * sizeof *u);
	qsort(u, n, sizeof *u, cmp_key);
	size_t j = 0;
	for (size_t i = 0; i < n; i++)
		if (j == 0 || u[j - 1] != u[i])
			u[j++] = u[i];
	*m = j;
	return u;
}

/* Replicates k, held by another host (word lw), with its pulled values
 * (caller holds repl_xlock and repl_lock, a free index exists; RP8). */
static void replicate_remote_one(ps_world *w, ps_table *t, ps_key k, uint64_t lw, const float *vals)
{
	struct ps__tdesc *d = t->d;
	uint32_t r = t->rfree[--d->repl_nfree];
	fill_replicas(w, t, r, k, lw, vals, 0); /* no local primary seq */
	/* release: replicas, rprim and rkey are visible to whoever acquires
	 * the REPL word */
	atomic_store_explicit(&t->loc[k], PS__LOC_MAKE_REPL(r), memory_order_release);
	/* relaxed: counts, under repl_lock */
	atomic_fetch_add_explicit(&d->repl_used, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&d->repl_remote, 1, memory_order_relaxed);
}

/* Keys replicated here whose primary is on another host, being dropped
 * (RP8): their deltas travel with no lock held but repl_xlock. */
struct rdrop {
	size_t m;
	ps_key *keys;
	uint16_t *hosts;
	uint32_t *ridx;
	float *vals;
	uint64_t *rseq;   /* m x nnodes: the replica locks' words in drop_finish */
	uint8_t *failed;  /* per key: its deltas did not reach the holder */
};

static void rdrop_free(ps_world *w, struct rdrop *s)
{
	ps__free(w, s->failed);
	ps__free(w, s->keys);
	ps__free(w, s->hosts);
	ps__free(w, s->ridx);
	ps__free(w, s->vals);
	ps__free(w, s->rseq);
}

static int rdrop_init(ps_world *w, ps_table *t, struct rdrop *s, size_t cap)
{
	memset(s, 0, sizeof *s);
	cap = cap ? cap : 1;
	s->keys = ps__alloc(w, cap * sizeof *s->keys);
	s->hosts = ps__alloc(w, cap * sizeof *s->hosts);
	s->ridx = ps__alloc(w, cap * sizeof *s->ridx);
	s->vals = ps__alloc(w, cap * t->value_len * sizeof *s->vals);
	s->rseq = ps__alloc(w, cap * (size_t)w->nnodes * sizeof *s->rseq);
	s->failed = ps__alloc(w, cap);
	if (s->keys && s->hosts && s->ridx && s->vals && s->rseq && s->failed)
		return 0;
	rdrop_free(w, s); /* what was allocated; ps__free takes NULL */
	return -ENOMEM;
}

/* Drops k (caller holds repl_lock): a local primary at once
 * (unreplicate_one), a remote one into s with its replicas locked and its
 * deltas taken.  Returns 1 if switched now, 0 otherwise. */
static int drop_one(ps_world *w, ps_table *t, ps_key k, float *buf, struct rdrop *s)
{
	const uint32_t len = t->value_len;
	uint64_t lw = atomic_load_explicit(&t->loc[k], memory_order_acquire);
	if (!(lw & PS__LOC_REPL))
		return 0;
	uint32_t r = PS__LOC_RIDX(lw);
	if (!prim_remote(t, r))
		return unreplicate_one(w, t, k, buf);
	size_t i = s->m++;
	s->keys[i] = k;
	s->hosts[i] = (uint16_t)PS__LOC_OWNER(atomic_load_explicit(&t->rprim[r], memory_order_relaxed));
	s->ridx[i] = r;
	memset(s->vals + i * len, 0, sizeof(float) * len);
	for (int n = 0; n < w->nnodes; n++) {
		struct ps__slot *sl = ps__replica_at(t, n, r);
		uint64_t sq = ps__rp_lock_any(w, t, sl);
		if (ps__rp_take_delta(delta_of(t, sl), buf, len))
			for (uint32_t j = 0; j < len; j++)
				s->vals[i * len + j] += buf[j];
		/* not held across the round trip: the replica's values (with
		 * this host's pushes) stay readable, and pushes go on into
		 * replica and delta (drop_finish sees them) */
		ps__slot_unlock(sl, sq, false);
	}
	return 0;
}

/* Ends the drops of s (caller holds repl_lock, back from the round trip):
 * a key whose deltas arrived and that took no push meanwhile publishes
 * its REMOTE word and frees its index, its replicas locked until then
 * (RP8); the others stay replicated, a failed key's deltas back in this
 * node's delta, a pushed-meanwhile key's new deltas left for the next
 * remote round.  Returns the number switched. */
static int drop_finish(ps_world *w, ps_table *t, struct rdrop *s)
{
	struct ps__tdesc *d = t->d;
	const uint32_t len = t->value_len;
	const size_t nn = (size_t)w->nnodes;
	int done = 0;
	for (size_t i = 0; i < s->m; i++) {
		uint32_t r = s->ridx[i];
		bool pushed = false;
		for (int n = 0; n < w->nnodes; n++) {
			struct ps__slot *sl = ps__replica_at(t, n, r);
			s->rseq[i * nn + n] = ps__rp_lock_any(w, t, sl);
			/* relaxed: under the replica's lock; a push sets it (RP7) */
			pushed |= atomic_load_explicit(&delta_of(t, sl)->seq, memory_order_relaxed) != 0;
		}
		if (s->failed[i] || pushed) {
			if (s->failed[i]) {
				struct ps__slot *dl = delta_of(t, ps__replica_at(t, w->node, r));
				ps__add_values(dl, s->vals + i * len, len);
				atomic_store_explicit(&dl->seq, 1, memory_order_relaxed); /* dirty (RP7) */
			}
			for (int n = 0; n < w->nnodes; n++)
				ps__slot_unlock(ps__replica_at(t, n, r), s->rseq[i * nn + n], false);
			continue;
		}
		uint64_t plw = atomic_load_explicit(&t->rprim[r], memory_order_relaxed);
		/* release: as in unreplicate_one; the deltas are at the holder */
		atomic_store_explicit(&t->loc[s->keys[i]], plw, memory_order_release);
		for (int n = 0; n < w->nnodes; n++) /* MOVED: stale users re-read loc[k] */
			ps__slot_unlock(ps__replica_at(t, n, r), s->rseq[i * nn + n] & ~PS__SEQ_FREED, true);
		atomic_store_explicit(&t->rkey[r], 0, memory_order_relaxed);
		t->rfree[d->repl_nfree++] = r;
		atomic_fetch_sub_explicit(&d->repl_used, 1, memory_order_relaxed);
		atomic_fetch_sub_explicit(&d->repl_remote, 1, memory_order_relaxed);
		done++;
	}
	return done;
}

/* Pushes the taken deltas of s that are non-zero (no lock but repl_xlock
 * held, RP10); s->failed says which did not arrive. */
static int drop_push(ps_table *t, struct rdrop *s, float *vals)
{
	const uint32_t len = t->value_len;
	const size_t cap = s->m ? s->m : 1;
	ps_key *k = ps__alloc(t->w, cap * sizeof *k);
	uint16_t *h = ps__alloc(t->w, cap * sizeof *h);
	size_t *from = ps__alloc(t->w, cap * sizeof *from);
	uint8_t *failed = ps__alloc(t->w, cap);
	int rc = -ENOMEM;
	memset(s->failed, 1, s->m);
	if (!k || !h || !from || !failed)
		goto out;
	size_t np = 0;
	for (size_t i = 0; i < s->m; i++) {
		bool any = false;
		for (uint32_t j = 0; j < len; j++)
			any |= s->vals[i * len + j] != 0;
		s->failed[i] = 0;
		if (!any)
			continue; /* nothing to send: nothing to lose */
		k[np] = s->keys[i];
		h[np] = s->hosts[i];
		from[np] = i;
		memcpy(vals + np * len, s->vals + i * len, sizeof(float) * len);
		np++;
	}
#ifdef PS_TEST_HOOKS /* test builds only: a slow round trip (test_hosts_repl) */
	const char *slow = getenv("PSMEM_DEBUG_SLOW_DROP");
	if (slow && np)
		usleep((useconds_t)atoi(slow) * 1000);
#endif
	rc = ps__rp_rpush_hosts(t, k, h, np, vals, failed);
	for (size_t j = 0; j < np; j++)
		s->failed[from[j]] = failed[j];
out:
	ps__free(t->w, k);
	ps__free(t->w, h);
	ps__free(t->w, from);
	ps__free(t->w, failed);
	return rc;
}

/* Makes the replicated set { old } - drop + add (caller holds nothing).
 * add and drop are sorted and unique.  In a multi-host job the whole
 * switch holds repl_xlock, and keys of other hosts travel (RP8). */
static int switch_keys(ps_table *t, const ps_key *add, size_t nadd, const ps_key *drop, size_t ndrop,
		       bool drop_others)
{
	ps_world *w = t->w;
	const uint32_t len = t->value_len;
	float *buf = ps__alloc(w, sizeof(float) * len);
	if (!buf)
		return -ENOMEM;
	int done = 0, rc = 0;
	struct rdrop rd = {0};
	ps_key *rk = NULL;
	uint16_t *rh = NULL;
	float *rv = NULL, *pv = NULL;
	size_t nr = 0;
	ps__rp_xlock(w, t->d);
	if (w->nhosts > 1) {
		/* the keys of other hosts to add: their values first, by RPULL,
		 * holding no repl_lock (RP10) */
		rk = ps__alloc(w, (nadd ? nadd : 1) * sizeof *rk);
		rh = ps__alloc(w, (nadd ? nadd : 1) * sizeof *rh);
		rv = ps__alloc(w, (nadd ? nadd : 1) * len * sizeof *rv);
		size_t cap = t->d->repl_max;
		pv = ps__alloc(w, (cap ? cap : 1) * len * sizeof *pv);
		if (!rk || !rh || !rv || !pv || rdrop_init(w, t, &rd, cap)) {
			rc = -ENOMEM;
			goto out;
		}
		for (size_t i = 0; i < nadd; i++) {
			uint64_t lw = atomic_load_explicit(&t->loc[add[i]], memory_order_acquire);
			if (PS__LOC_IS_REMOTE(lw)) {
				rk[nr] = add[i];
				rh[nr++] = (uint16_t)PS__LOC_OWNER(lw);
			}
		}
		if (nr && (rc = ps__rp_remote_pull(t, rk, rh, nr, rv)) != 0)
			goto out;
	}
	ps__rp_repl_lock(w, t->d);
	/* capacity first: a rejected call changes nothing */
	uint64_t used = atomic_load_explicit(&t->d->repl_used, memory_order_relaxed), need = 0, freed = 0;
	for (size_t i = 0; i < nadd; i++)
		need += !(atomic_load_explicit(&t->loc[add[i]], memory_order_relaxed) & PS__LOC_REPL);
	if (drop_others) {
		for (uint32_t r = 0; r < t->d->repl_max; r++) {
			uint64_t kp = atomic_load_explicit(&t->rkey[r], memory_order_relaxed);
			freed += kp && !bsearch(&(ps_key){kp - 1}, add, nadd, sizeof *add, cmp_key);
		}
	}
	if (used + need - freed > t->d->repl_max) {
		ps__rp_repl_unlock(t->d);
		rc = PS_ERCAP;
		goto out;
	}
	if (drop_others) {
		for (uint32_t r = 0; r < t->d->repl_max; r++) {
			uint64_t kp = atomic_load_explicit(&t->rkey[r], memory_order_relaxed);
			if (kp && !bsearch(&(ps_key){kp - 1}, add, nadd, sizeof *add, cmp_key))
				drop_one(w, t, kp - 1, buf, &rd);
		}
	}
	for (size_t i = 0; i < ndrop; i++)
		done += drop_one(w, t, drop[i], buf, &rd);
	if (rd.m) {
		/* the remote drops' deltas travel without repl_lock (RP10) */
		ps__rp_repl_unlock(t->d);
		rc = drop_push(t, &rd, pv);
		ps__rp_repl_lock(w, t->d);
		done += drop_finish(w, t, &rd);
		rd.m = 0;
	}
	for (size_t i = 0; i < nadd && rc == 0; i++) {
		uint64_t lw = atomic_load_explicit(&t->loc[add[i]], memory_order_acquire);
		if (!PS__LOC_IS_REMOTE(lw)) {
			done += replicate_one(w, t, add[i], buf);
			continue;
		}
		ps_key *at = bsearch(&add[i], rk, nr, sizeof *rk, cmp_key); /* rk is sorted: a subsequence of add */
		if (at && t->d->repl_nfree) { /* none: a drop counted on stayed replicated */
			replicate_remote_one(w, t, add[i], lw, rv + (size_t)(at - rk) * len);
			done++;
		}
	}
	ps__rp_repl_unlock(t->d);
out:
	if (w->nhosts > 1) {
		if (rd.keys)
			rdrop_free(w, &rd);
		ps__free(w, rk);
		ps__free(w, rh);
		ps__free(w, rv);
		ps__free(w, pv);
	}
	ps__rp_xunlock(w, t->d);
	ps__free(w, buf);
	return rc ? rc : done;
}

int ps_replicate(ps_table *t, const ps_key *keys, size_t n)
{
	int rc = ps__check_keys(t, keys, n);
	if (rc)
		return rc;
	if (!ps__rp_replicated(t))
		return n ? PS_ERCAP : 0;
	ps__thread_enter(t->w);
	size_t m;
	ps_key *u = unique_keys(t->w, keys, n, &m);
	if (!u)
		return -ENOMEM;
	rc = switch_keys(t, u, m, NULL, 0, false);
	ps__free(t->w, u);
	return rc;
}

int ps_unreplicate(ps_table *t, const ps_key *keys, size_t n)
{
	int rc = ps__check_keys(t, keys, n);
	if (rc || !ps__rp_replicated(t))
		return rc;
	ps__thread_enter(t->w);
	size_t m;
	ps_key *u = unique_keys(t->w, keys, n, &m);
	if (!u)
		return -ENOMEM;
	rc = switch_keys(t, NULL, 0, u, m, false);
	ps__free(t->w, u);
	return rc;
}

/* Top k of counts (ties: smaller key) into out, sorted by key. */
struct cand {
	uint64_t c;
	ps_key k;
};

static bool better(struct cand a, struct cand b)
{
	return a.c > b.c || (a.c == b.c && a.k < b.k);
}

static void sift_down(struct cand *h, size_t n, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, m = i;
		if (l < n && better(h[m], h[l]))
			m = l;
		if (l + 1 < n && better(h[m], h[l + 1]))
			m = l + 1;
		if (m == i)
			return;
		struct cand x = h[i];
		h[i] = h[m];
		h[m] = x;
		i = m;
	}
}

static size_t top_k(const uint64_t *counts, uint64_t nk, size_t k, struct cand *h, ps_key *out)
{
	/* min-heap (the worst candidate at the root) of the best k so far */
	size_t n = 0;
	for (uint64_t key = 0; key < nk && k; key++) {
		struct cand c = {counts[key], key};
		if (n < k) {
			size_t i = n++;
			h[i] = c;
			while (i > 0 && better(h[(i - 1) / 2], h[i])) { /* sift up */
				struct cand x = h[i];
				h[i] = h[(i - 1) / 2];
				h[(i - 1) / 2] = x;
				i = (i - 1) / 2;
			}
		} else if (better(c, h[0])) {
			h[0] = c;
			sift_down(h, n, 0);
		}
	}
	for (size_t i = 0; i < n; i++)
		out[i] = h[i].k;
	qsort(out, n, sizeof *out, cmp_key);
	return n;
}

int ps_replicate_top(ps_table *t, const uint64_t *counts, size_t k)
{
	int rc = ps__check_keys(t, NULL, 0);
	if (rc)
		return rc;
	if (!counts)
		return -EINVAL;
	if (k > (ps__rp_replicated(t) ? t->d->repl_max : 0))
		return PS_ERCAP;
	ps_world *w = t->w;
	ps__thread_enter(w);
	struct cand *h = ps__alloc(w, (k ? k : 1) * sizeof *h);
	ps_key *top = ps__alloc(w, (k ? k : 1) * sizeof *top);
	if (!h || !top) {
		ps__free(w, h);
		ps__free(w, top);
		return -ENOMEM;
	}
	size_t n = top_k(counts, t->num_keys, k, h, top);
	rc = ps__rp_replicated(t) ? switch_keys(t, top, n, NULL, 0, true) : 0;
	ps__free(w, h);
	ps__free(w, top);
	return rc < 0 ? rc : (int)n;
}

int ps_replicate_hot(ps_table *t, size_t k)
{
	int rc = ps__check_keys(t, NULL, 0);
	if (rc)
		return rc;
	if (!t->counts)
		return -ENOTSUP;
	uint64_t *c = malloc(t->num_keys * sizeof *c);
	if (!c)
		return -ENOMEM;
	for (uint64_t i = 0; i < t->num_keys; i++) /* relaxed: counters */
		c[i] = atomic_exchange_explicit(&t->counts[i], 0, memory_order_relaxed);
	rc = ps_replicate_top(t, c, k);
	free(c);
	return rc;
}

int ps_is_replicated(ps_table *t, ps_key key)
{
	int rc = ps__check_keys(t, &key, 1);
	if (rc)
		return rc;
	return (atomic_load_explicit(&t->loc[key], memory_order_acquire) & PS__LOC_REPL) != 0;
}

int64_t ps_replicated_count(ps_table *t)
{
	int rc = ps__check_keys(t, NULL, 0);
	if (rc)
		return rc;
	return ps__rp_replicated(t) ? atomic_load_explicit(&t->d->repl_used, memory_order_relaxed) : 0;
}
