/*
 * replica.c - hot-spot replication beside relocation (Lapse2 / NuPS).
 *
 * A table created with repl_max = R > 0 reserves, in each node's own pool,
 * a run of 2R slots: for replica index r, slot 2r is the node's replica of
 * the key (values a reader of that node sees) and slot 2r+1 its delta (the
 * sum of that node's pushes not yet in the primary; only its values are
 * used).  The shared region holds, per index, rprim[r] (the location word
 * of the key's primary copy, an ordinary slot) and rkey[r] (key + 1, 0 =
 * free), and a stack of free indexes.
 *
 * Invariants
 *   (RP1) loc[k] = REPL|r  <=>  rkey[r] = k + 1.  Both change only under the
 *        table's repl_lock (replicate, unreplicate); the REPL word is
 *        published with release after every node's replica slot r holds
 *        the primary's values, key k and a zero delta.
 *   (RP2) Replica r of node n and its delta change only under the replica
 *        slot's lock (seq word, as in kv.c): a push adds the update to
 *        both; a round takes (copies and zeroes) the delta, or rewrites the
 *        values as primary + delta.  So replica = primary-as-last-read +
 *        delta, and a node reads its own pushes at once.
 *   (RP3) Conservation: at every moment outside a round, the sum of all
 *        pushes to k is primary + sum over nodes of delta(n, r).  A round
 *        (under repl_lock) moves a delta into the primary under the
 *        primary's slot lock; unreplicate locks every replica and the
 *        primary, drains the deltas into it, publishes its word and only
 *        then unlocks (replicas MOVED), so a push that still holds the old
 *        word finds MOVED and retries on the primary, and no reader sees
 *        the key's value go back.
 *   (RP4) Lock order.  Pushers hold one slot lock and wait for nothing
 *        while holding it; a round holds one replica lock at a time and
 *        only *tries* to read a primary (backs off if locked).  Holding
 *        several locks (primary + replicas) is done only by replicate and
 *        unreplicate, under repl_lock, so one at a time.  No cycle.
 *   (RP6) The primary of a replicated key is marked MOVED (it is not where
 *        readers and pushers go): one that still holds its old word
 *        re-reads loc[k] and uses its replica, so no push lands in the
 *        primary unseen by the replicas, and a node's reads of the key
 *        never go back.  Rounds and unreplicate, which know it is the
 *        primary, lock it regardless; unreplicate clears the mark.
 *   (RP7) Rounds cost what changed, not repl_max: the delta slot's seq word
 *        is a dirty flag (set by pushes, cleared when the delta is taken,
 *        under the replica's lock; read without it as a hint, which a push
 *        completed before ps_sync always sets visibly), and its key word is
 *        the primary's seq value the replica was last refreshed from: while
 *        the primary still shows that value, replica = primary + delta.
 *   (RP5) Replica slots are never freed: a stale reader or pusher that
 *        still holds REPL|r after r was reused finds another key (or MOVED)
 *        in the slot and re-reads loc[k].  The primary of a replicated key
 *        is never relocated (kv.c KV6) and never freed while it is.
 *
 * A round run by node n's service thread merges n's deltas and refreshes
 * n's replicas; ps_sync does both for every node (merge all, then refresh
 * all).  A process that dies inside a round may lose the delta it had
 * taken (the "unfinished batch" of a dead node); nothing else.
 *
 * Across hosts (multi-host jobs).  Each host has its own replicated set
 * and replica slots.  A key held by another host can be replicated here
 * too: then rprim[r] is the key's REMOTE word (the host that held it when
 * it was replicated), and rounds that reach it go through the bridge:
 *   (RP8) The replicated keys whose primary is remote change only under the
 *        table's repl_xlock (and repl_lock for the words themselves), which
 *        every switch, remote round and ps_sync of a multi-host job holds.
 *        A remote round (one per host per 1/repl_rate, by whichever
 *        service thread finds it due, or ps_sync) takes every node's dirty
 *        deltas of such keys under repl_lock, drops it, sends them in one
 *        RPUSH batch per holder host (added to the primary there with the
 *        holder's rule, RP9), waits, then pulls every such key in one RPULL
 *        batch per holder and rewrites each node's replica as pulled +
 *        delta.  A failed RPUSH puts the deltas back (nothing is lost while
 *        a host is reachable).  Local rounds skip these indexes.
 *        ps_replicate of a remote key pulls its value by RPULL first, then
 *        installs it under repl_lock; ps_unreplicate locks its replicas,
 *        takes the deltas, RPUSHes them, and only then publishes the
 *        REMOTE word and unlocks (MOVED), so a reader never finds the key
 *        without its own host's pushes.
 *   (RP9) A holder answers RPUSH by adding into the key's primary (through
 *        ps__push_key if it is not replicated there) and RPULL with the
 *        primary plus every node's pending delta (sum rule: the exact total
 *        of what reached this host; other rules: the primary), both under
 *        its repl_lock, so no local round moves a delta while it reads.
 *   (RP10) No deadlock across hosts.  A thread that waits for a reply of
 *        another host holds at most repl_xlock and the replica locks of
 *        keys whose primary is on another host; never repl_lock, never a
 *        lock of a key this host holds.  A link thread serving a request
 *        takes only repl_lock and locks of keys this host holds (another
 *        host never asks about a key it holds itself: check_request),
 *        never repl_xlock, and never waits for another host.  So no wait
 *        for a reply waits, through any chain, for itself.
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

static inline struct ps__slot *delta_of(ps_table *t, struct ps__slot *replica)
{
	return (struct ps__slot *)((char *)replica + t->slot_size);
}

static inline uint64_t slot_off(ps_world *w, struct ps__slot *sl)
{
	return (uint64_t)((char *)sl - w->seg.base);
}

/* Applies a merged delta to a locked primary with the table's rule. */
static void apply_delta(ps_table *t, struct ps__slot *p, const float *delta)
{
	if (t->rule == PS_RULE_SUM)
		ps__add_values(p, delta, t->value_len);
	else
		ps__rule_apply(t, p, delta); /* rules.c: the summed update of a round */
}

