/*
 * barrier.c - barriers across the threads of all nodes (process-shared
 * futex on a segment word).
 *
 * Invariants
 *   - A barrier generation completes when `total` arrivals have been
 *     counted.  The last arriver resets count to 0, then bumps gen with
 *     release and wakes all; waiters sleep on gen and leave when it differs
 *     from the value they arrived in.  count is reset before gen moves, so
 *     a thread of the next generation cannot arrive early.
 *   - A waiter wakes every 100 ms to check the nodes; if a node is DEAD (or
 *     ALIVE with no process) or has EXITED, the barrier cannot complete and
 *     the waiter returns PS_EDEAD instead of hanging.
 */
#include <errno.h>
#include <limits.h>

#include "psmem_int.h"

static bool some_node_gone(ps_world *w)
{
	for (int i = 0; i < w->nnodes; i++) {
		/* acquire: pairs with the state stores of attach/finalize/psrun */
		uint32_t st = atomic_load_explicit(&ps__node_at(&w->seg, i)->state, memory_order_acquire);
		if (st == PS__NODE_DEAD || st == PS__NODE_EXITED)
			return true;
		if (st == PS__NODE_ALIVE && i != w->node && !ps__node_alive(&w->seg, i)) {
			ps__mark_dead(&w->seg, i);
			return true;
		}
	}
	return false;
}

int ps__barrier_wait(ps_world *w, struct ps__barrier *b)
{
	/* acquire: we must read the generation before arriving */
	uint32_t gen = atomic_load_explicit(&b->gen, memory_order_acquire);
	/* acq_rel: our writes before the barrier are released to the last
	 * arriver, who releases them again through gen */
	uint32_t n = atomic_fetch_add_explicit(&b->count, 1, memory_order_acq_rel) + 1;
	/* relaxed: total changes only before the barrier's first use */
	if (n == atomic_load_explicit(&b->total, memory_order_relaxed)) {
		atomic_store_explicit(&b->count, 0, memory_order_relaxed);
		/* release: everything every participant did before arriving */
		atomic_store_explicit(&b->gen, gen + 1, memory_order_release);
		ps__futex_wake(&b->gen, INT_MAX, true);
		return 0;
	}
	ps__wait_set(w, PS__WAIT_BARRIER, gen, (uint64_t)(b == &w->seg.hdr->nodes));
	int rc = 0;
	/* acquire: pairs with the last arriver's release of gen */
	while (atomic_load_explicit(&b->gen, memory_order_acquire) == gen) {
		int r = ps__futex_wait(&b->gen, gen, 100 * 1000 * 1000, true);
		if (r == -ETIMEDOUT && some_node_gone(w)) {
			rc = PS_EDEAD;
			break;
		}
	}
	ps__wait_clear(w);
	return rc;
}

int ps_barrier(ps_world *w)
{
	if (!w)
		return -EINVAL;
	ps__thread_enter(w);
	int rc = ps__barrier_wait(w, &w->seg.hdr->workers);
	/* multi-host hook: then every host's threads (bridge_link.c) */
	if (rc == 0 && w->link)
		rc = ps__link_barrier_workers(w);
	return rc;
}
