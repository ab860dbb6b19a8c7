/*
 * clock.c - consistency clocks: BSP, SSP(s) and ASP (bounded staleness).
 *
 * Every worker thread of every node has a clock in the segment header:
 * the number of ps_clock calls it has made.  The job's bound (mode, s) is
 * one word set by the first ps_set_consistency.
 *
 * Invariants
 *   (C1) clocks.c[n][t] is written only by worker t of node n, and only
 *        goes up: +1 per ps_clock, stored before the worker waits.
 *   (C2) Without an error, ps_clock returns only once every worker of the
 *        job has a clock >= own - s (BSP: s = 0; ASP returns at once).  The
 *        clocks are loaded after the stores that advanced them (seq_cst,
 *        which includes acquire/release), so every push a worker made
 *        before the ps_clock that let us go is visible to us afterwards.
 *   (C3) No lost wake-up.  An advancing worker stores its clock, bumps seq,
 *        then loads `waiting`; a waiter increments `waiting`, loads seq,
 *        then scans the clocks, and sleeps on seq only if the scan fails;
 *        all seq_cst.  If the advancer read waiting == 0, the waiter's
 *        increment (and so its scan) came later in the single total order
 *        and the scan sees the new clock.  Otherwise the advancer wakes the
 *        futex after its bump: a waiter that loaded seq before the bump
 *        either finds it changed when it enters futex_wait, or is asleep
 *        and woken.
 *   (C4) A waiter looks at the nodes it waits for every 100 ms: one that
 *        is DEAD, EXITED, or ALIVE without its process can never advance,
 *        so the wait returns PS_EDEAD instead of hanging.  A node not yet
 *        attached (EMPTY) is waited for.  The clocks of a node are judged
 *        after its state is read as DEAD or EXITED, so a node that made
 *        its last clocks and then left cleanly holds nobody back.  Under
 *        psrun --on-failure restart a DEAD node is waited for too: its
 *        replacement will advance its clocks.
 *   (C5) A restarted node (restart.c) re-runs its workers from the start:
 *        the first c calls of worker t, c being the clock its dead
 *        predecessor left in the segment (read at takeover), do not
 *        advance the clock again; they only wait for the bound as the
 *        original calls did.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "psmem_int.h"

#define CHECK_NS (100 * 1000 * 1000) /* liveness check period of a waiter */

/* Worker index of the calling thread: set by ps_run_workers, -1 elsewhere. */
static __thread int my_worker = -1;

void ps__worker_set(int index)
{
	my_worker = index;
}

static struct ps__clocks *clocks_of(ps_world *w)
{
	return &w->seg.hdr->clocks;
}

static bool threads_fit(const ps_world *w)
{
	return w->nthreads <= PS__MAX_CLOCK_THREADS;
}

int ps_set_consistency(ps_world *w, int mode, int staleness)
{
	if (!w || mode < PS_BSP || mode > PS_ASP || staleness < 0 || staleness > PS_STALENESS_MAX)
		return -EINVAL;
	if (mode != PS_SSP && staleness != 0)
		return -EINVAL;
	if (!threads_fit(w))
		return -ERANGE;
	if (w->nhosts > 1 && mode != PS_ASP)
		return -ENOTSUP; /* clocks are one host's yet */
	if (mode == PS_SSP && staleness == 0)
		mode = PS_BSP; /* the same bound, one spelling */
	uint64_t want = ps__clock_cfg(mode, (uint32_t)staleness), cur = 0;
	/* relaxed: the bound is re-read at every ps_clock; nodes set it before
	 * their workers clock (documented), nothing else is published by it */
	if (!atomic_compare_exchange_strong_explicit(&clocks_of(w)->cfg, &cur, want, memory_order_relaxed,
						     memory_order_relaxed) &&
	    cur != want)
		return PS_EMISMATCH;
	return 0;
}

/* The slowest worker of the job, if its clock is below need. */
struct lag {
	int node, thread;
	uint64_t clock;
};

/* true if every worker's clock is >= need; else *lag is the slowest. */
static bool all_reached(ps_world *w, struct ps__clocks *ck, uint64_t need, struct lag *lag)
{
	bool ok = true;
	lag->clock = UINT64_MAX;
	for (int n = 0; n < w->nnodes; n++)
		for (int t = 0; t < w->nthreads; t++) {
			/* seq_cst: the scan of (C3); acquire for (C2) */
			uint64_t c = atomic_load_explicit(&ck->c[n][t], memory_order_seq_cst);
			if (c < need) {
				ok = false;
				if (c < lag->clock)
					*lag = (struct lag){n, t, c};
			}
		}
	return ok;
}

static bool node_lags(ps_world *w, struct ps__clocks *ck, int n, uint64_t need)
{
	/* acquire: read after the node's state, so the clocks of a node seen
	 * EXITED are its final ones (ps_finalize stores EXITED with release) */
	for (int t = 0; t < w->nthreads; t++)
		if (atomic_load_explicit(&ck->c[n][t], memory_order_acquire) < need)
			return true;
	return false;
}

