/*
 * grace.c - grace periods that span processes, deferred slot reclamation,
 * and the node's service thread.
 *
 * Design: hierarchical (DESIGN.md "Grace periods across processes").
 * liburcu's memb flavor knows the readers of one process; the segment's
 * epochs join the processes.
 *
 *   global_epoch  hdr, bumped by retirers: tag = fetch_add(global_epoch) + 1
 *   node.epoch    per node, written only by that node's service thread:
 *                     e = load_acquire(global_epoch);
 *                     urcu_memb_synchronize_rcu();
 *                     store_release(node.epoch, e);
 *
 * Invariant (GR1): a slot unpublished before the fetch_add that produced tag
 * t can be freed once node.epoch >= t for every node that is ALIVE and whose
 * process exists.  Why: node i's service thread loaded e >= t after the
 * fetch_add, hence after the unpublish; the synchronize that followed waited
 * for every read-side section of node i that had begun before, which covers
 * every reader of node i that could have loaded the old location word.
 * Readers that begin later load the new word.
 *
 * (GR2) A node that is not ALIVE (never attached, exited, dead) has no
 * readers and is skipped; so a node killed by SIGKILL never stalls
 * reclamation.  A node that attaches sets its epoch to the current global
 * epoch before it becomes ALIVE and before it loads any location word.
 *
 * (GR4) A node starts at most one grace period per PS__GRACE_MIN_GAP_NS:
 * one synchronize covers every tag issued before it, so a stream of
 * relocations costs a bounded number of synchronizes per second (each one
 * is a membarrier and a wait for this process's readers), and a slot is
 * reused at most that much later.
 *
 * (GR5) The service thread never waits for a grace period without running
 * grace steps itself: a localize it executes into a full pool
 * (kv.c ps__wait_free_slot) advances this node's epoch and reclaims while
 * it waits, since no other thread would.
 *
 * (GR3) A retire batch is owned by the service thread of the process that
 * relocated; it frees the slots into their owners' pools (arena.c).  At
 * finalize, batches that cannot be freed yet are left (leaked in the
 * segment), never freed early.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <urcu/urcu-memb.h>

#include "segment.h"
#include "util.h"
#include "world.h"
#include "arena.h"
#include "kv.h"
#include "replica.h"
#include "grace.h"

void ps__retire(ps_world *w, struct ps__retire_batch *b)
{
	/* seq_cst: the location-word stores that unpublished these slots are
	 * ordered before the tag is taken (GR1) */
	for (size_t i = 0; i < b->n; i++)
		atomic_fetch_add_explicit(&ps__pool_at(&w->seg, b->e[i].table, b->e[i].node)->retired, 1,
					  memory_order_relaxed);
	b->tag = atomic_fetch_add_explicit(&w->seg.hdr->global_epoch, 1, memory_order_seq_cst) + 1;
	cds_wfcq_node_init(&b->qn);
	PS__TSAN_RELEASE(b);
	cds_wfcq_enqueue(&w->ret_head, &w->ret_tail, &b->qn);
	ps__doorbell(w);
}

bool ps__grace_step(ps_world *w)
{
	/* acquire: pairs with the retirers' fetch_add (GR1) */
	uint64_t g = atomic_load_explicit(&w->seg.hdr->global_epoch, memory_order_acquire);
	if (g <= atomic_load_explicit(&w->me->epoch, memory_order_relaxed))
		return false;
	/* One grace period covers every retire tagged before it: under a
	 * stream of relocations, batch them (GR4) instead of paying a
	 * synchronize_rcu for each. */
	uint64_t now = ps__now_ns();
	if (now < w->next_grace_ns)
		return false;
	urcu_memb_synchronize_rcu();
	w->next_grace_ns = ps__now_ns() + PS__GRACE_MIN_GAP_NS;
	/* release: this node's readers that began before g was loaded are done */
	atomic_store_explicit(&w->me->epoch, g, memory_order_release);
	atomic_fetch_add_explicit(&w->me->stats.grace_periods, 1, memory_order_relaxed);
	return true;
}

