/*
 * replica_round.c - rounds on one host: merging each node's deltas into
 * the primaries and refreshing its replicas (RP3, RP7); ps_sync, the
 * service thread's periodic rounds, and the merge at finalize.
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

/* --------------------------------------------------------------- rounds */

/* Adds buf into the primary of replica index r (caller holds repl_lock and
 * is in a read-side section; the primary cannot move, kv.c KV6, and stays
 * MOVED-marked, RP6). */
static void add_to_primary(ps_world *w, ps_table *t, uint32_t r, ps_key k, const float *buf)
{
	uint64_t plw = atomic_load_explicit(&t->rprim[r], memory_order_relaxed);
	struct ps__slot *p = (struct ps__slot *)(w->seg.base + PS__LOC_OFF(plw));
	uint64_t s = ps__rp_lock_any(w, t, p);
	if (atomic_load_explicit(&p->key, memory_order_relaxed) != k)
		stat_add(&w->me->stats.stale_reads, 1); /* RP1/KV6 broken: tests assert 0 */
	ps__rp_apply_delta(t, p, buf);
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
		bool any = ps__rp_take_delta(delta_of(t, sl), buf, t->value_len);
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
			int rc = ps__rp_try_read(p, kp - 1, buf, len, &ps, true);
			if (rc > 0) {
				for (uint32_t j = 0; j < len; j++) {
					uint32_t bits = atomic_load_explicit(&d->v[j], memory_order_relaxed);
					float f;
					memcpy(&f, &bits, sizeof f);
					buf[j] += f;
				}
				ps__rp_store_values(sl, buf, len);
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

bool ps__rp_replicated(ps_table *t)
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

int ps_sync(ps_table *t)
{
	if (!t || t->magic != PS__TABLE_MAGIC)
		return PS_ETABLE;
	if (!ps__rp_replicated(t))
		return 0;
	ps_world *w = t->w;
	ps__thread_enter(w);
	float *buf = ps__alloc(w, sizeof(float) * t->value_len);
	if (!buf)
		return -ENOMEM;
	ps__rp_xlock(w, t->d); /* RP8: waits for a remote round in flight */
	ps__rp_repl_lock(w, t->d);
	round_nodes(w, t, 0, w->nnodes, buf);
	ps__rp_repl_unlock(t->d);
	int rc = 0;
	/* relaxed: a count, stable under repl_xlock (RP8) */
	if (w->nhosts > 1 && atomic_load_explicit(&t->d->repl_remote, memory_order_relaxed))
		rc = ps__rp_remote_round(w, t, 0, w->nnodes, true);
	ps__rp_xunlock(w, t->d);
	ps__free(w, buf);
	return rc;
}

bool ps__replica_step(ps_world *w)
{
	ps_table *tabs[PS__MAX_TABLES];
	int nt = 0;
	pthread_mutex_lock(&w->tables_lock);
	for (int i = 0; i < w->ntables; i++)
		if (w->tables[i] && ps__rp_replicated(w->tables[i]) && w->tables[i]->d->repl_rate > 0)
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
		if (!ps__rp_repl_trylock(w, t->d))
			continue; /* another round or a switch: try again soon */
		float *buf = ps__alloc(w, sizeof(float) * t->value_len);
		if (buf) {
			round_nodes(w, t, w->node, w->node + 1, buf);
			ps__free(w, buf);
		}
		ps__rp_repl_unlock(t->d);
		w->repl_next[t->id] = now + (uint64_t)(1e9 / t->d->repl_rate);
		work = true;
		/* one remote round per host per period, by whichever service
		 * thread finds it due (RP8); relaxed: hints, re-read under the
		 * xlock */
		if (w->nhosts > 1 && atomic_load_explicit(&t->d->repl_remote, memory_order_relaxed) &&
		    now >= atomic_load_explicit(&t->d->repl_xnext, memory_order_relaxed) &&
		    ps__rp_xtrylock(w, t->d)) {
			/* relaxed: set under this xlock by finalize (RP8) */
			if (!atomic_load_explicit(&w->repl_closed, memory_order_relaxed) &&
			    now >= atomic_load_explicit(&t->d->repl_xnext, memory_order_relaxed)) {
				atomic_store_explicit(&t->d->repl_xnext, now + (uint64_t)(1e9 / t->d->repl_rate),
						      memory_order_relaxed);
				ps__rp_remote_round(w, t, 0, w->nnodes, true);
			}
			ps__rp_xunlock(w, t->d);
		}
	}
	return work;
}

void ps__replica_flush(ps_world *w)
{
	ps__thread_enter(w);
	for (int i = 0; i < w->ntables; i++) {
		ps_table *t = w->tables[i];
		if (!t || !ps__rp_replicated(t))
			continue;
		float *buf = ps__alloc(w, sizeof(float) * t->value_len);
		if (!buf)
			continue;
		ps__rp_xlock(w, t->d);
		ps__rp_repl_lock(w, t->d);
		urcu_memb_read_lock();
		merge_node(w, t, w->node, buf);
		urcu_memb_read_unlock();
		ps__rp_repl_unlock(t->d);
		/* before the link closes (world.c): deltas of remote keys */
		if (w->nhosts > 1 && atomic_load_explicit(&t->d->repl_remote, memory_order_relaxed))
			ps__rp_remote_round(w, t, w->node, w->node + 1, false);
		/* relaxed: read under the xlock; the link closes next (world.c),
		 * so this process's service thread starts no remote round any
		 * more, and the one it may have run is over (we hold the xlock) */
		atomic_store_explicit(&w->repl_closed, true, memory_order_relaxed);
		ps__rp_xunlock(w, t->d);
		ps__free(w, buf);
	}
}
