/*
 * barrier.c - barriers across the threads of all nodes (process-shared
 * futex on a segment word), and their replay by a restarted node.
 *
 * Participants: the node barrier has one per node (the thread making
 * collective calls: table creation, checkpoints); the workers' barrier has
 * ps_num_threads() per node, worker slot s of node n (ps_run_workers' index
 * s, or a first-come slot for other threads; world.c).
 *
 * Invariants
 *   (BR1) Each participant has a clock in the segment (ps__node.nb_clock,
 *        ps__node.ws[s].clock): the number of barriers it has arrived at.
 *        Its i-th call (from 0) arrives by storing i + 1 (seq_cst).  Only
 *        the participant's thread writes it; it never decreases.
 *   (BR2) gen counts completed barriers.  Barrier i is complete when every
 *        participant's clock is past i; whoever finds that - an arriver
 *        right after its store, or a waiter after a 100 ms timeout - moves
 *        gen from i to i + 1 (CAS) and wakes the waiters.  Stores and scans
 *        are seq_cst, so of two last arrivers at least one sees the other;
 *        an arriver that died before scanning is covered by the waiters'
 *        timeout scans.
 *   (BR3) gen never passes i + 1 while a participant's clock is at most i,
 *        so a participant making call i finds gen == i and waits for i + 1.
 *   (BR4) Replay: a process that took over a dead node (restart.c) starts
 *        with calls = 0 and replay = its predecessor's clock.  Its first
 *        `replay` calls do not arrive again (the predecessor did); they
 *        only wait for gen to pass them.  So the replacement re-runs the
 *        program's control flow from the start and meets the job where its
 *        predecessor left it; ps_replaying() tells the program which steps
 *        were done already.
 *   (BR5) Liveness: a waiter looks at the nodes it waits for every 100 ms.
 *        With psrun --on-failure abort (the default), a node that is DEAD,
 *        EXITED, or ALIVE with its process gone fails the barrier with
 *        PS_EDEAD (PS_EEXITED when every such node is EXITED: it finalized
 *        normally) instead of hanging.  With --on-failure restart, a DEAD
 *        node is waited for: psrun starts its replacement (or stops the
 *        job); an EXITED node still fails it (PS_EEXITED).
 */
#include <errno.h>
#include <limits.h>

#include "segment.h"
#include "util.h"
#include "world.h"
#include "barrier.h"

/* a before b, modulo 2^32 */
static inline bool before(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b) < 0;
}

static bool is_node_barrier(const struct ps__seg *s, const struct ps__barrier *b)
{
	return b == &s->hdr->nodes;
}

static _Atomic uint32_t *clock_of(const struct ps__seg *s, const struct ps__barrier *b, int node, int slot)
{
	struct ps__node *n = ps__node_at(s, node);
	return is_node_barrier(s, b) ? &n->nb_clock : &n->ws[slot].clock;
}

int ps__barrier_missing(const struct ps__seg *s, const struct ps__barrier *b, uint32_t idx, int *nodes, int *nnodes)
{
	/* relaxed: total is set before the barrier's first use */
	uint32_t total = atomic_load_explicit(&((struct ps__barrier *)b)->total, memory_order_relaxed);
	int nn = (int)s->hdr->num_nodes, per = (int)(total / (uint32_t)nn), missing = 0, listed = 0;
	for (int n = 0; n < nn; n++) {
		bool counted = false;
		for (int k = 0; k < per; k++) {
			/* seq_cst: pairs with the arrivals' stores (BR2) */
			uint32_t c = atomic_load_explicit(clock_of(s, b, n, k), memory_order_seq_cst);
			if (!before(c, idx + 1))
				continue;
			missing++;
			if (!nodes)
				return missing; /* a completion test needs no count */
			if (!counted)
				nodes[listed++] = n;
			counted = true;
		}
	}
	if (nnodes)
		*nnodes = listed;
	return missing;
}

static void try_complete(ps_world *w, struct ps__barrier *b, uint32_t idx)
{
	if (ps__barrier_missing(&w->seg, b, idx, NULL, NULL))
		return;
	uint32_t g = idx;
	/* acq_rel: releases what every participant did before arriving (we
	 * acquired it through their clocks) to the waiters acquiring gen */
	if (atomic_compare_exchange_strong_explicit(&b->gen, &g, idx + 1, memory_order_acq_rel,
						    memory_order_acquire))
		ps__futex_wake(&b->gen, INT_MAX, true);
}