/*
 * Smallest epoch over live nodes (GR2).
 *
 * Skipping a node that is not ALIVE is a store-buffering (Dekker) pattern:
 *   attacher:  CAS(state, ALIVE); fence(seq_cst); ... load(loc[k])
 *   reclaimer: store(loc[k], new) ... fence(seq_cst); load(state)
 * where the reclaimer's location store happens before its fence (it is
 * sequenced before ps__retire's enqueue, which the service thread dequeues
 * before reclaiming).  Acquire/release alone allow both loads to read the
 * old values (the attacher's load of the old word may be satisfied before
 * its ALIVE store is visible): the attacher would use a slot we free.  With
 * the two seq_cst fences (C11 7.17.3: a fence X happening before a load
 * that reads a value coherence-ordered before a store that happens before
 * fence Y puts X before Y in the single order S), S orders the fences one
 * way or the other: if the attacher's is first, this load sees ALIVE (and
 * then its epoch, at most the current one, holds the batch back); if ours
 * is first, the attacher's loads see the new location words.  The fences
 * are what make it hold, not seq_cst loads (this code uses none).  The
 * attacher's is in ps__take_node (restart.c).
 */
static uint64_t min_epoch(ps_world *w)
{
	uint64_t m = UINT64_MAX;
	atomic_thread_fence(memory_order_seq_cst);
	for (int i = 0; i < w->nnodes; i++) {
		struct ps__node *n = ps__node_at(&w->seg, i);
		/* acquire: pairs with the release in ps__grace_step */
		uint64_t e = atomic_load_explicit(&n->epoch, memory_order_acquire);
		if (e >= m)
			continue;
		if (i != w->node && !ps__node_alive(&w->seg, i))
			continue;
		m = e;
	}
	return m;
}

static void drain_retired(ps_world *w)
{
	struct cds_wfcq_node *qn;
	while ((qn = __cds_wfcq_dequeue_nonblocking(&w->ret_head, &w->ret_tail)) != NULL &&
	       qn != CDS_WFCQ_WOULDBLOCK) {
		struct ps__retire_batch *b = caa_container_of(qn, struct ps__retire_batch, qn);
		PS__TSAN_ACQUIRE(b);
		if (w->npending == w->cap_pending) {
			size_t cap = w->cap_pending ? w->cap_pending * 2 : 64;
			void *p = realloc(w->pending, cap * sizeof *w->pending);
			if (!p) {
				/* cannot track it: leak the slots rather than free early */
				ps__free(w, b);
				continue;
			}
			w->pending = p;
			w->cap_pending = cap;
		}
		w->pending[w->npending++] = b;
	}
}

/* Frees a batch's slots, one pool lock per run of slots of the same pool. */
static void free_batch(ps_world *w, struct ps__retire_batch *b)
{
	uint64_t offs[64];
	size_t i = 0;
	while (i < b->n) {
		const struct ps__retired *r = &b->e[i];
		size_t m = 0;
		while (i < b->n && m < 64 && b->e[i].table == r->table && b->e[i].node == r->node)
			offs[m++] = b->e[i++].off;
		/* the descriptor, not w->tables[]: a slot given to another host
		 * may be retired before this node published its handle */
		ps__slots_free(w, r->table, r->node, offs, m, ps__tdesc_at(&w->seg, r->table)->value_len);
	}
}

size_t ps__reclaim(ps_world *w, bool force)
{
	drain_retired(w);
	if (w->npending == 0)
		return 0;
	uint64_t safe = (force || w->no_grace) ? UINT64_MAX : min_epoch(w);
	size_t freed = 0, keep = 0;
	for (size_t i = 0; i < w->npending; i++) {
		struct ps__retire_batch *b = w->pending[i];
		if (b->tag > safe) {
			w->pending[keep++] = b;
			continue;
		}
		free_batch(w, b);
		freed += b->n;
		ps__free(w, b);
	}
	w->npending = keep;
	if (freed)
		atomic_fetch_add_explicit(&w->me->stats.slots_freed, freed, memory_order_relaxed);
	return freed;
}

