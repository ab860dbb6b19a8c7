/*
 * kv.c - pull, push and localize on one host: the per-key protocol.
 *
 * Per-key linearizability.  Invariants:
 *   (KV1) loc[k] names the one live slot of key k.  It changes only by a
 *        relocator holding the lock of the slot loc[k] names, with a release
 *        store made after the new slot is fully written.
 *   (KV2) Every write to a slot's values (push, relocation copy) happens with
 *        the slot's lock bit set in its seq word, the writer's node id beside
 *        it; unlock adds one version (release).  Readers copy seqlock-style
 *        and never write shared lines.
 *   (KV3) A relocated slot is unlocked with MOVED set and never written again;
 *        anyone who finds MOVED re-reads loc[k] and retries.  So a push is
 *        applied either to the old slot before the copy or to the new one.
 *   (KV4) Every access runs inside a liburcu read-side section from its load
 *        of loc[k] until it is done with the slot; a slot is freed only after
 *        a grace period covering all nodes (grace.c).  A slot whose key word
 *        is not k, or that is FREED, is a violation: counted in stale_reads
 *        (tests assert 0) and retried.
 *   (KV5) A lock held by a dead process is recovered by the first waiter that
 *        sees the holder dead: version +1, MOVED set if loc[k] has already
 *        moved away (the relocator died after publishing).
 *   (KV6) A location word with PS__LOC_REPL names a replica index, not a
 *        slot (replica.c); such a word, and the slot it replaced, change
 *        only under the table's repl_lock.  A relocator re-reads loc[k]
 *        after locking the slot and gives up if it changed, so a key that
 *        became replicated under it is never relocated.
 *
 * Memory order of the seqlock (Boehm, "Can seqlocks get along with
 * programming language memory models?", 2012): writer = CAS(lock, acquire);
 * fence(release); relaxed data stores; store(seq+1, release).  Reader =
 * load(seq, acquire); relaxed data loads; fence(acquire); load(seq, relaxed).
 * The pull and push paths do the data accesses as plain wide moves between
 * the same barriers, as Linux and DPDK do (relaxed atomics under a
 * sanitizer): why that is right is written in psmem_static.h, beside them.
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <urcu/urcu-memb.h>

#include "segment.h"
#include "util.h"
#include "world.h"
#include "arena.h"
#include "kv.h"
#include "lock.h"
#include "tctx.h"
#include "replica.h"
#include "grace.h"
#include "rules.h"

static inline struct ps__slot *slot_at(ps_world *w, uint64_t locw)
{
	return (struct ps__slot *)(w->seg.base + PS__LOC_OFF(locw));
}

static inline uint64_t loc_load(ps_table *t, ps_key k)
{
	/* acquire: pairs with the release publish in relocate()/init; the
	 * slot's seq, key and values written before it are visible */
	return atomic_load_explicit(&t->loc[k], memory_order_acquire);
}

static inline void stat_add(_Atomic uint64_t *c, uint64_t v)
{
	/* relaxed: statistics counter, orders nothing */
	atomic_fetch_add_explicit(c, v, memory_order_relaxed);
}

#ifdef PS_TEST_HOOKS
/* test builds only: runs right after a recovery's CAS (test_crash) */
void (*ps__test_recover_hook)(ps_world *w, ps_table *t, struct ps__slot *sl);
#endif

/*
 * One CAS takes the lock word from "locked by the dead holder" straight to
 * "unlocked, version + 1, MOVED if loc[k] no longer names this slot" (KV5).
 * MOVED is decided before the CAS: the location word cannot change while
 * the slot is locked (KV1), and the dead holder holds it until the CAS.  An
 * unlock followed by a second store setting MOVED would let a pusher that
 * loaded the old location lock the slot in between, add into a slot that
 * has moved (a lost update), and clear MOVED again with its unlock (an
 * orphan slot that looks live).
 */
bool ps__slot_recover(ps_world *w, ps_table *t, struct ps__slot *sl, uint64_t s)
{
	uint64_t base = s & ~(PS__SEQ_LOCKED | (0xffffULL << PS__SEQ_HOLDER_SHIFT));
	uint64_t nv = base + PS__SEQ_VER1;
	if (t) {
		/* the dead relocator may have published already (KV5); relaxed:
		 * the key word of a locked slot does not change, and the
		 * location word is read with acquire in ps__slot_current */
		uint64_t k = atomic_load_explicit(&sl->key, memory_order_relaxed);
		if (k < t->num_keys && !ps__slot_current(t, k, (uint64_t)((char *)sl - w->seg.base)))
			nv |= PS__SEQ_MOVED;
	}
	/* acq_rel: acquire the dead holder's stores (what it wrote stays);
	 * release them, with the unlock, to the next locker */
	if (!atomic_compare_exchange_strong_explicit(&sl->seq, &s, nv, memory_order_acq_rel, memory_order_relaxed))
		return false;
#ifdef PS_TEST_HOOKS
	if (ps__test_recover_hook)
		ps__test_recover_hook(w, t, sl);
#endif
	return true;
}

