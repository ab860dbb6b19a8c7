/*
 * start.c - ps_init and ps_finalize: the top of libpsmem, the one place
 * that starts every layer in order.  ps_init opens the per-process
 * context (base/world.c), takes the node id (persist/restart.c, taking
 * over a dead predecessor's), starts the service thread (core/grace.c)
 * and, on a multi-host job, the node's link (net/bridge_link.c), which
 * sets w->net: the lower layers reach the network only through it.
 * ps_finalize stops them in the reverse order.
 */
#include <errno.h>
#include <stdlib.h>

#include <jemalloc/jemalloc.h>

#include "grace.h"
#include "link.h"
#include "replica.h"
#include "restart.h"

static unsigned make_je_arena(void)
{
#if defined(PS_SANITIZE) || defined(PS_NO_JEMALLOC)
	return 0;
#else
	unsigned a = 0;
	size_t sz = sizeof a;
	if (mallctl("arenas.create", &a, &sz, NULL, 0) != 0)
		return 0;
	return a;
#endif
}

ps_world *ps_init(int *err)
{
	return ps_init_threads(0, err);
}

ps_world *ps_init_threads(int threads, int *err)
{
	int rc = 0;
	ps_world *w = ps__world_open(threads, &rc);
	if (!w)
		goto out;
	rc = ps__take_node(w);
	if (rc)
		goto fail;
#ifdef PS_TEST_HOOKS /* test builds only (libpsmem_test.a) */
	w->die_in_layout = !w->restarted && getenv("PSMEM_DEBUG_DIE_IN_LAYOUT") &&
			   ps__env_int("PSMEM_DEBUG_DIE_IN_LAYOUT", -1) == w->node;
	w->die_after_publish = !w->restarted && getenv("PSMEM_DEBUG_DIE_AFTER_PUBLISH") &&
			       ps__env_int("PSMEM_DEBUG_DIE_AFTER_PUBLISH", -1) == w->node;
	w->die_mid_add = !w->restarted && getenv("PSMEM_DEBUG_DIE_MID_ADD") &&
			 ps__env_int("PSMEM_DEBUG_DIE_MID_ADD", -1) == w->node;
#endif
	w->numa_node = ps__node_at(&w->seg, w->node)->numa_node;
	w->je_arena = make_je_arena();
	struct ps__hdr *h = w->seg.hdr;
	w->nhosts = h->num_hosts > 1 ? (int)h->num_hosts : 1;
	w->host = w->nhosts > 1 ? (int)h->host_rank : 0;
	w->home_hosts = h->home_hosts > 1 && (int)h->home_hosts <= w->nhosts ? (int)h->home_hosts : w->nhosts;
	w->joined = w->nhosts > 1 && h->joined;
	w->join_pending = w->joined;
#ifdef PS_TEST_HOOKS /* test builds only: this host's first move fails (test_hosts_move) */
	w->move_fail = w->nhosts > 1 && ps__env_int("PSMEM_DEBUG_MOVE_FAIL", -1) == w->host;
#endif
	/* without the service thread nothing reclaims or serves: fail */
	rc = ps__service_start(w);
	if (rc) {
		atomic_store_explicit(&w->me->state, PS__NODE_EXITED, memory_order_release);
		goto fail;
	}
	/* multi-host: the node's link to its host's bridge; sets w->net */
	if (w->nhosts > 1 && (rc = ps__link_start(w)) != 0) {
		ps__service_stop(w);
		atomic_store_explicit(&w->me->state, PS__NODE_EXITED, memory_order_release);
		goto fail;
	}
	goto out;
fail:
	ps__world_abort(w);
	w = NULL;
out:
	if (err)
		*err = rc;
	return w;
}

int ps_finalize(ps_world *w)
{
	if (!ps__world_current(w))
		return -EINVAL;
	ps__replica_flush(w); /* this node's pending deltas into the primaries */
	ps__link_stop(w); /* multi-host: waits for every host's nodes; clears w->net */
	ps__service_stop(w);
	ps__world_close(w);
	return 0;
}
