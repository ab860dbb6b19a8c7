/*
 * restart.c - a new process takes over the node id of a dead one
 * (psrun --on-failure restart).
 *
 * Parameters live in the segment, not in the processes, so a node that
 * died lost no parameter: its arena and pools stay where they are, and its
 * replacement simply uses them.  What the dead process still "holds" is
 * freed here, before the replacement becomes ALIVE:
 *
 *   (RS1) Locks.  Slot seq words name their holder by node id.  Peers
 *        recover a slot lock of a dead holder themselves, but only while
 *        that node id is not ALIVE: once the replacement is, a lock of its
 *        predecessor would look held by a live node forever.  So the
 *        replacement frees every slot lock naming its node id first, while
 *        the node is still DEAD, the way a waiter recovers them (kv.c, KV5:
 *        version + 1, MOVED if the dead relocator had published already).
 *        Peers recovering the same locks concurrently race by CAS on the
 *        exact word: one wins, the other changes nothing.  The pool, create
 *        and replication locks are robust mutexes (lock.c): the kernel
 *        marks them when their holder dies, whatever node id it had, and
 *        their next taker repairs (LO2); nothing to do here.
 *   (RS2) Liveness.  The node is marked DEAD in the incarnation seen (if psrun
 *        has not done it), then made ALIVE as incarnation + 1 (world.c), so
 *        no peer can mark the replacement dead for its predecessor's death.
 *   (RS3) Grace periods skip the node while it is not ALIVE (grace.c GR2); the
 *        replacement starts at the current global epoch.  Slots its
 *        predecessor retired and had not freed yet stay allocated (leaked,
 *        never freed early: GR3).
 *   (RS4) Barriers: the replacement's barrier calls replay its predecessor's
 *        arrivals (barrier.c BR4): calls start at 0, replay = the clocks the
 *        predecessor left in the segment.
 *   (RS5) The dump entries of the dead threads are cleared.
 *
 * What a restart does not bring back is the dead process's private state:
 * the application resumes from what it kept in the segment (its tables,
 * ps_progress_set) and from ps_replaying().
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "segment.h"
#include "world.h"
#include "kv.h"
#include "table.h"
#include "restart.h"

/* Slot locks of one pool held by node `me` (RS1). */
static size_t sweep_pool(ps_world *w, ps_table *t, struct ps__pool *p)
{
	size_t freed = 0;
	/* relaxed: a snapshot; a slot handed out later cannot hold a lock of
	 * our dead predecessor */
	uint64_t bump = __atomic_load_n(&p->bump, __ATOMIC_RELAXED);
	for (uint64_t k = 0; k < bump && k < p->cap; k++) {
		struct ps__slot *sl = ps__at(&w->seg, p->base_off + k * t->slot_size);
		/* acquire: the dead holder's value stores are visible */
		uint64_t s = atomic_load_explicit(&sl->seq, memory_order_acquire);
		if ((s & PS__SEQ_LOCKED) && PS__SEQ_HOLDER(s) == w->node)
			freed += ps__slot_recover(w, t, sl, s);
	}
	return freed;
}

static void free_locks(ps_world *w)
{
	struct ps__seg *s = &w->seg;
	for (int id = 0; id < PS__MAX_TABLES; id++) {
		struct ps__tdesc *d = ps__tdesc_at(s, id);
		/* acquire: pairs with the creator's release of READY */
		if (atomic_load_explicit(&d->state, memory_order_acquire) != PS__T_READY)
			continue;
		ps_table t;
		ps__table_bind(w, id, &t);
		for (int n = 0; n < w->nnodes; n++) {
			struct ps__pool *p = ps__pool_at(s, id, n);
			sweep_pool(w, &t, p);
		}
	}
}