static inline void stat_add(_Atomic uint64_t *c, uint64_t v)
{
	/* relaxed: statistics counter, orders nothing */
	atomic_fetch_add_explicit(c, v, memory_order_relaxed);
}

/* ------------------------------------------------------------ repl_lock */

static bool word_trylock(ps_world *w, _Atomic uint64_t *l)
{
	uint64_t cur = 0;
	/* acquire: rprim/rkey/rfree and the previous holder's slot writes */
	if (atomic_compare_exchange_strong_explicit(l, &cur, (uint64_t)w->node + 1, memory_order_acquire,
						    memory_order_relaxed))
		return true;
	if (!ps__node_alive(&w->seg, (int)cur - 1)) {
		/* holder died inside: its round may have lost the delta it held
		 * (see the file comment); the structures stay consistent */
		ps__mark_dead(&w->seg, (int)cur - 1);
		return atomic_compare_exchange_strong_explicit(l, &cur, (uint64_t)w->node + 1, memory_order_acquire,
							       memory_order_relaxed);
	}
	return false;
}

static void word_lock(ps_world *w, _Atomic uint64_t *l)
{
	unsigned spins = 0;
	while (!word_trylock(w, l)) {
		if (++spins < 64)
			ps__cpu_relax();
		else if (spins < 1024)
			sched_yield();
		else
			usleep(50); /* an xlock holder may wait for a round trip */
	}
}

static void word_unlock(_Atomic uint64_t *l)
{
	/* release: everything written under the lock is seen by the next holder */
	atomic_store_explicit(l, 0, memory_order_release);
}

static bool repl_trylock(ps_world *w, struct ps__tdesc *d) { return word_trylock(w, &d->repl_lock); }
static void repl_lock(ps_world *w, struct ps__tdesc *d) { word_lock(w, &d->repl_lock); }
static void repl_unlock(struct ps__tdesc *d) { word_unlock(&d->repl_lock); }

/* repl_xlock (RP8): only in multi-host jobs; taken before repl_lock. */
static void xlock(ps_world *w, struct ps__tdesc *d)
{
	if (w->nhosts > 1)
		word_lock(w, &d->repl_xlock);
}

static void xunlock(ps_world *w, struct ps__tdesc *d)
{
	if (w->nhosts > 1)
		word_unlock(&d->repl_xlock);
}

/* Is the primary of replica index r on another host (RP8)?  Under
 * repl_lock or repl_xlock. */
static inline bool prim_remote(ps_table *t, uint32_t r)
{
	/* relaxed: under repl_lock or repl_xlock (RP1, RP8) */
	return PS__LOC_IS_REMOTE(atomic_load_explicit(&t->rprim[r], memory_order_relaxed));
}

/* ------------------------------------------------------------ slot help */

/* Locks sl even if it is MOVED (a replica slot being reinitialised). */
static uint64_t lock_any(ps_world *w, ps_table *t, struct ps__slot *sl)
{
	uint64_t holder = ((uint64_t)w->node + 1) << PS__SEQ_HOLDER_SHIFT;
	for (;;) {
		bool moved;
		uint64_t s = ps__slot_lock(w, t, sl, &moved);
		if (!moved)
			return s;
		/* acquire: as in ps__slot_lock */
		if (atomic_compare_exchange_strong_explicit(&sl->seq, &s, s | PS__SEQ_LOCKED | holder,
							    memory_order_acquire, memory_order_relaxed)) {
			atomic_thread_fence(memory_order_release); /* see ps__slot_lock */
			return s;
		}
	}
}

static void store_values(struct ps__slot *sl, const float *src, uint32_t len)
{
	for (uint32_t j = 0; j < len; j++) {
		uint32_t bits;
		memcpy(&bits, &src[j], sizeof bits);
		/* relaxed: seqlock data, published by the unlock's release */
		atomic_store_explicit(&sl->v[j], bits, memory_order_relaxed);
	}
}

