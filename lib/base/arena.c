/*
 * arena.c - slot pools inside node arenas, the shared region, and the
 * job's memory budget.
 *
 * Invariants
 *   - Each (table, node) has one pool: a run of `cap` slots reserved in the
 *     node's arena when the table is created (a virtual reservation), handed
 *     out by a bump index and recycled through a free list.  Pool fields
 *     change only under pool->lock.
 *   - A slot on the free list has FREED set in its seq word, its first
 *     values poisoned (PS__POISON, a NaN), and the offset of the next free slot in
 *     its key word.  It is put there only after a grace period (grace.c), so
 *     no reader can still hold its offset.
 *   - Bytes the job may touch are charged against hdr->mem_budget in
 *     PS__CHUNK granules before the bump crosses into them; a refused charge
 *     is PS_EFULL.  Location tables are charged when created.
 *   - A pool lock held by a dead process is taken over by the next locker
 *     (a robust mutex, lock.c); pool updates are ordered so that a holder
 *     dying between stores leaves at worst a leaked slot, never a slot
 *     handed out twice (pool_lock).
 */
#include <errno.h>
#include <sched.h>
#include <string.h>

#include "segment.h"
#include "util.h"
#include "world.h"
#include "arena.h"
#include "lock.h"

int ps__budget_charge(struct ps__seg *s, uint64_t bytes)
{
	struct ps__hdr *h = s->hdr;
	/* relaxed: a counter; the pool lock or create_lock orders what it pays for */
	uint64_t prev = atomic_fetch_add_explicit(&h->mem_committed, bytes, memory_order_relaxed);
	if (prev + bytes > h->mem_budget) {
		atomic_fetch_sub_explicit(&h->mem_committed, bytes, memory_order_relaxed);
		return PS_EFULL;
	}
	return 0;
}

int ps__shared_alloc(struct ps__seg *s, uint64_t size, uint64_t *off)
{
	struct ps__hdr *h = s->hdr;
	size = PS__ALIGN(size, PS__HUGE);
	/* relaxed: callers hold create_lock, which orders the region's use */
	uint64_t used = atomic_load_explicit(&h->shared_used, memory_order_relaxed);
	if (used + size > h->shared_size)
		return PS_ENOMEMSEG;
	int rc = ps__budget_charge(s, size);
	if (rc)
		return rc;
	atomic_store_explicit(&h->shared_used, used + size, memory_order_relaxed);
	*off = h->shared_off + used;
	return 0;
}

/* The pool lock (lock.c).  Pool updates are ordered so that a holder
 * dying between its stores leaves at worst a leaked slot or an
 * over-charged budget, never a slot handed out twice: the pop is the one
 * store of free_head, a push links the run before that store, a bump
 * charges before it moves.  So a taker after a dead holder has nothing
 * to repair (LO2). */
static void pool_lock(struct ps__pool *p)
{
	if (ps__lock(&p->lock) == 1)
		ps__lock_consistent(&p->lock);
}

static void pool_unlock(struct ps__pool *p)
{
	ps__unlock(&p->lock);
}

int ps__pool_reserve(ps_world *w, int table, uint64_t cap, uint32_t slot_size)
{
	struct ps__seg *s = &w->seg;
	uint64_t bytes = PS__ALIGN(cap * slot_size, PS__HUGE);
	for (int i = 0; i < w->nnodes; i++) {
		struct ps__node *n = ps__node_at(s, i);
		/* relaxed: the caller holds create_lock */
		uint64_t used = atomic_load_explicit(&n->arena_used, memory_order_relaxed);
		if (used + bytes > n->arena_size)
			return PS_EFULL;
	}
	for (int i = 0; i < w->nnodes; i++) {
		struct ps__node *n = ps__node_at(s, i);
		struct ps__pool *p = ps__pool_at(s, table, i);
		uint64_t used = atomic_load_explicit(&n->arena_used, memory_order_relaxed);
		ps__lock_init(&p->lock); /* LO1: nobody uses the pool before READY */
		p->bump = p->free_head = p->committed = 0;
		atomic_store_explicit(&p->used, 0, memory_order_relaxed);
		atomic_store_explicit(&p->retired, 0, memory_order_relaxed);
		p->base_off = n->arena_off + used;
		p->cap = cap;
		atomic_store_explicit(&n->arena_used, used + bytes, memory_order_relaxed);
	}
	return 0;
}