/* Recovers a lock held by a dead node (KV5).  A lock of a dead earlier
 * incarnation of this very node was freed when its replacement attached
 * (restart.c), so holder == w->node is always a live holder. */
static void recover_lock(ps_world *w, ps_table *t, struct ps__slot *sl, uint64_t s)
{
	int holder = PS__SEQ_HOLDER(s);
	if (holder < 0 || holder >= w->nnodes || holder == w->node || ps__node_alive(&w->seg, holder))
		return;
	ps__mark_dead(&w->seg, holder);
	ps__slot_recover(w, t, sl, s);
}

/* Waits while the slot is locked; returns the first unlocked seq seen. */
uint64_t ps__wait_unlocked(ps_world *w, ps_table *t, struct ps__slot *sl, uint64_t s)
{
	unsigned spins = 0;
	bool waiting = false;
	while (s & PS__SEQ_LOCKED) {
		if (++spins < 128) {
			ps__cpu_relax();
		} else {
			if (!waiting) {
				ps__wait_set(w, PS__WAIT_SLOTLOCK, (uint64_t)((char *)sl - w->seg.base),
					     (uint64_t)PS__SEQ_HOLDER(s));
				waiting = true;
			}
			sched_yield();
			if ((spins & 1023) == 0)
				recover_lock(w, t, sl, s);
		}
		/* acquire: when it reads unlocked, the holder's writes are visible */
		s = atomic_load_explicit(&sl->seq, memory_order_acquire);
	}
	if (waiting)
		ps__wait_clear(w);
	return s;
}

/*
 * Locks sl for node w->node.  Returns the unlocked seq value it replaced;
 * *moved is set (and nothing locked) if the slot has MOVED or been FREED.
 */
uint64_t ps__slot_lock(ps_world *w, ps_table *t, struct ps__slot *sl, bool *moved)
{
	uint64_t holder = ((uint64_t)w->node + 1) << PS__SEQ_HOLDER_SHIFT;
	uint64_t s = atomic_load_explicit(&sl->seq, memory_order_relaxed);
	for (;;) {
		if (s & PS__SEQ_LOCKED)
			s = ps__wait_unlocked(w, t, sl, s);
		if (s & (PS__SEQ_MOVED | PS__SEQ_FREED)) {
			*moved = true;
			return s;
		}
		/* acquire: the previous holder's value stores happen before ours */
		if (atomic_compare_exchange_weak_explicit(&sl->seq, &s, s | PS__SEQ_LOCKED | holder,
							  memory_order_acquire, memory_order_relaxed))
			break;
	}
	/* release fence: our later relaxed value stores cannot become visible
	 * before the lock bit; a reader that sees one of them then sees LOCKED
	 * or a newer version when it re-checks seq */
	atomic_thread_fence(memory_order_release);
	*moved = false;
	return s;
}

void ps__slot_unlock(struct ps__slot *sl, uint64_t s, bool moved)
{
	/* release: the value stores made under the lock happen before the new
	 * version is seen */
	atomic_store_explicit(&sl->seq, (s + PS__SEQ_VER1) | (moved ? PS__SEQ_MOVED : 0), memory_order_release);
}

int ps__check_keys(ps_table *t, const ps_key *keys, size_t n)
{
	if (!t || t->magic != PS__TABLE_MAGIC)
		return PS_ETABLE;
	if (n && !keys)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (keys[i] >= t->num_keys)
			return PS_EKEY;
	return 0;
}

/*
 * Values of the pull and push paths move wide (ps__vload, ps__vadd in
 * psmem_static.h, where the argument for the seqlock's plain wide copies
 * is written; relaxed atomics under a sanitizer).  Relocation copies
 * (copy_slot) stay relaxed 64-bit atomics on pairs of floats (v[] is 8-byte
 * aligned: a 16-byte header in a 16-byte aligned slot), the odd last float
 * alone: within the C11 model, and off the hot path.
 */
static inline _Atomic uint64_t *pairs(struct ps__slot *sl)
{
	return (_Atomic uint64_t *)(void *)sl->v;
}

void ps__copy_out(uint32_t *dst, struct ps__slot *sl, uint32_t len)
{
	ps__vload(dst, (void *)sl->v, len); /* fast path: wide (psmem_static.h) */
}

static void copy_slot(struct ps__slot *to, struct ps__slot *from, uint32_t len)
{
	_Atomic uint64_t *d = pairs(to), *sp = pairs(from);
	for (uint32_t j = 0; j < len / 2; j++)
		atomic_store_explicit(&d[j], atomic_load_explicit(&sp[j], memory_order_relaxed), memory_order_relaxed);
	if (len & 1)
		atomic_store_explicit(&to->v[len - 1], atomic_load_explicit(&from->v[len - 1], memory_order_relaxed),
				      memory_order_relaxed);
}