/* Copies the delta into buf and zeroes it (caller holds the replica lock).
 * Returns true if any value was non-zero. */
static bool take_delta(struct ps__slot *delta, float *buf, uint32_t len)
{
	bool any = false;
	for (uint32_t j = 0; j < len; j++) {
		/* relaxed: under the replica's lock (RP2) */
		uint32_t bits = atomic_exchange_explicit(&delta->v[j], 0, memory_order_relaxed);
		memcpy(&buf[j], &bits, sizeof bits);
		any |= bits != 0;
	}
	atomic_store_explicit(&delta->seq, 0, memory_order_relaxed); /* clean (RP7) */
	return any;
}

/*
 * Reads slot sl of key k without waiting for its lock.  Returns 1 with the
 * values in buf, 0 if it is locked now (*seq: the seq seen), -1 if it no
 * longer holds k.
 */
static int try_read(struct ps__slot *sl, ps_key k, float *buf, uint32_t len, uint64_t *seq, bool primary)
{
	/* acquire: the data loads stay after it (kv.c seqlock) */
	uint64_t s1 = atomic_load_explicit(&sl->seq, memory_order_acquire);
	*seq = s1;
	if (s1 & PS__SEQ_LOCKED)
		return 0;
	if (s1 & (primary ? PS__SEQ_FREED : PS__SEQ_MOVED | PS__SEQ_FREED))
		return -1;
	ps__copy_out((uint32_t *)buf, sl, len);
	uint64_t key = atomic_load_explicit(&sl->key, memory_order_relaxed);
	atomic_thread_fence(memory_order_acquire); /* data loads before the re-check */
	if (atomic_load_explicit(&sl->seq, memory_order_relaxed) != s1)
		return 0;
	return key == k ? 1 : -1;
}

/* ----------------------------------------------------- reader / pusher */

int ps__replica_pull(ps_world *w, ps_table *t, ps_key k, uint64_t lw, float *out)
{
	struct ps__slot *sl = ps__replica_at(t, w->node, PS__LOC_RIDX(lw));
	for (;;) {
		uint64_t s;
		int rc = try_read(sl, k, out, t->value_len, &s, false);
		if (rc > 0)
			return 1;
		if (rc < 0)
			return 0; /* unreplicated or reused: re-read loc[k] (RP5) */
		if (s & PS__SEQ_LOCKED)
			ps__wait_unlocked(w, t, sl, s);
	}
}

int ps__replica_push(ps_world *w, ps_table *t, ps_key k, uint64_t lw, const float *upd)
{
	struct ps__slot *sl = ps__replica_at(t, w->node, PS__LOC_RIDX(lw));
	bool moved;
	uint64_t s = ps__slot_lock(w, t, sl, &moved);
	if (moved)
		return 0;
	if (atomic_load_explicit(&sl->key, memory_order_relaxed) != k) {
		ps__slot_unlock(sl, s, false);
		return 0;
	}
	/* sum: the replica shows the node's own pushes at once; another
	 * rule is applied to the primary when the delta is merged, and the
	 * replica shows it after the next refresh */
	if (t->rule == PS_RULE_SUM)
		ps__add_values(sl, upd, t->value_len);
	struct ps__slot *d = delta_of(t, sl);
	ps__add_values(d, upd, t->value_len);
	/* relaxed: a hint for the next round, published by the unlock (RP7) */
	if (!atomic_load_explicit(&d->seq, memory_order_relaxed))
		atomic_store_explicit(&d->seq, 1, memory_order_relaxed);
	ps__slot_unlock(sl, s, false);
	return 1;
}

/*
 * Checkpoint access (checkpoint.c) to key k while lw, its location word,
 * is REPL.  Under repl_lock, so k stays replicated: out != NULL copies the
 * primary's nf floats (values and rule state; a ps_sync before the
 * checkpoint merged the deltas into it); in != NULL assigns them to the
 * primary, sets every node's replica to the values and drops every node's
 * pending delta (a restore replaces what was pushed).  Returns 1, or 0 if
 * loc[k] is no longer lw (re-read it).
 */
