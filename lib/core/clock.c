/*
 * clock.c - consistency clocks: BSP, SSP(s) and ASP (bounded staleness).
 *
 * Every worker thread of every node has a clock in the segment header:
 * the number of ps_clock calls it has made.  The job's bound (mode, s) is
 * one word set by the first ps_set_consistency.
 *
 * Invariants
 *   (CL1) clocks.c[n][t] is written only by worker t of node n, and only
 *        goes up: +1 per ps_clock, stored before the worker waits.
 *   (CL2) Without an error, ps_clock returns only once every worker of the
 *        job has a clock >= own - s (BSP: s = 0; ASP returns at once).  The
 *        clocks are loaded after the stores that advanced them (seq_cst,
 *        which includes acquire/release), so every push a worker made
 *        before the ps_clock that let us go is visible to us afterwards.
 *   (CL3) No lost wake-up.  An advancing worker stores its clock, bumps seq,
 *        then loads `waiting`; a waiter increments `waiting`, loads seq,
 *        then scans the clocks, and sleeps on seq only if the scan fails;
 *        all seq_cst.  If the advancer read waiting == 0, the waiter's
 *        increment (and so its scan) came later in the single total order
 *        and the scan sees the new clock.  Otherwise the advancer wakes the
 *        futex after its bump: a waiter that loaded seq before the bump
 *        either finds it changed when it enters futex_wait, or is asleep
 *        and woken.
 *   (CL4) A waiter looks at the nodes it waits for every 100 ms: one that
 *        is DEAD, EXITED, or ALIVE without its process can never advance,
 *        so the wait returns PS_EDEAD instead of hanging.  A node not yet
 *        attached (EMPTY) is waited for.  The clocks of a node are judged
 *        after its state is read as DEAD or EXITED, so a node that made
 *        its last clocks and then left cleanly holds nobody back.  Under
 *        psrun --on-failure restart a DEAD node is waited for too: its
 *        replacement will advance its clocks.
 *   (CL5) A restarted node (restart.c) re-runs its workers from the start:
 *        the first c calls of worker t, c being the clock its dead
 *        predecessor left in the segment (read at takeover), do not
 *        advance the clock again; they only wait for the bound as the
 *        original calls did.
 *
 * Across hosts (a multi-host job; bridge.c, bridge_link.c)
 *   (CLH1) A host's clock, for the others, is the slowest clock of its
 *        workers (all its nodes).  A ps_clock that advanced recomputes it
 *        (seq_cst loads after its seq_cst store: of two workers advancing
 *        concurrently, at least one sees both new clocks), and if it
 *        raised ck->sent (CAS max) sends a CLOCK {min, bound} through its
 *        node's link; the bridge sends it to every peer, whose bridge gives
 *        it to every one of its nodes' links, whose link thread raises
 *        hmin[host] (CAS max: CLOCKs sent from different nodes may arrive
 *        in any order) and wakes the waiters as an advancing worker does
 *        (CL3).  Every value of the minimum is eventually sent: the worker
 *        whose clock completes it sees it and wins the CAS, or another
 *        sends a larger one.
 *   (CLH2) A waiter passes when every local worker has clock >= need and
 *        every other host's hmin >= need; it has then heard from every
 *        host.  Updates: a worker's synchronous pushes (ps_push_sync, or a
 *        ps_push whose ps_wait returned) have been applied where their key
 *        is held before the reply came back, so before its ps_clock, so
 *        before the CLOCK that carries it leaves; a waiter released by
 *        that CLOCK pulls after it.  A push still in flight at ps_clock
 *        (ps_push not waited yet) is not covered: wait it first.
 *   (CLH3) A host that left or died: its bridge connection ends; our bridge
 *        then sends ABORT(host) to every link.  The peer's CLOCKs came
 *        before (one TCP stream, forwarded in order onto each link, which
 *        is one stream too), so the link thread has raised hmin[host] to
 *        its last value before it sets hgone[host]; a waiter that loads
 *        hgone first and then hmin sees that host's final minimum, and
 *        returns PS_EHOSTDOWN only if it is below need.  A broken link
 *        (psrun gone) is the same for every host.
 *   (CLH4) The bound must be the same on every host.  Every CLOCK carries
 *        the sender's bound; the first ps_clock of each host sends one even
 *        without raising the minimum (ck->announced), and every ps_clock
 *        of a multi-host job, ASP included, waits until it has heard the
 *        bound of every host: a mismatch is PS_EMISMATCH (with a message
 *        naming both bounds) on every host, before any wait under a bound
 *        the others do not share.  So the first ps_clock of an ASP job
 *        waits until every host has made its first call.
 *   (CLH5) ps_clock_read reads this host's workers; ps_clock_read_host
 *        gives a host's slowest clock: exact for this host, a lower bound
 *        (the last one heard) for the others.
 *   (CLH7) psrun --on-host-failure continue: a host the bridge dropped
 *        (bridge.c "Losing a host") gets hgone[host] >= 2 (ABORT with code
 *        PS__GONE_LOST, ps__clock_host_lost, a CAS: each node's link then
 *        adds 1 when it has promoted its backups, net/backup.c BK3):
 *        waiters skip it entirely, its minimum and bound included, so the
 *        job's bound holds over the hosts present.  ps_hosts_alive counts
 *        the hosts below 2.
 *   (CLH6) psrun --on-failure restart is not covered across hosts: a host
 *        whose node died stops the job (bridge.c), so PS_EHOSTDOWN.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "segment.h"
#include "util.h"
#include "world.h"
#include "clock.h"

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

/* The slowest worker of the job, if its clock is below need: a local one
 * (host -1), or another host (node, thread -1). */