/* Under the slot lock (or PS_HOGWILD).  An AVX2 clone where the CPU has
 * it (chosen once, at load, by the dynamic linker's ifunc). */
#if !defined(PS_SANITIZE) && defined(__x86_64__)
__attribute__((target_clones("avx2", "default")))
#endif
void ps__add_values(struct ps__slot *sl, const float *upd, uint32_t len)
{
	ps__vadd((void *)sl->v, upd, len); /* fast path: wide (psmem_static.h) */
}

/* Copies key k's values into out (seqlock read).  Returns owner node, or
 * -1 if another host holds k (multi-host jobs). */
static int pull_one(ps_world *w, ps_table *t, ps_key k, float *out)
{
	const uint32_t len = t->value_len;
	uint32_t *dst = (uint32_t *)out;
	for (;;) {
		uint64_t lw = loc_load(t, k);
		if (PS__LOC_IS_REMOTE(lw))
			return -1;
		if (lw & PS__LOC_REPL) {
			if (ps__replica_pull(w, t, k, lw, out))
				return PS__MAX_NODES + w->node;
			continue; /* no longer replicated: re-read loc[k] */
		}
		struct ps__slot *sl = slot_at(w, lw);
		/* acquire: the data loads below stay after it */
		uint64_t s1 = atomic_load_explicit(&sl->seq, memory_order_acquire);
		if (s1 & PS__SEQ_LOCKED)
			s1 = ps__wait_unlocked(w, t, sl, s1);
		if (s1 & (PS__SEQ_MOVED | PS__SEQ_FREED)) {
			if (s1 & PS__SEQ_FREED)
				stat_add(&w->me->stats.stale_reads, 1);
			stat_add(&w->me->stats.retries, 1);
			continue;
		}
		ps__copy_out(dst, sl, len);
		uint64_t key = atomic_load_explicit(&sl->key, memory_order_relaxed);
		/* acquire fence: the data loads above complete before the re-check */
		atomic_thread_fence(memory_order_acquire);
		uint64_t s2 = atomic_load_explicit(&sl->seq, memory_order_relaxed);
		if (s1 != s2) {
			if (s2 & PS__SEQ_FREED) /* freed under our feet: (KV4) broken */
				stat_add(&w->me->stats.stale_reads, 1);
			stat_add(&w->me->stats.retries, 1);
			continue;
		}
		if (key != k) {
			stat_add(&w->me->stats.stale_reads, 1);
			continue;
		}
		return PS__LOC_OWNER(lw);
	}
}

/* Returns the owner that took the update; PS__MAX_NODES + node for a
 * replica; -1 if another host holds k (nothing applied).  Runs inside a
 * read-side section. */
int ps__push_key(ps_world *w, ps_table *t, ps_key k, const float *upd)
{
	for (;;) {
		uint64_t lw = loc_load(t, k);
		if (PS__LOC_IS_REMOTE(lw))
			return -1;
		if (lw & PS__LOC_REPL) {
			if (ps__replica_push(w, t, k, lw, upd))
				return PS__MAX_NODES + w->node;
			continue;
		}
		struct ps__slot *sl = slot_at(w, lw);
		if (t->flags & PS_HOGWILD) {
			/* opt-in race: no lock; an add racing a relocation of the
			 * same key may be lost (documented) */
			uint64_t s = atomic_load_explicit(&sl->seq, memory_order_acquire);
			if (s & (PS__SEQ_MOVED | PS__SEQ_FREED))
				continue;
			ps__add_values(sl, upd, t->value_len);
			return PS__LOC_OWNER(lw);
		}
		bool moved;
		uint64_t s = ps__slot_lock(w, t, sl, &moved);
		if (moved) {
			if (s & PS__SEQ_FREED)
				stat_add(&w->me->stats.stale_reads, 1);
			stat_add(&w->me->stats.retries, 1);
			continue;
		}
		if (atomic_load_explicit(&sl->key, memory_order_relaxed) != k) {
			ps__slot_unlock(sl, s, false);
			stat_add(&w->me->stats.stale_reads, 1);
			continue;
		}
		if (t->rule != PS_RULE_SUM) { /* update rules (rules.c) */
			ps__rule_apply(t, sl, upd);
			ps__slot_unlock(sl, s, false);
			return PS__LOC_OWNER(lw);
		}
#ifdef PS_TEST_HOOKS
		if (w->die_mid_add) { /* half of the add, then die (test_crash) */
			ps__add_values(sl, upd, t->value_len / 2);
			raise(SIGKILL);
		}
#endif
		ps__add_values(sl, upd, t->value_len); /* sum: the fast path, kept straight */
		ps__slot_unlock(sl, s, false);
		return PS__LOC_OWNER(lw);
	}
}