int ps__replica_access(ps_world *w, ps_table *t, ps_key k, uint64_t lw, uint32_t nf, uint32_t *out,
		       const uint32_t *in)
{
	repl_lock(w, t->d);
	/* acquire: as every load of a location word (kv.c KV1) */
	if (atomic_load_explicit(&t->loc[k], memory_order_acquire) != lw) {
		repl_unlock(t->d);
		return 0;
	}
	uint32_t r = PS__LOC_RIDX(lw);
	/* relaxed: under repl_lock (RP1) */
	uint64_t plw = atomic_load_explicit(&t->rprim[r], memory_order_relaxed);
	if (PS__LOC_IS_REMOTE(plw)) {
		/* checkpoints are refused in multi-host jobs (checkpoint.c) */
		repl_unlock(t->d);
		return PS_EMISMATCH;
	}
	struct ps__slot *p = (struct ps__slot *)(w->seg.base + PS__LOC_OFF(plw));
	uint64_t rseq[PS__MAX_NODES];
	if (in)
		for (int n = 0; n < w->nnodes; n++)
			rseq[n] = lock_any(w, t, ps__replica_at(t, n, r));
	uint64_t ps = lock_any(w, t, p); /* MOVED-marked (RP6) */
	/* relaxed: the slot locks order them (kv.c KV2) */
	for (uint32_t j = 0; j < nf; j++) {
		if (in)
			atomic_store_explicit(&p->v[j], in[j], memory_order_relaxed);
		else
			out[j] = atomic_load_explicit(&p->v[j], memory_order_relaxed);
	}
	ps__slot_unlock(p, ps, true); /* stays MOVED (RP6) */
	if (in) {
		for (int n = 0; n < w->nnodes; n++) {
			struct ps__slot *sl = ps__replica_at(t, n, r), *d = delta_of(t, sl);
			/* relaxed: under the replica's lock (RP2) */
			for (uint32_t j = 0; j < t->value_len; j++) {
				atomic_store_explicit(&sl->v[j], in[j], memory_order_relaxed);
				atomic_store_explicit(&d->v[j], 0, memory_order_relaxed);
			}
			atomic_store_explicit(&d->seq, 0, memory_order_relaxed); /* not dirty (RP7) */
			atomic_store_explicit(&d->key, 0, memory_order_relaxed); /* refresh again */
			ps__slot_unlock(sl, rseq[n], false);
		}
	}
	repl_unlock(t->d);
	return 1;
}

/* Is off the slot that key k lives in (or one of its replicas)?  Used by
 * lock recovery (kv.c KV5) to decide whether to mark a slot MOVED. */
bool ps__slot_current(ps_table *t, uint64_t k, uint64_t off)
{
	if (t->rprim) {
		uint64_t run = (uint64_t)2 * t->d->repl_max * t->slot_size;
		for (int n = 0; n < t->w->nnodes; n++)
			if (off >= t->d->rbase[n] && off < t->d->rbase[n] + run)
				return true; /* replica slots are never MOVED by recovery */
	}
	/* acquire: pairs with the publishing release stores */
	uint64_t lw = atomic_load_explicit(&t->loc[k], memory_order_acquire);
	if (lw & PS__LOC_REPL)
		return PS__LOC_OFF(atomic_load_explicit(&t->rprim[PS__LOC_RIDX(lw)], memory_order_relaxed)) == off;
	return PS__LOC_OFF(lw) == off;
}

/* --------------------------------------------------------------- rounds */

/* Adds buf into the primary of replica index r (caller holds repl_lock and
 * is in a read-side section; the primary cannot move, kv.c KV6, and stays
 * MOVED-marked, RP6). */
static void add_to_primary(ps_world *w, ps_table *t, uint32_t r, ps_key k, const float *buf)
{
	uint64_t plw = atomic_load_explicit(&t->rprim[r], memory_order_relaxed);
	struct ps__slot *p = (struct ps__slot *)(w->seg.base + PS__LOC_OFF(plw));
	uint64_t s = lock_any(w, t, p);
	if (atomic_load_explicit(&p->key, memory_order_relaxed) != k)
		stat_add(&w->me->stats.stale_reads, 1); /* RP1/KV6 broken: tests assert 0 */
	apply_delta(t, p, buf);
	ps__slot_unlock(p, s, true);
}

/* Moves node n's deltas into the primaries. */
static void merge_node(ps_world *w, ps_table *t, int n, float *buf)
{
	for (uint32_t r = 0; r < t->d->repl_max; r++) {
		/* relaxed: under repl_lock */
		uint64_t kp = atomic_load_explicit(&t->rkey[r], memory_order_relaxed);
		if (!kp || prim_remote(t, r)) /* remote rounds merge those (RP8) */
			continue;
		struct ps__slot *sl = ps__replica_at(t, n, r);
		/* relaxed: the dirty hint (RP7) */
		if (!atomic_load_explicit(&delta_of(t, sl)->seq, memory_order_relaxed))
			continue;
		bool moved;
		uint64_t s = ps__slot_lock(w, t, sl, &moved);
		if (moved)
			continue;
		bool any = take_delta(delta_of(t, sl), buf, t->value_len);
		ps__slot_unlock(sl, s, false);
		if (any)
			add_to_primary(w, t, r, kp - 1, buf);
	}
}