struct lag {
	int host, node, thread;
	uint64_t clock;
	uint64_t cfg;             /* PS_EMISMATCH: the other host's bound */
};

static bool multi_host(const ps_world *w)
{
	return w->nhosts > 1;
}

/* The bound word in force: unset reads as BSP. */
static uint64_t bound_of(uint64_t cfg)
{
	return cfg ? cfg : ps__clock_cfg(PS_BSP, 0);
}

/*
 * 1 if every worker's clock is >= need (and, across hosts, every host's
 * bound is heard and ours, CLH2/CLH4); 0 if not, *lag the slowest; or
 * PS_EMISMATCH (lag->host: the host that differs), PS_EHOSTDOWN (a host
 * that can no longer reach need left, CLH3).
 */
static int reached(ps_world *w, struct ps__clocks *ck, uint64_t need, uint64_t cfg, struct lag *lag)
{
	int ok = 1;
	lag->clock = UINT64_MAX;
	for (int n = 0; n < w->nnodes; n++)
		for (int t = 0; t < w->nthreads; t++) {
			/* seq_cst: the scan of (CL3); acquire for (CL2) */
			uint64_t c = atomic_load_explicit(&ck->c[n][t], memory_order_seq_cst);
			if (c < need) {
				ok = 0;
				if (c < lag->clock)
					*lag = (struct lag){-1, n, t, c, 0};
			}
		}
	if (!multi_host(w))
		return ok;
	for (int h = 0; h < w->nhosts && h < PS__MAX_CLOCK_HOSTS; h++) {
		if (h == w->host)
			continue;
		/* seq_cst: the scan of (CL3); membership before min and bound,
		 * as gone (EL4: a joiner's minimum is set before it is admitted) */
		if (atomic_load_explicit(&ck->hmember[h], memory_order_seq_cst) != PS__HOST_MEMBER)
			continue; /* not admitted yet, or left: not waited for (EL4) */
		/* seq_cst: the scan of (CL3); gone before min and bound (CLH3) */
		uint32_t gone = atomic_load_explicit(&ck->hgone[h], memory_order_seq_cst);
		if (gone >= 2)
			continue; /* dropped: not waited for (CLH7) */
		uint64_t hc = atomic_load_explicit(&ck->hcfg[h], memory_order_seq_cst);
		uint64_t m = atomic_load_explicit(&ck->hmin[h], memory_order_seq_cst);
		if (hc && hc != cfg) {
			*lag = (struct lag){h, -1, -1, m, hc};
			return PS_EMISMATCH;
		}
		if (hc && m >= need)
			continue;
		if (gone) {
			*lag = (struct lag){h, -1, -1, m, hc};
			return PS_EHOSTDOWN;
		}
		ok = 0;
		if (m < lag->clock || lag->host < 0)
			*lag = (struct lag){h, -1, -1, m, hc};
	}
	return ok;
}

