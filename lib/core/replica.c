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
 *        installs it under repl_lock; ps_unreplicate takes the deltas
 *        (each under its replica's lock, released at once), RPUSHes them
 *        holding no lock but repl_xlock, so pulls and pushes of the key
 *        go on meanwhile (no reader spins in a read-side section for a
 *        round trip), then locks the replicas again: if the RPUSH arrived
 *        and no push came meanwhile (delta clean, RP7) it publishes the
 *        REMOTE word and unlocks (MOVED), so a reader never finds the key
 *        without its own host's pushes; otherwise the key stays
 *        replicated (new deltas go with the next remote round; failed
 *        ones go back to the delta) and is not counted as switched.
 *   (RP9) A holder answers RPUSH by adding into the key's primary (through
 *        ps__push_key if it is not replicated there) and RPULL with the
 *        primary plus every node's pending delta (sum rule: the exact total
 *        of what reached this host; other rules: the primary), both under
 *        its repl_lock, so no local round moves a delta while it reads.
 *        An RPUSH is all or nothing: a batch naming a key not held here
 *        is refused before any key is applied, since its sender gives
 *        every delta of a refused batch back.
 *   (RP10) No deadlock across hosts.  A thread that waits for a reply of
 *        another host holds at most repl_xlock (no slot lock: the
 *        deltas travel already taken); never repl_lock, never a lock of
 *        a key this host holds.  A link thread serving a request
 *        takes only repl_lock and locks of keys this host holds (another
 *        host never asks about a key it holds itself: check_request),
 *        never repl_xlock, and never waits for another host.  So no wait
 *        for a reply waits, through any chain, for itself.  (One link
 *        thread use of repl_xlock: the backup host of a lost holder makes
 *        its promoted copy the primary, lib/net/backup.c BK12; it only
 *        tries repl_xlock and repl_lock, and waits for nothing while it
 *        holds them.)
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
#include "table.h"

static inline uint64_t slot_off(ps_world *w, struct ps__slot *sl)
{
	return (uint64_t)((char *)sl - w->seg.base);
}

/* Applies a merged delta to a locked primary with the table's rule. */
void ps__rp_apply_delta(ps_table *t, struct ps__slot *p, const float *delta)
{
	if (t->rule == PS_RULE_SUM)
		ps__add_values(p, delta, t->value_len);
	else
		ps__rule_apply(t, p, delta); /* rules.c: the summed update of a round */
}

/* ------------------------------------------------------------ repl_lock */

/*
 * (RP11) Repair after a dead holder of repl_lock (lock.c LO2).  The holder
 * may have died anywhere in a switch: after popping a free index and
 * before publishing it (the index would leak), between the install's
 * writes (rkey[r] set, loc[k] not yet REPL|r), or in an unreplicate
 * between republishing loc[k] and freeing r (rkey[r] still k + 1).  The
 * shared words say which indexes are in use: r is in use iff rkey[r] =
 * k + 1 and loc[k] = REPL|r, RP1's own statement.  The repair rebuilds
 * everything else from that: every other index gets rkey 0, its replica
 * slots MOVED (a stale user re-reads loc[k], RP5) and a place on the free
 * stack; repl_used and repl_remote are recounted; where loc[k] names
 * an ordinary primary that a half-done switch left MOVED-marked, the mark
 * goes, and the local primary of every key in use is marked MOVED (RP6:
 * an install cut short after publishing REPL|r had not marked it yet).
 * Until the repair a stale pusher may still add into such a primary; the
 * next refresh shows it (RP7 reads the primary's seq), so no push is lost.  Slot locks the dead holder
 * had are recovered the usual way (kv.c KV5, restart.c RS1) by the slot
 * locks taken here.  A dead holder of repl_xlock needs nothing of its own:
 * what it held across a round trip were deltas, lost with it (the
 * "unfinished batch" above), and the words are repl_lock's.
 */