/* Rewrites node n's replicas as primary + delta (RP2). */
static void refresh_node(ps_world *w, ps_table *t, int n, float *buf)
{
	const uint32_t len = t->value_len;
	for (uint32_t r = 0; r < t->d->repl_max; r++) {
		uint64_t kp = atomic_load_explicit(&t->rkey[r], memory_order_relaxed);
		if (!kp || prim_remote(t, r)) /* remote rounds refresh those (RP8) */
			continue;
		uint64_t plw = atomic_load_explicit(&t->rprim[r], memory_order_relaxed);
		struct ps__slot *p = (struct ps__slot *)(w->seg.base + PS__LOC_OFF(plw));
		struct ps__slot *sl = ps__replica_at(t, n, r);
		struct ps__slot *d = delta_of(t, sl);
		/* acquire: as a seqlock reader's first load.  Unchanged since
		 * the last refresh: the replica is primary + delta already (RP7) */
		if (atomic_load_explicit(&p->seq, memory_order_acquire) ==
		    atomic_load_explicit(&d->key, memory_order_relaxed))
			continue;
		for (;;) {
			bool moved;
			uint64_t s = ps__slot_lock(w, t, sl, &moved);
			if (moved)
				break;
			uint64_t ps;
			int rc = try_read(p, kp - 1, buf, len, &ps, true);
			if (rc > 0) {
				for (uint32_t j = 0; j < len; j++) {
					uint32_t bits = atomic_load_explicit(&d->v[j], memory_order_relaxed);
					float f;
					memcpy(&f, &bits, sizeof f);
					buf[j] += f;
				}
				store_values(sl, buf, len);
				atomic_store_explicit(&d->key, ps, memory_order_relaxed); /* under the lock */
			}
			ps__slot_unlock(sl, s, false);
			if (rc != 0)
				break;
			/* primary locked: back off without holding the replica (RP4) */
			if (ps & PS__SEQ_LOCKED)
				ps__wait_unlocked(w, t, p, ps);
		}
	}
}

static bool replicated(ps_table *t)
{
	return t->rprim != NULL;
}