/* Wakes the clock waiters after a change they wait for (CL3). */
static void wake_waiters(struct ps__clocks *ck)
{
	/* seq_cst: the advance of (CL3), after the store it announces */
	atomic_fetch_add_explicit(&ck->seq, 1, memory_order_seq_cst);
	if (atomic_load_explicit(&ck->waiting, memory_order_seq_cst))
		ps__futex_wake(&ck->seq, INT_MAX, true);
}

/* "bsp", "ssp:S" or "asp" (also psstat's dump, dump.c) */
const char *ps__clock_bound_text(uint64_t cfg, char *buf, size_t len)
{
	int mode = ps__clock_mode(cfg);
	if (mode == PS_SSP)
		snprintf(buf, len, "ssp:%u", ps__clock_staleness(cfg));
	else
		snprintf(buf, len, "%s", mode == PS_ASP ? "asp" : "bsp");
	return buf;
}

/* The slowest clock of this host's workers (CLH1). */
static uint64_t local_min(ps_world *w, struct ps__clocks *ck)
{
	uint64_t m = UINT64_MAX;
	for (int n = 0; n < w->nnodes; n++)
		for (int t = 0; t < w->nthreads; t++) {
			/* seq_cst: after our own clock's store (CLH1) */
			uint64_t c = atomic_load_explicit(&ck->c[n][t], memory_order_seq_cst);
			m = c < m ? c : m;
		}
	return m;
}

/* Sends this host's minimum if this call raised it, or the bound if
 * nothing went out yet (CLH1, CLH4). */
static void publish(ps_world *w, struct ps__clocks *ck, uint64_t cfg)
{
	uint64_t m = local_min(w, ck);
	/* seq_cst: orders nothing CLH1 needs (that is the scan's job: the
	 * winner of the CAS max sends a minimum it has seen); one CAS per
	 * raise of the minimum, so the strongest order costs nothing */
	uint64_t cur = atomic_load_explicit(&ck->sent, memory_order_seq_cst);
	bool send = false;
	while (m > cur && !send)
		send = atomic_compare_exchange_weak_explicit(&ck->sent, &cur, m, memory_order_seq_cst,
							     memory_order_seq_cst);
	uint32_t no = 0;
	/* relaxed: a flag of its own, only the CAS winner acts on it */
	if (!send && atomic_load_explicit(&ck->announced, memory_order_relaxed) == 0)
		send = atomic_compare_exchange_strong_explicit(&ck->announced, &no, 1, memory_order_relaxed,
							       memory_order_relaxed);
	else if (send)
		atomic_store_explicit(&ck->announced, 1, memory_order_relaxed);
	if (send)
		if (w->net)
			w->net->send_clock(w, m, cfg); /* a broken link: the waiters see it */
}

void ps__clock_heard(ps_world *w, int host, uint64_t min, uint64_t cfg)
{
	struct ps__clocks *ck = &w->seg.hdr->clocks;
	if (host < 0 || host >= PS__MAX_CLOCK_HOSTS)
		return;
	/* seq_cst: the stores of (CL3), before the wake-up; the bound first,
	 * so that a waiter that sees the minimum sees whose bound it is */
	atomic_store_explicit(&ck->hcfg[host], cfg, memory_order_seq_cst);
	uint64_t cur = atomic_load_explicit(&ck->hmin[host], memory_order_seq_cst);
	while (min > cur && !atomic_compare_exchange_weak_explicit(&ck->hmin[host], &cur, min, memory_order_seq_cst,
								   memory_order_seq_cst))
		;
	wake_waiters(ck);
}

void ps__clock_member(ps_world *w, int host, uint32_t state, uint64_t min, uint64_t cfg)
{
	struct ps__clocks *ck = &w->seg.hdr->clocks;
	if (host < 0 || host >= PS__MAX_CLOCK_HOSTS || host == w->host)
		return;
	if (state == PS__HOST_MEMBER) {
		/* seq_cst: the stores of (CL3), before the membership that makes
		 * waiters look at them (EL4) */
		if (cfg)
			atomic_store_explicit(&ck->hcfg[host], cfg, memory_order_seq_cst);
		uint64_t cur = atomic_load_explicit(&ck->hmin[host], memory_order_seq_cst);
		while (min > cur && !atomic_compare_exchange_weak_explicit(&ck->hmin[host], &cur, min,
									   memory_order_seq_cst, memory_order_seq_cst))
			;
	}
	/* seq_cst: as hgone (CLH3); the waiters' scan loads it first */
	atomic_store_explicit(&ck->hmember[host], state, memory_order_seq_cst);
	wake_waiters(ck);
}