/* PS_EDEAD if a node barrier idx waits for died, else PS_EEXITED if one
 * finalized: neither can arrive any more (BR5). */
static int check_waited(ps_world *w, struct ps__barrier *b, uint32_t idx)
{
	int nodes[PS__MAX_NODES], m, rc = 0;
	ps__barrier_missing(&w->seg, b, idx, nodes, &m);
	bool restart = ps__restart_mode(&w->seg);
	for (int k = 0; k < m; k++) {
		int i = nodes[k];
		if (i == w->node)
			continue; /* our own threads, on their way */
		uint32_t st = ps__node_kind(&w->seg, i);
		if (st == PS__NODE_ALIVE && !ps__node_alive(&w->seg, i)) {
			ps__mark_dead(&w->seg, i);
			st = PS__NODE_DEAD;
		}
		if (st == PS__NODE_DEAD && !restart)
			return PS_EDEAD;
		if (st == PS__NODE_EXITED)
			rc = PS_EEXITED;
	}
	return rc;
}

static int wait_gen(ps_world *w, struct ps__barrier *b, uint32_t idx)
{
	ps__wait_set(w, PS__WAIT_BARRIER, idx, (uint64_t)is_node_barrier(&w->seg, b));
	int rc = 0;
	for (;;) {
		/* acquire: pairs with the completer's CAS (BR2) */
		uint32_t g = atomic_load_explicit(&b->gen, memory_order_acquire);
		if (!before(g, idx + 1))
			break;
		if (ps__futex_wait(&b->gen, g, 100 * 1000 * 1000, true) != -ETIMEDOUT)
			continue;
		try_complete(w, b, idx);
		/* acquire: as above */
		if (!before(atomic_load_explicit(&b->gen, memory_order_acquire), idx + 1))
			break;
		rc = check_waited(w, b, idx);
		if (rc)
			break;
	}
	ps__wait_clear(w);
	return rc;
}

static int barrier_call(ps_world *w, struct ps__barrier *b, int slot, uint32_t *calls, uint32_t replay,
			uint32_t *idx_out)
{
	uint32_t idx = (*calls)++;
	if (idx_out)
		*idx_out = idx;
	if (idx >= replay) { /* BR4: a replayed call does not arrive again */
		/* seq_cst: our arrival (BR1); against the scans' loads (BR2) */
		atomic_store_explicit(clock_of(&w->seg, b, w->node, slot), idx + 1, memory_order_seq_cst);
		try_complete(w, b, idx);
	}
	return wait_gen(w, b, idx);
}

int ps__node_barrier(ps_world *w, uint32_t *idx)
{
	ps__thread_enter(w);
	return barrier_call(w, &w->seg.hdr->nodes, 0, &w->node_calls, w->node_replay, idx);
}

bool ps__node_replaying(const ps_world *w)
{
	return w->node_calls < w->node_replay;
}

int ps__barrier_wait(ps_world *w, struct ps__barrier *b)
{
	if (is_node_barrier(&w->seg, b))
		return ps__node_barrier(w, NULL);
	int slot = ps__worker_slot(w);
	if (slot < 0)
		return slot;
	return barrier_call(w, b, slot, &w->calls[slot], w->replay[slot], NULL);
}

int ps_barrier(ps_world *w)
{
	if (!ps__world_current(w)) /* NULL, or after ps_finalize */
		return -EINVAL;
	ps__thread_enter(w);
	int rc = ps__barrier_wait(w, &w->seg.hdr->workers);
	/* multi-host hook: then every host's threads (bridge_link.c) */
	if (rc == 0 && w->net)
		rc = w->net->barrier_workers(w);
	return rc;
}

/* Membership point of elastic jobs (psmem.h; bridge.c EL1-EL8): the local
 * barrier, then the agreement over hosts (bridge_link.c), then the second
 * local barrier inside it.  One host: a barrier returning 1. */
int ps_sync_hosts(ps_world *w, uint64_t *epoch)
{
	if (!epoch || !ps__world_current(w))
		return -EINVAL;
	ps__thread_enter(w);
	int rc = ps__barrier_wait(w, &w->seg.hdr->workers);
	if (rc == 0 && w->net)
		rc = w->net->sync_workers(w, epoch);
	else if (rc == 0)
		rc = 1;
	if (rc <= 0)
		return rc; /* 0: this host leaves here (its workers stop) */
	return ps_hosts_alive(w, NULL, 0);
}

int ps_joined(const ps_world *w)
{
	return w ? (int)w->joined : -EINVAL;
}