/*
 * Software pipelining of a batch (memory-level parallelism).  Each key costs
 * two dependent misses: its location word, then its slot.  Without help the
 * CPU serialises them key after key (and a push's lock CAS is a full barrier
 * on x86).  So PF_DIST keys ahead we prefetch the location word, and
 * PF_DIST/2 keys ahead we read it (relaxed, as an address hint only) and
 * prefetch the slot's first lines.  A hint never faults (every offset lies in the mapping) and a
 * stale one only wastes a line: the access itself re-loads loc[k] with
 * acquire.
 */
#ifndef PF_DIST
#define PF_DIST 32
#endif
#ifndef PF_LINES
#define PF_LINES 8
#endif

static inline void prefetch_loc(ps_table *t, const ps_key *keys, size_t i, size_t n)
{
	if (i < n)
		__builtin_prefetch((const void *)&t->loc[keys[i]], 0, 3);
}

static inline void prefetch_slot(ps_world *w, ps_table *t, const ps_key *keys, size_t i, size_t n, int rw)
{
	if (i >= n)
		return;
	/* relaxed: an address hint, see above */
	uint64_t lw = atomic_load_explicit(&t->loc[keys[i]], memory_order_relaxed);
	const char *p = w->seg.base + PS__LOC_OFF(lw);
	uint32_t lines = (t->slot_size + PS__CL - 1) / PS__CL;
	if (lines > PF_LINES)
		lines = PF_LINES;
	for (uint32_t l = 0; l < lines; l++) {
		if (rw)
			__builtin_prefetch(p + (size_t)l * PS__CL, 1, 3);
		else
			__builtin_prefetch(p + (size_t)l * PS__CL, 0, 3);
	}
}

static inline void prefetch_step(ps_world *w, ps_table *t, const ps_key *keys, size_t i, size_t n, int rw)
{
	prefetch_loc(t, keys, i + PF_DIST, n);
	prefetch_slot(w, t, keys, i + PF_DIST / 2, n, rw);
}

static inline void prefetch_start(ps_world *w, ps_table *t, const ps_key *keys, size_t n, int rw)
{
	for (size_t i = 0; i < PF_DIST && i < n; i++)
		prefetch_loc(t, keys, i, n);
	for (size_t i = 0; i < PF_DIST / 2 && i < n; i++)
		prefetch_slot(w, t, keys, i, n, rw);
}

/* Statistics of one pull or push batch (and PS_COUNT_ACCESS counters). */
static void count_batch(ps_world *w, ps_table *t, const ps_key *keys, size_t n, bool pull, uint64_t local,
			uint64_t repl)
{
	if (t->counts)
		for (size_t i = 0; i < n; i++) /* relaxed: a counter */
			atomic_fetch_add_explicit(&t->counts[keys[i]], 1, memory_order_relaxed);
	ps__count_keys(w, pull, n, local, repl); /* per-thread counters (tctx.c) */
}

/*
 * Pulls (into out) or pushes (from in) a validated batch inside one
 * read-side section, and counts it.  Exactly one of out and in is used.
 * Keys held by other hosts go through the bridge: with async, the caller
 * gets them in flight in *async (ps_wait completes them); without, this
 * waits for them.
 */
static int run_batch(ps_table *t, const ps_key *keys, size_t n, float *out, const float *in,
		     struct ps__rgroup **async)
{
	int rc = ps__check_keys(t, keys, n);
	if (rc == 0 && n && !out && !in)
		rc = -EINVAL;
	if (rc)
		return rc;
	ps_world *w = t->w;
	ps__thread_enter(w);
	/* multi-host: keys of other hosts are routed through the bridge */
	if (w->net)
		return w->net->route_batch(t, keys, n, out, in, async);
	const size_t len = t->value_len;
	uint64_t local = 0, repl = 0;
	const int rw = out ? 0 : 1;
	urcu_memb_read_lock();
	prefetch_start(w, t, keys, n, rw);
	for (size_t i = 0; i < n; i++) {
		prefetch_step(w, t, keys, i, n, rw);
		int o = out ? pull_one(w, t, keys[i], out + i * len) : ps__push_key(w, t, keys[i], in + i * len);
		if (o < 0 && rc == 0)
			rc = PS_EHOSTDOWN; /* a late remote key failed (LK5) */
		local += (o & (PS__MAX_NODES - 1)) == w->node;
		repl += o >= PS__MAX_NODES;
	}
	urcu_memb_read_unlock();
	count_batch(w, t, keys, n, out != NULL, local, repl);
	return 0;
}