void ps__clock_start_at(ps_world *w, uint64_t clock)
{
	struct ps__clocks *ck = &w->seg.hdr->clocks;
	/* A joiner's workers start at the slowest clock of the hosts present
	 * (EL4), set by each node for its own workers before its first
	 * ps_sync_hosts returns, so before any of them calls ps_clock.
	 * seq_cst: as a worker's own store (CL3) */
	for (int t = 0; t < w->nthreads && t < PS__MAX_CLOCK_THREADS; t++) {
		uint64_t cur = atomic_load_explicit(&ck->c[w->node][t], memory_order_seq_cst);
		if (cur < clock)
			atomic_store_explicit(&ck->c[w->node][t], clock, memory_order_seq_cst);
	}
	/* what this host has sent: nothing yet; the first ps_clock sends the
	 * new minimum (and the bound) */
	wake_waiters(ck);
}

uint64_t ps__clock_local_min(ps_world *w)
{
	return local_min(w, &w->seg.hdr->clocks);
}

uint64_t ps__clock_cfg_now(ps_world *w)
{
	/* relaxed: set by ps_set_consistency before the workers run */
	return bound_of(atomic_load_explicit(&w->seg.hdr->clocks.cfg, memory_order_relaxed));
}

void ps__clock_host_gone(ps_world *w, int host)
{
	struct ps__clocks *ck = &w->seg.hdr->clocks;
	if (host >= PS__MAX_CLOCK_HOSTS)
		return;
	/* seq_cst: after this link's last ps__clock_heard for host (CLH3) */
	if (host >= 0)
		atomic_store_explicit(&ck->hgone[host], 1, memory_order_seq_cst);
	wake_waiters(ck);
}

void ps__clock_host_lost(ps_world *w, int host)
{
	struct ps__clocks *ck = &w->seg.hdr->clocks;
	if (host < 0 || host >= PS__MAX_CLOCK_HOSTS)
		return;
	/* seq_cst: as in ps__clock_host_gone; a waiter that sees 2 skips the
	 * host (CLH7) */
	uint32_t cur = atomic_load_explicit(&ck->hgone[host], memory_order_seq_cst);
	while (cur < 2 && !atomic_compare_exchange_weak_explicit(&ck->hgone[host], &cur, 2, memory_order_seq_cst,
								 memory_order_seq_cst))
		;
	wake_waiters(ck);
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

/* (CL4): a node with a worker below need that can never advance. */
/* PS_EDEAD if a lagging node died, else PS_EEXITED if one finalized, else 0. */
static int lagging_node_gone(ps_world *w, struct ps__clocks *ck, uint64_t need)
{
	int rc = 0;
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
		if (node_lags(w, ck, n, need)) {
			if (st != PS__NODE_EXITED)
				return PS_EDEAD;
			rc = PS_EEXITED;
		}
	}
	return rc;
}

/* Says why ps_clock failed across hosts, once per process. */
static void tell(ps_world *w, int rc, const struct lag *lag, uint64_t cfg)
{
	static atomic_flag told = ATOMIC_FLAG_INIT;
	if (rc != PS_EMISMATCH && rc != PS_EHOSTDOWN)
		return;
	/* relaxed: only one message, nothing else depends on it */
	if (atomic_flag_test_and_set_explicit(&told, memory_order_relaxed))
		return;
	char a[32], b[32];
	if (rc == PS_EMISMATCH)
		fprintf(stderr,
			"psmem: host %d: consistency bound mismatch: host %d uses %s, this host %s "
			"(every host must call ps_set_consistency with the same bound)\n",
			w->host, lag->host, ps__clock_bound_text(lag->cfg, a, sizeof a),
			ps__clock_bound_text(cfg, b, sizeof b));
	else if (lag->host >= 0)
		fprintf(stderr, "psmem: host %d: ps_clock: host %d left the job at clock %" PRIu64 ": %s\n", w->host,
			lag->host, lag->clock, ps_strerror(rc));
}