/* (C4): a node with a worker below need that can never advance. */
static bool lagging_node_gone(ps_world *w, struct ps__clocks *ck, uint64_t need)
{
	for (int n = 0; n < w->nnodes; n++) {
		if (n == w->node)
			continue; /* our own threads live in this process */
		struct ps__node *nd = ps__node_at(&w->seg, n);
		/* acquire: pairs with the state stores of attach/finalize/psrun */
		uint32_t st = PS__NODE_KIND(atomic_load_explicit(&nd->state, memory_order_acquire));
		if (st == PS__NODE_EMPTY)
			continue; /* not started yet: it will come */
		if (st == PS__NODE_ALIVE) {
			if (!node_lags(w, ck, n, need) || ps__node_alive(&w->seg, n))
				continue;
			ps__mark_dead(&w->seg, n); /* no-op if it exited meanwhile */
			st = PS__NODE_KIND(atomic_load_explicit(&nd->state, memory_order_acquire));
		}
		/* psrun --on-failure restart: a dead node's replacement will advance it */
		if (st != PS__NODE_EXITED && ps__restart_mode(&w->seg))
			continue;
		/* DEAD or EXITED now: its clocks are final */
		if (node_lags(w, ck, n, need))
			return true;
	}
	return false;
}

static int wait_for(ps_world *w, struct ps__clocks *ck, uint64_t need, uint64_t mine)
{
	struct lag lag;
	if (all_reached(w, ck, need, &lag))
		return 0;
	int rc = 0;
	uint64_t next_check = ps__now_ns() + CHECK_NS;
	/* seq_cst: (C3), before the load of seq and the scan */
	atomic_fetch_add_explicit(&ck->waiting, 1, memory_order_seq_cst);
	for (;;) {
		/* seq_cst: (C3) */
		uint32_t seq = atomic_load_explicit(&ck->seq, memory_order_seq_cst);
		if (all_reached(w, ck, need, &lag))
			break;
		ps__wait_set(w, PS__WAIT_CLOCK, mine, (uint64_t)lag.node << 32 | (uint32_t)lag.thread);
		ps__futex_wait(&ck->seq, seq, CHECK_NS, true);
		uint64_t now = ps__now_ns();
		if (now >= next_check) {
			if (lagging_node_gone(w, ck, need)) {
				rc = PS_EDEAD;
				break;
			}
			next_check = now + CHECK_NS;
		}
	}
	atomic_fetch_sub_explicit(&ck->waiting, 1, memory_order_seq_cst);
	ps__wait_clear(w);
	return rc;
}

int ps_clock(ps_world *w)
{
	if (!w)
		return -EINVAL;
	if (!threads_fit(w))
		return -ERANGE;
	int me = my_worker;
	if (me < 0 && w->nthreads == 1)
		me = 0; /* one worker per node: any thread of it */
	if (me < 0 || me >= w->nthreads)
		return -EINVAL;
	ps__thread_enter(w);
	struct ps__clocks *ck = clocks_of(w);
	_Atomic uint64_t *mine = &ck->c[w->node][me];
	uint64_t call = ++w->clock_calls[me], c;
	if (call <= w->clock_replay[me]) {
		/* (C5) replay: the dead predecessor advanced this clock already */
		c = call;
	} else {
		/* relaxed: only this worker writes its clock (C1) */
		c = atomic_load_explicit(mine, memory_order_relaxed) + 1;
		/* seq_cst: release of our pushes (C2) and the advance of (C3) */
		atomic_store_explicit(mine, c, memory_order_seq_cst);
		atomic_fetch_add_explicit(&ck->seq, 1, memory_order_seq_cst);
		if (atomic_load_explicit(&ck->waiting, memory_order_seq_cst))
			ps__futex_wake(&ck->seq, INT_MAX, true);
	}
	/* relaxed: see ps_set_consistency */
	uint64_t cfg = atomic_load_explicit(&ck->cfg, memory_order_relaxed);
	int mode = ps__clock_mode(cfg);
	uint64_t s = ps__clock_staleness(cfg);
	if (mode == PS_ASP || c <= s)
		return 0;
	return wait_for(w, ck, c - s, c);
}

int64_t ps_clock_read(ps_world *w, int node, int thread)
{
	if (!w)
		return -EINVAL;
	if (node < 0 || node >= w->nnodes)
		return PS_ENODE;
	if (thread < 0 || thread >= w->nthreads || thread >= PS__MAX_CLOCK_THREADS)
		return -EINVAL;
	/* acquire: like a waiter's scan, the worker's pushes before it */
	return (int64_t)atomic_load_explicit(&clocks_of(w)->c[node][thread], memory_order_acquire);
}

/* "ssp:S" with S a whole number in range; *s set. */
static bool parse_ssp(const char *text, int *s)
{
	const char *p = text + 4;
	if (strncmp(text, "ssp:", 4) != 0 || !*p || strlen(p) > 7)
		return false;
	long v = 0;
	for (; *p; p++) {
		if (*p < '0' || *p > '9')
			return false;
		v = v * 10 + (*p - '0');
	}
	if (v > PS_STALENESS_MAX)
		return false;
	*s = (int)v;
	return true;
}

int ps_clock_parse(const char *text, int *mode, int *staleness, char *why, size_t why_len)
{
	int m = -1, s = 0;
	if (!text)
		text = "";
	if (strcmp(text, "bsp") == 0)
		m = PS_BSP;
	else if (strcmp(text, "asp") == 0)
		m = PS_ASP;
	else if (parse_ssp(text, &s))
		m = PS_SSP;
	if (m >= 0) {
		if (mode)
			*mode = m;
		if (staleness)
			*staleness = s;
		return 0;
	}
	if (why && why_len) {
		if (strncmp(text, "ssp", 3) == 0)
			snprintf(why, why_len, "'%s': the staleness S of ssp:S must be a whole number from 0 to %d",
				 text, PS_STALENESS_MAX);
		else
			snprintf(why, why_len, "'%s' is not bsp, ssp:S or asp", text);
	}
	return -EINVAL;
}