void ps__local_keys(ps_table *t, const ps_key *keys, const uint32_t *pos, size_t m, float *out,
		    const float *in, uint32_t *miss, size_t *nmiss, uint64_t *local, uint64_t *repl)
{
	ps_world *w = t->w;
	const size_t len = t->value_len;
	urcu_memb_read_lock();
	for (size_t j = 0; j < m; j++) {
		size_t i = pos ? pos[j] : j;
		if (j + 8 < m) /* the location word a few keys ahead */
			__builtin_prefetch((const void *)&t->loc[keys[pos ? pos[j + 8] : j + 8]], 0, 3);
		int o = out ? pull_one(w, t, keys[i], out + i * len) : ps__push_key(w, t, keys[i], in + i * len);
		if (o < 0) {
			miss[(*nmiss)++] = (uint32_t)i;
			continue;
		}
		*local += (o & (PS__MAX_NODES - 1)) == w->node;
		*repl += o >= PS__MAX_NODES;
	}
	urcu_memb_read_unlock();
}

void ps__count_batch(ps_world *w, ps_table *t, const ps_key *keys, size_t n, bool pull, uint64_t local,
		     uint64_t repl)
{
	count_batch(w, t, keys, n, pull, local, repl);
}

int ps__pull_batch(ps_table *t, const ps_key *keys, size_t n, float *values)
{
	return run_batch(t, keys, n, values, NULL, NULL);
}

int ps__push_batch(ps_table *t, const ps_key *keys, size_t n, const float *updates)
{
	return run_batch(t, keys, n, NULL, updates, NULL);
}

/* Few keys take the inline path here too (psmem_static.h), which hands
 * the rest to ps__pull_batch / ps__push_batch. */
int ps_pull_sync(ps_table *t, const ps_key *keys, size_t n, float *values)
{
	return ps_pull_sync_inline(t, keys, n, values);
}

int ps_push_sync(ps_table *t, const ps_key *keys, size_t n, const float *updates)
{
	return ps_push_sync_inline(t, keys, n, updates);
}

/* A fresh slot: keep its version counting up, clear the flags. */
static struct ps__slot *fresh_slot(ps_world *w, uint64_t off, ps_key k)
{
	struct ps__slot *nw = ps__at(&w->seg, off);
	uint64_t ns = atomic_load_explicit(&nw->seq, memory_order_relaxed);
	ns = (ns & ~(PS__SEQ_LOCKED | PS__SEQ_MOVED | PS__SEQ_FREED | (0xffffULL << PS__SEQ_HOLDER_SHIFT))) +
	     PS__SEQ_VER1;
	/* relaxed: published by the release store of the location word */
	atomic_store_explicit(&nw->seq, ns, memory_order_relaxed);
	atomic_store_explicit(&nw->key, k, memory_order_relaxed);
	return nw;
}

void ps__slot_fill(ps_world *w, ps_table *t, uint64_t off, ps_key k, const uint32_t *vals)
{
	struct ps__slot *nw = fresh_slot(w, off, k);
	const uint32_t nf = t->value_len + t->state_len;
	for (uint32_t j = 0; j < nf; j++) /* relaxed: published as above */
		atomic_store_explicit(&nw->v[j], vals[j], memory_order_relaxed);
}

/*
 * Locks the slot that word lw names, if it still holds key k: returns it
 * (*s: the seq to unlock with), or NULL when the caller must re-read
 * loc[k] (the slot MOVED, the word changed under the lock, KV6, or the
 * slot holds another key, counted as a stale read).
 */
static struct ps__slot *lock_current(ps_world *w, ps_table *t, ps_key k, uint64_t lw, uint64_t *s)
{
	struct ps__slot *old = slot_at(w, lw);
	bool moved;
	*s = ps__slot_lock(w, t, old, &moved);
	if (moved) {
		stat_add(&w->me->stats.retries, 1);
		return NULL;
	}
	if (loc_load(t, k) != lw) {
		ps__slot_unlock(old, *s, false);
		return NULL;
	}
	if (atomic_load_explicit(&old->key, memory_order_relaxed) != k) {
		ps__slot_unlock(old, *s, false);
		stat_add(&w->me->stats.stale_reads, 1);
		return NULL;
	}
	return old;
}

int ps__slot_give(ps_world *w, ps_table *t, ps_key k, uint64_t newword, uint32_t *vals, struct ps__retired *ret)
{
	for (;;) {
		uint64_t lw = loc_load(t, k), s;
		if (PS__LOC_IS_REMOTE(lw) || (lw & PS__LOC_REPL))
			return 0;
		struct ps__slot *old = lock_current(w, t, k, lw, &s);
		if (!old)
			continue;
		ps__copy_out(vals, old, t->value_len + t->state_len);
		/* release: orders nothing new (the word names no slot); a
		 * pusher that finds the old slot MOVED re-reads it (KV3) */
		atomic_store_explicit(&t->loc[k], newword, memory_order_release);
		ps__slot_unlock(old, s, true);
		ret->off = PS__LOC_OFF(lw);
		ret->table = t->id;
		ret->node = PS__LOC_OWNER(lw);
		return 1;
	}
}