/* Charges the budget for slots [bump, bump + n) of p; under the pool lock. */
static int charge_for(struct ps__seg *s, struct ps__pool *p, uint64_t n, uint32_t slot_size)
{
	uint64_t need = (p->bump + n) * slot_size;
	if (need <= p->committed)
		return 0;
	uint64_t add = PS__ALIGN(need - p->committed, ps__charge_unit(s->hdr)); /* whole huge pages on hugetlbfs */
	int rc = ps__budget_charge(s, add);
	if (rc == 0)
		p->committed += add;
	return rc;
}

int ps__slot_alloc_run(ps_world *w, int table, int node, uint32_t slot_size, uint64_t n, uint64_t *first)
{
	struct ps__pool *p = ps__pool_at(&w->seg, table, node);
	int rc = 0;
	pool_lock(p);
	if (p->bump + n > p->cap)
		rc = PS_EFULL;
	else
		rc = charge_for(&w->seg, p, n, slot_size);
	if (rc == 0) {
		*first = p->base_off + p->bump * slot_size;
		p->bump += n;
		atomic_fetch_add_explicit(&p->used, n, memory_order_relaxed);
	}
	pool_unlock(p);
	return rc;
}

int ps__slot_alloc(ps_world *w, int table, int node, uint32_t slot_size, uint64_t *off)
{
	struct ps__pool *p = ps__pool_at(&w->seg, table, node);
	pool_lock(p);
	PS__KILL_POINT(PS__KP_POOL_LOCKED);
	uint64_t head = p->free_head;
	if (head) {
		struct ps__slot *sl = ps__at(&w->seg, head);
		/* relaxed: the pool lock orders the free list */
		p->free_head = atomic_load_explicit(&sl->key, memory_order_relaxed);
		atomic_fetch_add_explicit(&p->used, 1, memory_order_relaxed);
		pool_unlock(p);
		*off = head;
		return 0;
	}
	pool_unlock(p);
	return ps__slot_alloc_run(w, table, node, slot_size, 1, off);
}

/* Marks a slot FREED and poisons its first values (see the invariants). */
static void poison(struct ps__slot *sl, uint32_t value_len)
{
	/* only the first values: a stale reader is caught by FREED and the key
	 * check; the poison makes its copy visibly wrong as well, and writing
	 * every line of a big slot would cost more than the relocation */
	for (uint32_t j = 0; j < value_len && j < 16; j++)
		atomic_store_explicit(&sl->v[j], PS__POISON, memory_order_relaxed);
	/* relaxed: nobody may read this slot any more (grace period over);
	 * FREED makes a violation of that visible to the stale-read check */
	uint64_t seq = atomic_load_explicit(&sl->seq, memory_order_relaxed);
	atomic_store_explicit(&sl->seq, (seq | PS__SEQ_FREED) & ~PS__SEQ_MOVED, memory_order_relaxed);
}

void ps__slots_free(ps_world *w, int table, int node, const uint64_t *offs, size_t n, uint32_t value_len)
{
	if (n == 0)
		return;
	struct ps__pool *p = ps__pool_at(&w->seg, table, node);
	/* chain the run first, outside the lock: offs[0] -> offs[1] -> ... */
	for (size_t i = 0; i < n; i++) {
		struct ps__slot *sl = ps__at(&w->seg, offs[i]);
		poison(sl, value_len);
		if (i + 1 < n)
			atomic_store_explicit(&sl->key, offs[i + 1], memory_order_relaxed);
	}
	struct ps__slot *last = ps__at(&w->seg, offs[n - 1]);
	pool_lock(p);
	atomic_store_explicit(&last->key, p->free_head, memory_order_relaxed);
	p->free_head = offs[0];
	atomic_fetch_sub_explicit(&p->used, n, memory_order_relaxed);
	pool_unlock(p);
	atomic_fetch_sub_explicit(&p->retired, n, memory_order_relaxed);
}
