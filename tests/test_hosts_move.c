/*
 * test_hosts_move.c - a move across hosts that fails leaves every key where
 * it was (migrate.c MG5).
 *
 * Two hosts of one node each on loopback.  Keys 0-7 have host 0 as their
 * home, 8-15 host 1.  Host 1 first moves keys 0-3 to itself (host 0's
 * directory entries say REMOTE(1)).  Then host 0 moves them back with the
 * test hook PSMEM_DEBUG_MOVE_FAIL=0 (libpsmem_test.a only): its LOCK step
 * fails after host 0 has set its own entries MOVING.  The localize must
 * fail, and the keys must stay at host 1, unlocked: pulls from both hosts
 * return the exact values at once (a key left MOVING makes every access
 * wait 30 s and fail with -ETIMEDOUT), and a second move, without the
 * failure, works.
 *
 * A move from another host into a full pool waits for freed slots like a
 * local one (migrate.c MG6).  Pools of 12 slots: host 0 holds keys 0-7 and
 * moves 8-11 to itself (its pool is full), host 1 moves 0-3 to itself (host
 * 0's four slots wait for a grace period), then host 0 moves 12-15 to
 * itself at once.  PSMEM_DEBUG_HOLD_RECLAIM=1 (test builds only) keeps the
 * service threads from reclaiming until a thread waits for a free slot, so
 * that the slots are still retired when host 0 allocates: without the wait
 * the move fails with PS_EFULL; with it the move completes, values exact.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "hosts.h"
#include "psmem.h"

enum { NK = 16, LEN = 2, NMOVE = 4 };

static int bad;

static void node_fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	bad = 1;
}

static float want(ps_key k, int j) { return (float)(10 * k + j + 1); }

/* Pulls keys 0..NMOVE-1 within `limit` seconds, exact values, held by
 * host `holder`. */
static void check(ps_table *t, const char *when, int holder, double limit)
{
	ps_key k[NMOVE];
	float v[NMOVE * LEN];
	for (int i = 0; i < NMOVE; i++)
		k[i] = (ps_key)i;
	double t0 = mh_now();
	int rc = ps_pull_sync(t, k, NMOVE, v);
	double s = mh_now() - t0;
	if (rc) {
		node_fail("%s: pull: %s after %.1f s\n", when, ps_strerror(rc), s);
		return;
	}
	if (s > limit)
		node_fail("%s: pull took %.1f s\n", when, s);
	for (int i = 0; i < NMOVE; i++) {
		for (int j = 0; j < LEN; j++)
			if (v[i * LEN + j] != want(k[i], j))
				node_fail("%s: key %d value %d is %g\n", when, i, j, (double)v[i * LEN + j]);
		if (ps_owner_host(t, k[i]) != holder)
			node_fail("%s: key %d held by host %d, want %d\n", when, i, ps_owner_host(t, k[i]), holder);
	}
}

enum { FULL_SLOTS = 12 };

/* A node's start: its world (*w), the NK-key table (full: FULL_SLOTS slots
 * per node), host 0 pushing want() to every key, a barrier; NULL after
 * saying on stderr what failed. */
static ps_table *node_start(ps_world **w, bool full)
{
	int err;
	*w = ps_init(&err);
	if (!*w) {
		fprintf(stderr, "ps_init: %s\n", ps_strerror(err));
		return NULL;
	}
	ps_table_opts o;
	ps_table_opts_init(&o, NK, LEN);
	if (full)
		o.slots_per_node = FULL_SLOTS;
	ps_table *t = ps_table_create(*w, &o, &err);
	if (!t) {
		fprintf(stderr, "table: %s\n", ps_strerror(err));
		return NULL;
	}
	ps_key all[NK];
	float v[NK * LEN];
	for (int i = 0; i < NK; i++) {
		all[i] = (ps_key)i;
		for (int j = 0; j < LEN; j++)
			v[i * LEN + j] = want((ps_key)i, j);
	}
	if (ps_host_id(*w) == 0 && ps_push_sync(t, all, NK, v))
		node_fail("initial push failed\n");
	if (ps_barrier(*w))
		node_fail("barrier failed\n");
	return t;
}

static int node_main(void)
{
	ps_world *w;
	ps_table *t = node_start(&w, false);
	if (!t)
		return 1;
	int host = ps_host_id(w);
	ps_key mv[NMOVE];
	for (int i = 0; i < NMOVE; i++)
		mv[i] = (ps_key)i;
	if (host == 1 && ps_localize_sync(t, mv, NMOVE))
		node_fail("host 1: localize failed\n");
	if (ps_barrier(w))
		node_fail("barrier failed\n");
	if (host == 0) {
		int rc = ps_localize_sync(t, mv, NMOVE); /* fails (the hook) */
		if (rc == 0)
			node_fail("host 0: the move did not fail: the hook did not fire\n");
		else
			printf("host 0: failed move: %s\n", ps_strerror(rc));
		check(t, "host 0 after the failed move", 1, 5);
	}
	if (ps_barrier(w))
		node_fail("barrier failed\n");
	if (host == 1)
		check(t, "host 1 after the failed move", 1, 5);
	if (ps_barrier(w))
		node_fail("barrier failed\n");
	if (host == 0) {
		int rc = ps_localize_sync(t, mv, NMOVE);
		if (rc)
			node_fail("host 0: second move: %s\n", ps_strerror(rc));
		check(t, "host 0 after the second move", 0, 5);
	}
	if (ps_barrier(w))
		node_fail("barrier failed\n");
	if (host == 1)
		check(t, "host 1 after the second move", 0, 5);
	if (ps_barrier(w))
		node_fail("barrier failed\n");
	if (!bad)
		printf("host %d: move ok\n", host);
	fflush(stdout);
	ps_finalize(w);
	return bad ? 3 : 0;
}