/*
 * Moves key k into this node's pool (KV1, KV3).  Returns 1 if it moved, 0 if
 * it was local already, FAR if another host holds it (migrate.c moves it),
 * or a negative code; the old slot goes to *retired.
 */
#define FAR 2
static int relocate(ps_world *w, ps_table *t, ps_key k, struct ps__retired *retired)
{
	for (;;) {
		uint64_t lw = loc_load(t, k);
		int owner = PS__LOC_OWNER(lw);
		if (PS__LOC_IS_REMOTE(lw))
			return FAR;
		/* local already, or replicated (local everywhere) */
		if (owner == w->node || (lw & PS__LOC_REPL))
			return 0;
		uint64_t s;
		struct ps__slot *old = lock_current(w, t, k, lw, &s);
		if (!old)
			continue;
		uint64_t noff;
		int rc = ps__slot_alloc(w, t->id, w->node, t->slot_size, &noff);
		if (rc) {
			ps__slot_unlock(old, s, false);
			return rc;
		}
		struct ps__slot *nw = fresh_slot(w, noff, k);
		copy_slot(nw, old, t->value_len + t->state_len); /* values and rule state */
		/* release: the new slot's seq, key and values are visible to
		 * whoever acquires the new location word (KV1) */
		atomic_store_explicit(&t->loc[k], PS__LOC_MAKE(w->node, noff), memory_order_release);
#ifdef PS_TEST_HOOKS
		if (w->die_after_publish) /* KV5's MOVED branch (test_crash) */
			raise(SIGKILL);
#endif
		ps__slot_unlock(old, s, true);
		retired->off = PS__LOC_OFF(lw);
		retired->table = t->id;
		retired->node = owner;
		return 1;
	}
}

/*
 * This node's pool is full.  If slots of it wait for a grace period
 * (retired by relocations away from us, or given to another host), the full
 * pool is temporary: wait, outside any read-side section, until one is
 * freed.  Gives up after 1 s with nothing retired, or 10 s in all (a
 * reclaimer that died leaves its retired count behind).  Shared by the
 * moves within a host (ps__localize_keys) and from other hosts
 * (migrate.c ps__migrate_in, before its LOCK step: MG6).
 *
 * On the service thread (an asynchronous ps_localize) waiting alone would
 * deadlock for the 10 s: that thread is the only one that advances this
 * node's epoch, which every reclaimer of our pool waits for (GR1), and
 * meanwhile reclamation stalls for the whole job.  So there it runs the
 * grace steps and reclaims itself while it waits (GR5).
 */
bool ps__wait_free_slot(ps_world *w, ps_table *t)
{
	struct ps__pool *p = ps__pool_at(&w->seg, t->id, w->node);
	const bool service = ps__on_service_thread(w);
	bool ok = false;
	/* deadlines in time, not in rounds: a loaded (or sanitized) process
	 * sleeps longer than asked in each round */
	const uint64_t t0 = ps__now_ns(), second = 1000 * 1000 * 1000ULL;
	ps__wait_set(w, PS__WAIT_GRACE, (uint64_t)t->id, 0);
#ifdef PS_TEST_HOOKS /* test builds only: reclamation was held for this wait (test_hosts_move) */
	/* relaxed: a test switch; the doorbell below wakes the service thread */
	atomic_store_explicit(&w->hold_reclaim, false, memory_order_relaxed);
#endif
	for (uint64_t now = t0; !ok && now - t0 < 10 * second; now = ps__now_ns()) {
		/* relaxed: hints; the allocator re-checks under the pool lock.
		 * Nothing retired yet: another node may be relocating our keys
		 * away right now (its batch is retired at the end), so still
		 * wait a little (1 s) before calling the pool full. */
		if (now - t0 >= second && atomic_load_explicit(&p->retired, memory_order_relaxed) == 0)
			break;
		if (service) {
			/* outside any read-side section: synchronize is allowed */
			ps__grace_step(w);
			ps__reclaim(w, false);
		} else {
			ps__doorbell(w);
		}
		usleep(500);
		/* free_head is written only under the pool lock (segment.h), so
		 * read it under the lock too: an unlocked read raced with the
		 * reclaimer's plain store (TSan, test_hosts_move).  A dead holder
		 * left the pool's few fields consistent, as in arena.c. */
		if (ps__lock(&p->lock) == 1)
			ps__lock_consistent(&p->lock);
		ok = p->free_head != 0;
		ps__unlock(&p->lock);
	}
	ps__wait_clear(w);
	return ok;
}

/* Relocates keys[0..n) to this node, in chunks of one read-side section
 * each; the old slots of each chunk are retired together. */