static void repair(ps_world *w, struct ps__tdesc *d)
{
	ps_table t;
	ps__table_bind(w, (int)(d - ps__tdesc_at(&w->seg, 0)), &t);
	uint32_t nfree = 0, used = 0, remote = 0;
	urcu_memb_read_lock();
	for (uint32_t r = 0; r < d->repl_max; r++) {
		/* relaxed: under repl_lock, whose EOWNERDEAD take is an acquire */
		uint64_t kp = atomic_load_explicit(&t.rkey[r], memory_order_relaxed);
		uint64_t plw = atomic_load_explicit(&t.rprim[r], memory_order_relaxed);
		if (kp && kp <= t.num_keys) {
			uint64_t lw = atomic_load_explicit(&t.loc[kp - 1], memory_order_acquire);
			if (lw == PS__LOC_MAKE_REPL(r)) {
				used++;
				remote += PS__LOC_IS_REMOTE(plw);
				if (!PS__LOC_IS_REMOTE(plw)) {
					/* RP6 again: an install cut short between
					 * publishing REPL and marking the primary */
					struct ps__slot *p = (struct ps__slot *)(w->seg.base + PS__LOC_OFF(plw));
					uint64_t s = ps__rp_lock_any(w, &t, p);
					ps__slot_unlock(p, s, true);
				}
				continue;
			}
			if (lw == plw && !PS__LOC_IS_REMOTE(lw)) {
				/* half-done switch: the primary is the key's slot */
				struct ps__slot *p = (struct ps__slot *)(w->seg.base + PS__LOC_OFF(lw));
				uint64_t s = ps__rp_lock_any(w, &t, p);
				ps__slot_unlock(p, s & ~PS__SEQ_MOVED, false);
			}
		}
		atomic_store_explicit(&t.rkey[r], 0, memory_order_relaxed);
		for (int n = 0; n < w->nnodes; n++) {
			struct ps__slot *rs = ps__replica_at(&t, n, r);
			uint64_t s = ps__rp_lock_any(w, &t, rs);
			ps__slot_unlock(rs, s & ~PS__SEQ_FREED, true);
		}
		t.rfree[nfree++] = r;
	}
	urcu_memb_read_unlock();
	d->repl_nfree = nfree;
	/* relaxed: counts, under repl_lock */
	atomic_store_explicit(&d->repl_used, used, memory_order_relaxed);
	atomic_store_explicit(&d->repl_remote, remote, memory_order_relaxed);
}

static bool took(ps_world *w, struct ps__tdesc *d, pthread_mutex_t *m, int rc)
{
	if (rc < 0)
		return false;
	if (rc == 1) { /* previous holder died inside (RP11) */
		if (m == &d->repl_lock)
			repair(w, d);
		ps__lock_consistent(m);
	}
	return true;
}

bool ps__rp_repl_trylock(ps_world *w, struct ps__tdesc *d) { return took(w, d, &d->repl_lock, ps__trylock(&d->repl_lock)); }
void ps__rp_repl_lock(ps_world *w, struct ps__tdesc *d) { took(w, d, &d->repl_lock, ps__lock(&d->repl_lock)); }
void ps__rp_repl_unlock(struct ps__tdesc *d) { ps__unlock(&d->repl_lock); }

/* repl_xlock (RP8): only in multi-host jobs; taken before repl_lock. */
void ps__rp_xlock(ps_world *w, struct ps__tdesc *d)
{
	if (w->nhosts > 1) {
		took(w, d, &d->repl_xlock, ps__lock(&d->repl_xlock));
		PS__KILL_POINT(PS__KP_XLOCKED);
	}
}

bool ps__rp_xtrylock(ps_world *w, struct ps__tdesc *d)
{
	return took(w, d, &d->repl_xlock, ps__trylock(&d->repl_xlock));
}

void ps__rp_xunlock(ps_world *w, struct ps__tdesc *d)
{
	if (w->nhosts > 1)
		ps__unlock(&d->repl_xlock);
}

/* ------------------------------------------------------------ slot help */

/* Locks sl even if it is MOVED (a replica slot being reinitialised). */
uint64_t ps__rp_lock_any(ps_world *w, ps_table *t, struct ps__slot *sl)
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

void ps__rp_store_values(struct ps__slot *sl, const float *src, uint32_t len)
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
bool ps__rp_take_delta(struct ps__slot *delta, float *buf, uint32_t len)
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
int ps__rp_try_read(struct ps__slot *sl, ps_key k, float *buf, uint32_t len, uint64_t *seq, bool primary)
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
		int rc = ps__rp_try_read(sl, k, out, t->value_len, &s, false);
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
	ps__rp_repl_lock(w, t->d);
	/* acquire: as every load of a location word (kv.c KV1) */
	if (atomic_load_explicit(&t->loc[k], memory_order_acquire) != lw) {
		ps__rp_repl_unlock(t->d);
		return 0;
	}
	uint32_t r = PS__LOC_RIDX(lw);
	/* relaxed: under repl_lock (RP1) */
	uint64_t plw = atomic_load_explicit(&t->rprim[r], memory_order_relaxed);
	if (PS__LOC_IS_REMOTE(plw)) {
		/* checkpoints are refused in multi-host jobs (checkpoint.c) */
		ps__rp_repl_unlock(t->d);
		return PS_EMISMATCH;
	}
	struct ps__slot *p = (struct ps__slot *)(w->seg.base + PS__LOC_OFF(plw));
	uint64_t rseq[PS__MAX_NODES];
	if (in)
		for (int n = 0; n < w->nnodes; n++)
			rseq[n] = ps__rp_lock_any(w, t, ps__replica_at(t, n, r));
	uint64_t ps = ps__rp_lock_any(w, t, p); /* MOVED-marked (RP6) */
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
	ps__rp_repl_unlock(t->d);
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