/* One round over nodes [n0, n1): merge all, then refresh all. */
static void round_nodes(ps_world *w, ps_table *t, int n0, int n1, float *buf)
{
	urcu_memb_read_lock();
	for (int n = n0; n < n1; n++)
		merge_node(w, t, n, buf);
	for (int n = n0; n < n1; n++)
		refresh_node(w, t, n, buf);
	urcu_memb_read_unlock();
	uint64_t now = ps__now_ns();
	for (int n = n0; n < n1; n++) {
		struct ps__stats *st = &ps__node_at(&w->seg, n)->stats;
		stat_add(&st->repl_rounds, 1);
		/* relaxed: a diagnostic timestamp */
		atomic_store_explicit(&st->repl_last_ns, now, memory_order_relaxed);
	}
}

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
		int rc = try_read(sl, k, out, t->value_len, &s, false);
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
	if (!replicated(t)) /* the ordinary copy is the primary */
		return in ? ps_push_sync(t, keys, n, in) : ps_pull_sync(t, keys, n, out);
	float *tmp = ps__alloc(w, sizeof(float) * len);
	if (!tmp)
		return -ENOMEM;
	int rc = 0;
	repl_lock(w, t->d); /* RP9: no round moves a delta meanwhile; RP10 */
	urcu_memb_read_lock();
	for (size_t i = 0; i < n && rc == 0; i++) {
		const ps_key k = keys[i];
		for (;;) {
			/* acquire: as every load of a location word (kv.c KV1) */
			uint64_t lw = atomic_load_explicit(&t->loc[k], memory_order_acquire);
			if (PS__LOC_IS_REMOTE(lw)) {
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
			if (prim_remote(t, r)) {
				rc = PS_EMISMATCH; /* replicated here, held elsewhere */
				break;
			}
			uint64_t plw = atomic_load_explicit(&t->rprim[r], memory_order_relaxed);
			struct ps__slot *p = (struct ps__slot *)(w->seg.base + PS__LOC_OFF(plw));
			if (in) {
				uint64_t s = lock_any(w, t, p); /* MOVED-marked (RP6) */
				apply_delta(t, p, in + i * len);
				ps__slot_unlock(p, s, true);
				break;
			}
			float *o = out + i * len;
			for (;;) {
				uint64_t s;
				int trc = try_read(p, k, o, len, &s, true);
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
	repl_unlock(t->d);
	ps__free(w, tmp);
	return rc;
}

/* Reads the primaries' totals of keys[i] at hosts[i] into out (RPULL)
 * and waits (no lock held but repl_xlock and remote-primary replica
 * locks, RP10).  Only multi-host jobs have primaries on other hosts. */
static int remote_pull(ps_table *t, const ps_key *keys, const uint16_t *hosts, size_t n, float *out)
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
static int rpush_hosts(ps_table *t, const ps_key *keys, const uint16_t *hosts, size_t n, const float *vals,
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
static int remote_round(ps_world *w, ps_table *t, int n0, int n1, bool refresh)
{
	const uint32_t len = t->value_len;
	struct rset s;
	float *buf = ps__alloc(w, sizeof(float) * len);
	if (!buf)
		return -ENOMEM;
	repl_lock(w, t->d);
	int rc = rset_collect(w, t, &s);
	if (rc) {
		repl_unlock(t->d);
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
			bool any = take_delta(delta_of(t, sl), buf, len);
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
	repl_unlock(t->d);
	if (np) {
		/* s.dirty now says, per pushed entry, whether its host failed */
		rc = rpush_hosts(t, s.keys, s.hosts, np, s.vals, s.dirty);
		if (rc) { /* nothing lost: what did not arrive goes back to this node */
			repl_lock(w, t->d);
			for (size_t i = 0; i < np; i++)
				if (s.dirty[i])
					give_back(w, t, w->node, s.ridx[i], s.keys[i], s.vals + i * len);
			repl_unlock(t->d);
		}
	}
	if (rc == 0 && refresh && s.m) {
		/* after the RPUSH completed: what we pull holds our deltas, so
		 * a replica never loses them (replica = pulled + delta) */
		rc = remote_pull(t, s.keys, s.hosts, s.m, s.vals);
		if (rc == 0) {
			repl_lock(w, t->d);
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
						store_values(sl, buf, len);
					}
					ps__slot_unlock(sl, sq, false);
				}
			}
			repl_unlock(t->d);
		}
	}
	rset_free(w, &s);
	ps__free(w, buf);
	return rc;
}

int ps_sync(ps_table *t)
{
	if (!t || t->magic != PS__TABLE_MAGIC)
		return PS_ETABLE;
	if (!replicated(t))
		return 0;
	ps_world *w = t->w;
	ps__thread_enter(w);
	float *buf = ps__alloc(w, sizeof(float) * t->value_len);
	if (!buf)
		return -ENOMEM;
	xlock(w, t->d); /* RP8: waits for a remote round in flight */
	repl_lock(w, t->d);
	round_nodes(w, t, 0, w->nnodes, buf);
	repl_unlock(t->d);
	int rc = 0;
	/* relaxed: a count, stable under repl_xlock (RP8) */
	if (w->nhosts > 1 && atomic_load_explicit(&t->d->repl_remote, memory_order_relaxed))
		rc = remote_round(w, t, 0, w->nnodes, true);
	xunlock(w, t->d);
	ps__free(w, buf);
	return rc;
}

bool ps__replica_step(ps_world *w)
{
	ps_table *tabs[PS__MAX_TABLES];
	int nt = 0;
	pthread_mutex_lock(&w->tables_lock);
	for (int i = 0; i < w->ntables; i++)
		if (w->tables[i] && replicated(w->tables[i]) && w->tables[i]->d->repl_rate > 0)
			tabs[nt++] = w->tables[i];
	pthread_mutex_unlock(&w->tables_lock);
	if (nt == 0)
		return false;
	uint64_t now = ps__now_ns();
	bool work = false;
	for (int i = 0; i < nt; i++) {
		ps_table *t = tabs[i];
		if (now < w->repl_next[t->id])
			continue;
		if (!repl_trylock(w, t->d))
			continue; /* another round or a switch: try again soon */
		float *buf = ps__alloc(w, sizeof(float) * t->value_len);
		if (buf) {
			round_nodes(w, t, w->node, w->node + 1, buf);
			ps__free(w, buf);
		}
		repl_unlock(t->d);
		w->repl_next[t->id] = now + (uint64_t)(1e9 / t->d->repl_rate);
		work = true;
		/* one remote round per host per period, by whichever service
		 * thread finds it due (RP8); relaxed: hints, re-read under the
		 * xlock */
		if (w->nhosts > 1 && atomic_load_explicit(&t->d->repl_remote, memory_order_relaxed) &&
		    now >= atomic_load_explicit(&t->d->repl_xnext, memory_order_relaxed) &&
		    word_trylock(w, &t->d->repl_xlock)) {
			/* relaxed: set under this xlock by finalize (RP8) */
			if (!atomic_load_explicit(&w->repl_closed, memory_order_relaxed) &&
			    now >= atomic_load_explicit(&t->d->repl_xnext, memory_order_relaxed)) {
				atomic_store_explicit(&t->d->repl_xnext, now + (uint64_t)(1e9 / t->d->repl_rate),
						      memory_order_relaxed);
				remote_round(w, t, 0, w->nnodes, true);
			}
			word_unlock(&t->d->repl_xlock);
		}
	}
	return work;
}

void ps__replica_flush(ps_world *w)
{
	ps__thread_enter(w);
	for (int i = 0; i < w->ntables; i++) {
		ps_table *t = w->tables[i];
		if (!t || !replicated(t))
			continue;
		float *buf = ps__alloc(w, sizeof(float) * t->value_len);
		if (!buf)
			continue;
		xlock(w, t->d);
		repl_lock(w, t->d);
		urcu_memb_read_lock();
		merge_node(w, t, w->node, buf);
		urcu_memb_read_unlock();
		repl_unlock(t->d);
		/* before the link closes (world.c): deltas of remote keys */
		if (w->nhosts > 1 && atomic_load_explicit(&t->d->repl_remote, memory_order_relaxed))
			remote_round(w, t, w->node, w->node + 1, false);
		/* relaxed: read under the xlock; the link closes next (world.c),
		 * so this process's service thread starts no remote round any
		 * more, and the one it may have run is over (we hold the xlock) */
		atomic_store_explicit(&w->repl_closed, true, memory_order_relaxed);
		xunlock(w, t->d);
		ps__free(w, buf);
	}
}

/* ------------------------------------------------------- set membership */

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
		uint32_t r = t->rfree[--d->repl_nfree];
		for (int n = 0; n < w->nnodes; n++) {
			struct ps__slot *rs = ps__replica_at(t, n, r);
			uint64_t rsq = lock_any(w, t, rs);
			atomic_store_explicit(&rs->key, k, memory_order_relaxed);
			store_values(rs, buf, t->value_len);
			struct ps__slot *ds = delta_of(t, rs);
			for (uint32_t j = 0; j < t->value_len; j++)
				atomic_store_explicit(&ds->v[j], 0, memory_order_relaxed);
			atomic_store_explicit(&ds->seq, 0, memory_order_relaxed);
			/* the primary's seq after the unlock below (RP7) */
			atomic_store_explicit(&ds->key, (s + PS__SEQ_VER1) | PS__SEQ_MOVED, memory_order_relaxed);
			ps__slot_unlock(rs, rsq & ~(PS__SEQ_MOVED | PS__SEQ_FREED), false);
		}
		/* relaxed: published by the release store of loc[k] below (RP1) */
		atomic_store_explicit(&t->rprim[r], lw, memory_order_relaxed);
		atomic_store_explicit(&t->rkey[r], k + 1, memory_order_relaxed);
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
		rseq[n] = lock_any(w, t, ps__replica_at(t, n, r));
	struct ps__slot *p = (struct ps__slot *)(w->seg.base + PS__LOC_OFF(plw));
	uint64_t ps = lock_any(w, t, p); /* MOVED-marked (RP6) */
	for (int n = 0; n < w->nnodes; n++)
		if (take_delta(delta_of(t, ps__replica_at(t, n, r)), buf, t->value_len))
			apply_delta(t, p, buf);
	/* release: pushes and pulls that load it find the primary (locked
	 * until its values hold every delta) */
	atomic_store_explicit(&t->loc[k], plw, memory_order_release);
	ps__slot_unlock(p, ps & ~PS__SEQ_MOVED, false); /* an ordinary slot again */
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
	for (int n = 0; n < w->nnodes; n++) {
		struct ps__slot *rs = ps__replica_at(t, n, r);
		uint64_t rsq = lock_any(w, t, rs);
		atomic_store_explicit(&rs->key, k, memory_order_relaxed);
		store_values(rs, vals, t->value_len);
		struct ps__slot *ds = delta_of(t, rs);
		for (uint32_t j = 0; j < t->value_len; j++)
			atomic_store_explicit(&ds->v[j], 0, memory_order_relaxed);
		atomic_store_explicit(&ds->seq, 0, memory_order_relaxed);
		atomic_store_explicit(&ds->key, 0, memory_order_relaxed);
		ps__slot_unlock(rs, rsq & ~(PS__SEQ_MOVED | PS__SEQ_FREED), false);
	}
	/* relaxed: published by the release store of loc[k] below (RP1) */
	atomic_store_explicit(&t->rprim[r], lw, memory_order_relaxed);
	atomic_store_explicit(&t->rkey[r], k + 1, memory_order_relaxed);
	/* release: replicas, rprim and rkey are visible to whoever acquires
	 * the REPL word */
	atomic_store_explicit(&t->loc[k], PS__LOC_MAKE_REPL(r), memory_order_release);
	/* relaxed: counts, under repl_lock */
	atomic_fetch_add_explicit(&d->repl_used, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&d->repl_remote, 1, memory_order_relaxed);
}

/* Keys replicated here whose primary is on another host, being dropped
 * (RP8): their replicas stay locked while the deltas travel. */
struct rdrop {
	size_t m;
	ps_key *keys;
	uint16_t *hosts;
	uint32_t *ridx;
	float *vals;
	uint64_t *rseq;   /* m x nnodes */
	uint8_t *failed;  /* per key: its deltas did not reach the holder */
};

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
	ps__free(w, s->failed);
	ps__free(w, s->keys);
	ps__free(w, s->hosts);
	ps__free(w, s->ridx);
	ps__free(w, s->vals);
	ps__free(w, s->rseq);
	return -ENOMEM;
}