int ps__localize_keys(ps_table *t, const ps_key *keys, size_t n)
{
	enum { CHUNK = 256 };
	ps_world *w = t->w;
	ps__thread_enter(w);
	int rc = 0;
	size_t i = 0, nfar = 0;
	ps_key *far = NULL; /* keys held by other hosts */
	while (i < n) {
		size_t m = n - i < CHUNK ? n - i : CHUNK;
		struct ps__retire_batch *b = ps__alloc(w, sizeof *b + m * sizeof b->e[0]);
		if (!b)
			return -ENOMEM;
		b->n = 0;
		size_t done = 0;
		urcu_memb_read_lock();
		prefetch_start(w, t, keys + i, m, 1);
		for (; done < m; done++) {
			prefetch_step(w, t, keys + i, done, m, 1);
			rc = relocate(w, t, keys[i + done], &b->e[b->n]);
			if (rc == FAR) {
				if (!far && !(far = ps__alloc(w, n * sizeof *far))) {
					rc = -ENOMEM;
					break;
				}
				far[nfar++] = keys[i + done];
				rc = 0;
				continue;
			}
			if (rc < 0)
				break;
			b->n += (size_t)rc;
		}
		urcu_memb_read_unlock();
		i += done;
		if (b->n) {
			stat_add(&w->me->stats.relocations, b->n);
			ps__retire(w, b); /* takes ownership */
		} else {
			ps__free(w, b);
		}
		if (rc == PS_EFULL && ps__wait_free_slot(w, t))
			rc = 0; /* retry from the key that failed */
		if (rc < 0) {
			ps__free(w, far);
			return rc;
		}
	}
	rc = nfar && w->net ? w->net->migrate_in(t, far, nfar) : 0;
	ps__free(w, far);
	return rc;
}

int ps_localize_sync(ps_table *t, const ps_key *keys, size_t n)
{
	int rc = ps__check_keys(t, keys, n);
	if (rc)
		return rc;
	return ps__localize_keys(t, keys, n);
}

int ps_owner(ps_table *t, ps_key key)
{
	int rc = ps__check_keys(t, &key, 1);
	if (rc)
		return rc;
	uint64_t lw = loc_load(t, key);
	if (PS__LOC_IS_REMOTE(lw))
		return -EREMOTE;
	return (lw & PS__LOC_REPL) ? t->w->node : PS__LOC_OWNER(lw);
}

int ps_owner_host(ps_table *t, ps_key key)
{
	int rc = ps__check_keys(t, &key, 1);
	if (rc)
		return rc;
	uint64_t lw = loc_load(t, key);
	if ((lw & PS__LOC_REPL) && t->rprim) /* replicated here, maybe held elsewhere (replica.c RP8) */
		lw = atomic_load_explicit(&t->rprim[PS__LOC_RIDX(lw)], memory_order_relaxed);
	return PS__LOC_IS_REMOTE(lw) ? PS__LOC_OWNER(lw) : t->w->host;
}

/* ------------------------------------------------------------- handles */

/*
 * Handles.  A request is never returned to the allocator while its world
 * lives: ps_wait puts it on the world's free list (req_lock) and bumps its
 * generation, and ps_finalize frees them all.  The handle given out is the
 * request's address with its generation in the top 16 bits (user-space
 * addresses are below 2^48 on x86-64 and AArch64; a request above that
 * gets no tag).  So ps_wait on a handle already waited reads memory that is
 * still ours (defined, ASan-clean) and finds the generation changed:
 * PS_EHANDLE, even after the request was reused for another call (until
 * the same request's generation wraps, 65536 reuses later).  A handle used
 * after ps_finalize is PS_EHANDLE too (no world: nothing is read).
 */
#define H_SHIFT 48
#define H_ADDR ((UINT64_C(1) << H_SHIFT) - 1)

static ps_handle handle_of(struct ps_req *r)
{
	uint64_t a = (uint64_t)(uintptr_t)r;
	if (!r || (a >> H_SHIFT))
		return r;
	/* relaxed: our own request, not yet visible to anyone */
	uint64_t g = atomic_load_explicit(&r->gen, memory_order_relaxed) & 0xffff;
	return (ps_handle)(uintptr_t)(a | (g << H_SHIFT));
}

static struct ps_req *req_of(ps_handle h, uint32_t *gen)
{
	uint64_t a = (uint64_t)(uintptr_t)h;
	*gen = (uint32_t)(a >> H_SHIFT);
	return (struct ps_req *)(uintptr_t)(a & H_ADDR);
}

static ps_handle new_req(ps_world *w, enum ps__op op, ps_table *t, const ps_key *keys, size_t n)
{
	pthread_mutex_lock(&w->req_lock);
	struct ps_req *r = w->req_free;
	if (r)
		w->req_free = r->next_free;
	pthread_mutex_unlock(&w->req_lock);
	if (!r) {
		r = ps__alloc(w, sizeof *r);
		if (!r)
			return NULL;
		atomic_init(&r->gen, 0);
		pthread_mutex_lock(&w->req_lock);
		r->next_all = w->req_all;
		w->req_all = r;
		pthread_mutex_unlock(&w->req_lock);
	}
	cds_wfcq_node_init(&r->qn);
	r->magic = PS__REQ_MAGIC;
	r->op = op;
	r->t = t;
	r->keys = keys;
	r->n = n;
	r->result = 0;
	r->remote = NULL;
	atomic_init(&r->done, 0);
	return r;
}