/* Pulls every key from this host: exact values; keys lo..hi-1 held by
 * host `holder`. */
static void check_all(ps_table *t, const char *when, ps_key lo, ps_key hi, int holder)
{
	ps_key k[NK];
	float v[NK * LEN];
	for (int i = 0; i < NK; i++)
		k[i] = (ps_key)i;
	int rc = ps_pull_sync(t, k, NK, v);
	if (rc) {
		node_fail("%s: pull: %s\n", when, ps_strerror(rc));
		return;
	}
	for (int i = 0; i < NK; i++)
		for (int j = 0; j < LEN; j++)
			if (v[i * LEN + j] != want(k[i], j))
				node_fail("%s: key %d value %d is %g\n", when, i, j, (double)v[i * LEN + j]);
	for (ps_key i = lo; i < hi; i++)
		if (ps_owner_host(t, i) != holder)
			node_fail("%s: key %d held by host %d, want %d\n", when, (int)i, ps_owner_host(t, i), holder);
}

static int move(ps_table *t, ps_key lo, ps_key hi)
{
	ps_key k[NK];
	for (ps_key i = lo; i < hi; i++)
		k[i - lo] = i;
	return ps_localize_sync(t, k, (size_t)(hi - lo));
}

static int node_full_main(void)
{
	ps_world *w;
	ps_table *t = node_start(&w, true);
	if (!t)
		return 1;
	int host = ps_host_id(w), rc;
	if (host == 0 && (rc = move(t, 8, 12)) != 0) /* fills host 0's pool */
		node_fail("host 0: moving 8-11: %s\n", ps_strerror(rc));
	if (ps_barrier(w))
		node_fail("barrier failed\n");
	if (host == 1 && (rc = move(t, 0, 4)) != 0) /* host 0 gives 4 slots away */
		node_fail("host 1: moving 0-3: %s\n", ps_strerror(rc));
	if (ps_barrier(w))
		node_fail("barrier failed\n");
	if (host == 0) {
		/* the premise: every slot of host 0's pool is used or retired */
		ps_node_stats st;
		if (ps_stats(w, 0, &st) || st.slots_used != st.slots_capacity || st.slots_capacity != FULL_SLOTS)
			node_fail("host 0: pool not full before the move: %llu of %llu slots\n",
				  (unsigned long long)st.slots_used, (unsigned long long)st.slots_capacity);
		rc = move(t, 12, 16);
		if (rc)
			node_fail("host 0: moving 12-15 into a full pool: %s\n", ps_strerror(rc));
		check_all(t, "host 0 after the move", 12, 16, 0);
	}
	if (ps_barrier(w))
		node_fail("barrier failed\n");
	if (host == 1)
		check_all(t, "host 1 after the move", 12, 16, 0);
	if (host == 1)
		check_all(t, "host 1 after the move", 0, 4, 1);
	if (ps_barrier(w))
		node_fail("barrier failed\n");
	if (!bad)
		printf("host %d: full move ok\n", host);
	fflush(stdout);
	ps_finalize(w);
	return bad ? 3 : 0;
}

/* Runs 2 hosts of 1 node each of `mh_self flag` with env var=val set (for
 * psrun to pass on), shows any host that failed, then asserts that each
 * exited 0 and printed "host <r>: <ok>". */
static void run_two_hosts(const char *flag, const char *var, const char *val, const char *ok,
			  struct mh_proc p[2])
{
	const char *prog[] = {mh_self, flag, NULL};
	setenv(var, val, 1);
	mh_run_hosts(2, 1, prog, p, 90);
	unsetenv(var);
	mh_show_failed(2, p);
	for (int r = 0; r < 2; r++) {
		assert_int_equal(p[r].status, 0);
		char want[48];
		snprintf(want, sizeof want, "host %d: %s", r, ok);
		assert_non_null(strstr(mh_slurp(p[r].out), want));
	}
}

static void test_move_across_hosts_into_a_full_pool_waits_for_freed_slots(void **state)
{
	(void)state;
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	struct mh_proc p[2];
	run_two_hosts("--node-full", "PSMEM_DEBUG_HOLD_RECLAIM", "1", "full move ok", p);
	mh_assert_clean(&segs);
}

static void test_failed_move_across_hosts_leaves_every_key_where_it_was(void **state)
{
	(void)state;
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	struct mh_proc p[2];
	/* "0": host 0's first move fails */
	run_two_hosts("--node", "PSMEM_DEBUG_MOVE_FAIL", "0", "move ok", p);
	assert_non_null(strstr(mh_slurp(p[0].out), "host 0: failed move: "));
	mh_assert_clean(&segs);
}

int main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "--node") == 0)
		return node_main();
	if (argc >= 2 && strcmp(argv[1], "--node-full") == 0)
		return node_full_main();
	if (!self_exe(mh_self, sizeof mh_self))
		return 1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_failed_move_across_hosts_leaves_every_key_where_it_was),
		cmocka_unit_test(test_move_across_hosts_into_a_full_pool_waits_for_freed_slots),
	};
	return cmocka_run_group_tests(tests, mh_setup, mh_teardown);
}