static bool run_requests(ps_world *w)
{
	bool any = false;
	struct cds_wfcq_node *qn;
	while ((qn = __cds_wfcq_dequeue_nonblocking(&w->req_head, &w->req_tail)) != NULL &&
	       qn != CDS_WFCQ_WOULDBLOCK) {
		ps__req_execute(caa_container_of(qn, struct ps_req, qn));
		any = true;
	}
	return any;
}

/* The world whose service thread this is (NULL on every other thread). */
static __thread ps_world *service_of;

bool ps__on_service_thread(const ps_world *w)
{
	return service_of == w;
}

static void *service_main(void *arg)
{
	ps_world *w = arg;
	service_of = w;
	ps__thread_enter(w); /* unregistered by the thread-exit destructor */
	for (;;) {
		/* acquire: pairs with the release increment in ps__doorbell */
		uint32_t bell = atomic_load_explicit(&w->doorbell, memory_order_acquire);
		bool work = run_requests(w);
		work |= ps__grace_step(w);
#ifdef PS_TEST_HOOKS /* test builds only: reclamation held until a slot waiter (test_hosts_move) */
		/* relaxed: a test switch; the waiter rings the doorbell after clearing it */
		if (!atomic_load_explicit(&w->hold_reclaim, memory_order_relaxed))
#endif
			work |= ps__reclaim(w, false) > 0;
		work |= ps__replica_step(w);
		/* acquire: pairs with the release store in ps__service_stop */
		if (atomic_load_explicit(&w->stop, memory_order_acquire) &&
		    cds_wfcq_empty(&w->req_head, &w->req_tail))
			break;
		if (!work) {
			/* Poll the global epoch: other nodes' reclaimers wait for us.
			 * Sooner while we have our own slots waiting. */
			int64_t ns = w->npending ? 100 * 1000 : 1000 * 1000;
			ps__futex_wait(&w->doorbell, bell, ns, false);
		}
	}
	/* Finish what can be finished without freeing early (GR3). */
	uint64_t deadline = ps__now_ns() + 200 * 1000 * 1000ULL;
	while (w->npending && ps__now_ns() < deadline) {
		ps__grace_step(w);
		if (ps__reclaim(w, false) == 0)
			ps__futex_wait(&w->doorbell, atomic_load(&w->doorbell), 200 * 1000, false);
	}
	return NULL;
}

int ps__service_start(ps_world *w)
{
	cds_wfcq_init(&w->req_head, &w->req_tail);
	cds_wfcq_init(&w->ret_head, &w->ret_tail);
	atomic_store_explicit(&w->stop, false, memory_order_relaxed);
	int rc = pthread_create(&w->service, NULL, service_main, w);
#ifdef PS_TEST_HOOKS /* test builds only: a failed thread start (test_crash) */
	if (rc == 0 && ps__env_int("PSMEM_DEBUG_NO_SERVICE", 0) == 1) {
		ps__service_stop(w);
		rc = EAGAIN;
	}
#endif
	return -rc;
}

void ps__service_stop(ps_world *w)
{
	/* release: everything the finalizing thread did before is visible */
	atomic_store_explicit(&w->stop, true, memory_order_release);
	ps__doorbell(w);
	pthread_join(w->service, NULL);
	/* batches retired since the service thread's last reclaim (or while
	 * it held reclamation: PSMEM_DEBUG_HOLD_RECLAIM) are still queued:
	 * their slots stay unfreed as the pending ones' (GR3), their memory
	 * goes with them */
	drain_retired(w);
	for (size_t i = 0; i < w->npending; i++)
		ps__free(w, w->pending[i]);
	free(w->pending);
	w->pending = NULL;
	w->npending = w->cap_pending = 0;
}