/* Back on the free list; its handles are stale from now on. */
static void put_req(ps_world *w, struct ps_req *r)
{
	r->magic = 0;
	/* relaxed: see struct ps_req */
	atomic_fetch_add_explicit(&r->gen, 1, memory_order_relaxed);
	pthread_mutex_lock(&w->req_lock);
	r->next_free = w->req_free;
	w->req_free = r;
	pthread_mutex_unlock(&w->req_lock);
}

/* Thread-free world lookup for handles of a rejected table. */
static ps_world *table_world(ps_table *t)
{
	return (t && t->magic == PS__TABLE_MAGIC) ? t->w : NULL;
}

static struct ps_req failed_table = {.magic = PS__REQ_MAGIC, .result = PS_ETABLE, .done = 1};

static ps_handle done_req(ps_table *t, enum ps__op op, int result)
{
	ps_world *w = table_world(t);
	if (!w)
		return &failed_table; /* static: ps_wait does not free it */
	struct ps_req *r = new_req(w, op, t, NULL, 0);
	if (!r)
		return NULL;
	r->result = result;
	atomic_store_explicit(&r->done, 1, memory_order_relaxed);
	return handle_of(r);
}

/* A completed handle that may still have keys of other hosts in flight. */
static ps_handle batch_req(ps_table *t, enum ps__op op, const ps_key *keys, size_t n, float *out, const float *in)
{
	struct ps__rgroup *remote = NULL;
	int rc = run_batch(t, keys, n, out, in, &remote);
	ps_handle h = done_req(t, op, rc);
	uint32_t gen;
	if (remote && !h)
		t->w->net->remote_wait(t->w, remote); /* no handle to carry it */
	else if (remote)
		req_of(h, &gen)->remote = remote;
	return h;
}

ps_handle ps_pull(ps_table *t, const ps_key *keys, size_t n, float *values)
{
	return batch_req(t, PS__OP_PULL, keys, n, values, NULL);
}

ps_handle ps_push(ps_table *t, const ps_key *keys, size_t n, const float *updates)
{
	return batch_req(t, PS__OP_PUSH, keys, n, NULL, updates);
}

ps_handle ps_localize(ps_table *t, const ps_key *keys, size_t n)
{
	int rc = ps__check_keys(t, keys, n);
	if (rc)
		return done_req(t, PS__OP_LOCALIZE, rc);
	ps_world *w = t->w;
	struct ps_req *r = new_req(w, PS__OP_LOCALIZE, t, keys, n);
	if (!r)
		return NULL;
	stat_add(&w->me->stats.localize_reqs, 1);
	ps_handle h = handle_of(r); /* before the service thread may see r */
	PS__TSAN_RELEASE(r);
	cds_wfcq_enqueue(&w->req_head, &w->req_tail, &r->qn);
	ps__doorbell(w);
	return h;
}

/* Runs by the service thread: executes one queued request. */
void ps__req_execute(struct ps_req *r)
{
	PS__TSAN_ACQUIRE(r);
	r->result = ps__localize_keys(r->t, r->keys, r->n);
	/* release: result is visible to the waiter that acquires done */
	atomic_store_explicit(&r->done, 1, memory_order_release);
	ps__futex_wake(&r->done, 1, false);
}

int ps_wait(ps_handle hd)
{
	uint32_t gen;
	struct ps_req *h = req_of(hd, &gen);
	if (h == &failed_table)
		return PS_ETABLE;
	/* after ps_finalize every request is freed: read nothing */
	if (!h || !ps__world_any())
		return PS_EHANDLE;
	/* relaxed: see struct ps_req */
	if ((atomic_load_explicit(&h->gen, memory_order_relaxed) & 0xffff) != gen || h->magic != PS__REQ_MAGIC)
		return PS_EHANDLE;
	ps_world *w = h->t->w;
	unsigned spins = 0;
	/* acquire: pairs with the release in ps__req_execute */
	while (!atomic_load_explicit(&h->done, memory_order_acquire)) {
		if (++spins < 256) {
			ps__cpu_relax();
			continue;
		}
		ps__wait_set(w, PS__WAIT_REQUEST, (uint64_t)h->op, h->n);
		ps__futex_wait(&h->done, 0, 10 * 1000 * 1000, false);
		ps__wait_clear(w);
	}
	int rc = h->result;
	if (h->remote) {
		int rrc = w->net->remote_wait(w, h->remote);
		rc = rc ? rc : rrc;
	}
	put_req(w, h);
	return rc;
}