static int wait_for(ps_world *w, struct ps__clocks *ck, uint64_t need, uint64_t mine, uint64_t cfg)
{
	struct lag lag;
	int rc = reached(w, ck, need, cfg, &lag);
	if (rc != 0)
		goto out;
	uint64_t next_check = ps__now_ns() + CHECK_NS;
	/* seq_cst: (CL3), before the load of seq and the scan */
	atomic_fetch_add_explicit(&ck->waiting, 1, memory_order_seq_cst);
	for (;;) {
		/* seq_cst: (CL3) */
		uint32_t seq = atomic_load_explicit(&ck->seq, memory_order_seq_cst);
		rc = reached(w, ck, need, cfg, &lag);
		if (rc != 0)
			break;
		uint64_t who = lag.host >= 0 ? PS__CLOCK_WAIT_HOST | (uint32_t)lag.host
					     : (uint64_t)lag.node << 32 | (uint32_t)lag.thread;
		ps__wait_set(w, PS__WAIT_CLOCK, mine, who);
		ps__futex_wait(&ck->seq, seq, CHECK_NS, true);
		uint64_t now = ps__now_ns();
		if (now >= next_check) {
			if ((rc = lagging_node_gone(w, ck, need)) != 0)
				break;
			if (multi_host(w) && (!w->net || w->net->link_down(w))) {
				rc = PS_EHOSTDOWN; /* psrun is gone: no host can reach us (CLH3) */
				lag.host = -1;
				break;
			}
			next_check = now + CHECK_NS;
		}
	}
	atomic_fetch_sub_explicit(&ck->waiting, 1, memory_order_seq_cst);
	ps__wait_clear(w);
out:
	if (rc == 1)
		return 0;
	tell(w, rc, &lag, cfg);
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
		/* (CL5) replay: the dead predecessor advanced this clock already */
		c = call;
	} else {
		/* relaxed: only this worker writes its clock (CL1) */
		c = atomic_load_explicit(mine, memory_order_relaxed) + 1;
		/* seq_cst: release of our pushes (CL2) and the advance of (CL3) */
		atomic_store_explicit(mine, c, memory_order_seq_cst);
		wake_waiters(ck);
	}
	/* relaxed: see ps_set_consistency */
	uint64_t cfg = bound_of(atomic_load_explicit(&ck->cfg, memory_order_relaxed));
	int mode = ps__clock_mode(cfg);
	uint64_t s = ps__clock_staleness(cfg);
	uint64_t need = (mode == PS_ASP || c <= s) ? 0 : c - s;
	if (multi_host(w)) {
		publish(w, ck, cfg);
		return wait_for(w, ck, need, c, cfg); /* need 0: the bounds only (CLH4) */
	}
	if (need == 0)
		return 0;
	return wait_for(w, ck, need, c, cfg);
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

int64_t ps_clock_read_host(ps_world *w, int host)
{
	if (!w)
		return -EINVAL;
	if (host < 0 || host >= w->nhosts || host >= PS__MAX_CLOCK_HOSTS)
		return -EINVAL;
	struct ps__clocks *ck = clocks_of(w);
	if (host == w->host) {
		if (!threads_fit(w))
			return -ERANGE;
		return (int64_t)local_min(w, ck);
	}
	/* acquire: like a waiter's scan (CLH2) */
	return (int64_t)atomic_load_explicit(&ck->hmin[host], memory_order_acquire);
}

int ps_hosts_alive(const ps_world *w, uint8_t *alive, int cap)
{
	if (!w)
		return -EINVAL;
	struct ps__clocks *ck = &w->seg.hdr->clocks;
	int n = 0;
	for (int h = 0; h < w->nhosts; h++) {
		/* acquire: after the link thread's store (CLH7); the requests
		 * it failed before are failed when the caller reads 0 here */
		bool up = h == w->host ||
			  (h < PS__MAX_CLOCK_HOSTS &&
			   atomic_load_explicit(&ck->hmember[h], memory_order_acquire) == PS__HOST_MEMBER &&
			   atomic_load_explicit(&ck->hgone[h], memory_order_acquire) < 2);
		n += up;
		if (alive && h < cap)
			alive[h] = up;
	}
	return n;
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