static int restart_takeover(ps_world *w, uint32_t seen)
{
	struct ps__node *n = w->me;
	if (PS__NODE_KIND(seen) == PS__NODE_ALIVE)
		ps__mark_dead(&w->seg, w->node); /* RS2: its process is gone */
	/* acquire: the dead process's stores are all visible */
	uint32_t st = atomic_load_explicit(&n->state, memory_order_acquire);
	if (PS__NODE_KIND(st) != PS__NODE_DEAD || PS__NODE_INC(st) != PS__NODE_INC(seen))
		return -EBUSY; /* another process took the slot meanwhile */
	free_locks(w);
	w->restarted = true;
	/* RS4; relaxed: the dead predecessor wrote them, seen through `st` */
	w->node_calls = 0;
	w->node_replay = atomic_load_explicit(&n->nb_clock, memory_order_relaxed);
	for (int i = 0; i < PS__MAX_CLOCK_THREADS; i++) {
		w->clock_calls[i] = 0;
		/* relaxed: like the barrier clocks (clock.c CL5) */
		w->clock_replay[i] = atomic_load_explicit(&w->seg.hdr->clocks.c[w->node][i], memory_order_relaxed);
	}
	for (int i = 0; i < PS__MAX_WORKERS; i++) {
		w->calls[i] = 0;
		w->replay[i] = atomic_load_explicit(&n->ws[i].clock, memory_order_relaxed);
	}
	/* RS5; relaxed: diagnostic entries */
	for (int i = 0; i < PS__MAX_WAITERS; i++)
		atomic_store_explicit(&n->waiters[i].what, PS__WAIT_NONE, memory_order_relaxed);
	atomic_store_explicit(&n->nwaiters, 0, memory_order_relaxed);
	return 0;
}

int ps__take_node(ps_world *w)
{
	struct ps__node *n = ps__node_at(&w->seg, w->node);
	/* acquire: pid and start_time of the incarnation seen are visible */
	uint32_t st = atomic_load_explicit(&n->state, memory_order_acquire);
	bool gone = !ps__pid_alive(n->pid, n->start_time);
	if (PS__NODE_KIND(st) == PS__NODE_ALIVE && !gone)
		return -EBUSY;
	w->me = n;
	int rc = 0;
	if (PS__NODE_KIND(st) == PS__NODE_DEAD || PS__NODE_KIND(st) == PS__NODE_ALIVE)
		rc = restart_takeover(w, st); /* frees what the dead one held */
	else
		w->node_calls = atomic_load_explicit(&n->nb_clock, memory_order_relaxed);
	if (rc)
		return rc;
	for (int i = 0; i < PS__MAX_WORKERS && !w->restarted; i++) /* relaxed: our own slots */
		w->calls[i] = atomic_load_explicit(&n->ws[i].clock, memory_order_relaxed);
	/* GR2: start at the current epoch: we hold no old location word */
	atomic_store_explicit(&n->epoch, atomic_load_explicit(&w->seg.hdr->global_epoch, memory_order_acquire),
			      memory_order_relaxed);
	n->pid = getpid();
	n->start_time = ps__proc_start_time(getpid());
	/* release (within seq_cst): pid/epoch before ALIVE.  A CAS from the
	 * word seen: of two processes taking the same slot, one fails.  ALIVE
	 * before our first load of any location word needs more than the CAS
	 * (a later acquire load may be satisfied before it is visible): the
	 * seq_cst fence after it, paired with the reclaimer's (grace.c
	 * min_epoch, GR2). */
	if (w->restarted) /* relaxed: DEAD now (takeover); the CAS below orders our stores */
		st = atomic_load_explicit(&n->state, memory_order_relaxed);
	uint32_t want = PS__NODE_WORD(PS__NODE_ALIVE, PS__NODE_INC(st) + 1);
	if (!atomic_compare_exchange_strong_explicit(&n->state, &st, want, memory_order_seq_cst, memory_order_relaxed))
		return -EBUSY;
	/* seq_cst fence: store-buffering with the reclaimers (grace.c GR2) */
	atomic_thread_fence(memory_order_seq_cst);
	return 0;
}