static void rdrop_free(ps_world *w, struct rdrop *s)
{
	ps__free(w, s->failed);
	ps__free(w, s->keys);
	ps__free(w, s->hosts);
	ps__free(w, s->ridx);
	ps__free(w, s->vals);
	ps__free(w, s->rseq);
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
		s->rseq[i * (size_t)w->nnodes + n] = lock_any(w, t, sl);
		if (take_delta(delta_of(t, sl), buf, len))
			for (uint32_t j = 0; j < len; j++)
				s->vals[i * len + j] += buf[j];
	}
	return 0;
}

/* Ends the drops of s (caller holds repl_lock): a key whose deltas
 * arrived publishes its REMOTE word and frees its index; the others' go
 * back to this node's delta and they stay replicated.  Returns the number
 * switched. */
static int drop_finish(ps_world *w, ps_table *t, struct rdrop *s)
{
	struct ps__tdesc *d = t->d;
	const uint32_t len = t->value_len;
	int done = 0;
	for (size_t i = 0; i < s->m; i++) {
		uint32_t r = s->ridx[i];
		if (s->failed[i]) {
			struct ps__slot *dl = delta_of(t, ps__replica_at(t, w->node, r));
			ps__add_values(dl, s->vals + i * len, len);
			atomic_store_explicit(&dl->seq, 1, memory_order_relaxed); /* dirty (RP7) */
			for (int n = 0; n < w->nnodes; n++)
				ps__slot_unlock(ps__replica_at(t, n, r), s->rseq[i * (size_t)w->nnodes + n], false);
			continue;
		}
		uint64_t plw = atomic_load_explicit(&t->rprim[r], memory_order_relaxed);
		/* release: as in unreplicate_one; the deltas are at the holder */
		atomic_store_explicit(&t->loc[s->keys[i]], plw, memory_order_release);
		for (int n = 0; n < w->nnodes; n++) /* MOVED: stale users re-read loc[k] */
			ps__slot_unlock(ps__replica_at(t, n, r), s->rseq[i * (size_t)w->nnodes + n] & ~PS__SEQ_FREED,
					true);
		atomic_store_explicit(&t->rkey[r], 0, memory_order_relaxed);
		t->rfree[d->repl_nfree++] = r;
		atomic_fetch_sub_explicit(&d->repl_used, 1, memory_order_relaxed);
		atomic_fetch_sub_explicit(&d->repl_remote, 1, memory_order_relaxed);
		done++;
	}
	return done;
}

/* Pushes the taken deltas of s that are non-zero (no lock but repl_xlock
 * and the dropped keys' replica locks held, RP10); s->failed says which
 * did not arrive. */
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
	rc = rpush_hosts(t, k, h, np, vals, failed);
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
	xlock(w, t->d);
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
		if (nr && (rc = remote_pull(t, rk, rh, nr, rv)) != 0)
			goto out;
	}
	repl_lock(w, t->d);
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
		repl_unlock(t->d);
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
		repl_unlock(t->d);
		rc = drop_push(t, &rd, pv);
		repl_lock(w, t->d);
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
		if (at) {
			replicate_remote_one(w, t, add[i], lw, rv + (size_t)(at - rk) * len);
			done++;
		}
	}
	repl_unlock(t->d);
out:
	if (w->nhosts > 1) {
		if (rd.keys)
			rdrop_free(w, &rd);
		ps__free(w, rk);
		ps__free(w, rh);
		ps__free(w, rv);
		ps__free(w, pv);
	}
	xunlock(w, t->d);
	ps__free(w, buf);
	return rc ? rc : done;
}

int ps_replicate(ps_table *t, const ps_key *keys, size_t n)
{
	int rc = ps__check_keys(t, keys, n);
	if (rc)
		return rc;
	if (!replicated(t))
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
	if (rc || !replicated(t))
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
	if (k > (replicated(t) ? t->d->repl_max : 0))
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
	rc = replicated(t) ? switch_keys(t, top, n, NULL, 0, true) : 0;
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
	return replicated(t) ? atomic_load_explicit(&t->d->repl_used, memory_order_relaxed) : 0;
}

/* ------------------------------------------------------------- creation */

void ps__replica_bind(ps_world *w, ps_table *t)
{
	struct ps__tdesc *d = t->d;
	if (d->count_off)
		t->counts = ps__at(&w->seg, d->count_off);
	if (d->repl_max == 0)
		return;
	uint64_t R = d->repl_max;
	t->rprim = ps__at(&w->seg, d->repl_off);
	t->rkey = t->rprim + R;
	t->rfree = (uint32_t *)(void *)(t->rkey + R);
}

int ps__replica_init_node(ps_world *w, ps_table *t)
{
	struct ps__tdesc *d = t->d;
	ps__replica_bind(w, t);
	if (d->repl_max == 0)
		return 0;
	uint64_t R = d->repl_max;
	uint64_t off;
	int rc = ps__slot_alloc_run(w, t->id, w->node, t->slot_size, 2 * R, &off);
	if (rc)
		return rc;
	for (uint64_t i = 0; i < 2 * R; i++) {
		struct ps__slot *sl = ps__at(&w->seg, off + i * t->slot_size);
		/* relaxed: published by the creation barrier */
		atomic_store_explicit(&sl->seq, PS__SEQ_MOVED, memory_order_relaxed);
		atomic_store_explicit(&sl->key, UINT64_MAX, memory_order_relaxed);
		for (uint32_t j = 0; j < t->value_len; j++)
			atomic_store_explicit(&sl->v[j], 0, memory_order_relaxed);
	}
	d->rbase[w->node] = off; /* read by others after the creation barrier */
	return 0;
}
