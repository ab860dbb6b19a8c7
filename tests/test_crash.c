/*
 * test_crash.c - crash safety of the per-key protocol (kv.c KV5): a lock
 * whose holder died is recovered with one CAS, a relocator killed between
 * publishing the new location and unlocking the old slot loses nothing,
 * and a pusher killed halfway through an add leaves a half-applied add
 * (documented in psmem.h) but never a stuck key.
 *
 * The kills use test hooks compiled only into libpsmem_test.a
 * (PSMEM_DEBUG_DIE_AFTER_PUBLISH, PSMEM_DEBUG_DIE_MID_ADD, and the
 * ps__test_recover_hook interleaving); the jobs run under psrun
 * --on-failure restart, so the survivor keeps running while the killed
 * node is replaced.
 */
#include <errno.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common.h"
#include "psmem_int.h"

enum { LEN = 8, NKEYS = 4 };

static float base_val(int j) { return (float)(j + 1); }

/* ------------------------------------------------- one CAS (in-process) */

static _Atomic int hook_calls;
static bool hook_moved;
static const float ones[LEN] = {1, 1, 1, 1, 1, 1, 1, 1};

/* A pusher that loaded the old location before the relocator published:
 * it locks the old slot right after the recovery's CAS. */
static void stale_pusher(ps_world *w, ps_table *t, struct ps__slot *sl)
{
	bool moved;
	hook_calls++;
	uint64_t s = ps__slot_lock(w, t, sl, &moved);
	hook_moved = moved;
	if (!moved) {
		ps__add_values(sl, ones, LEN);
		ps__slot_unlock(sl, s, false);
	}
}

/*
 * The state a relocator leaves when it dies after publishing: loc[k] names
 * the new slot B, the old slot A is still locked by the dead node.  The
 * recovery must mark A MOVED in the same store that unlocks it: a pusher
 * that locks A just after the recovery must find it MOVED and go to B.
 */
static void test_recovery_unlocks_and_marks_moved_in_one_cas(void **state)
{
	(void)state;
	int err;
	ps_world *w = ps_init(&err);
	assert_non_null(w);
	ps_table_opts o;
	ps_table_opts_init(&o, NKEYS, LEN);
	ps_table *t = ps_table_create(w, &o, &err);
	assert_non_null(t);
	ps_key k = 0;
	float v[LEN];
	for (int j = 0; j < LEN; j++)
		v[j] = base_val(j);
	assert_int_equal(ps_push_sync(t, &k, 1, v), 0);

	uint64_t lw = atomic_load(&t->loc[k]);
	struct ps__slot *a = ps__at(&w->seg, PS__LOC_OFF(lw));
	uint64_t off;
	assert_int_equal(ps__slot_alloc(w, t->id, w->node, t->slot_size, &off), 0);
	uint32_t vals[LEN];
	ps__copy_out(vals, a, LEN);
	ps__slot_fill(w, t, off, k, vals);
	/* "node 1" holds A's lock and has published B, then died */
	uint64_t s = atomic_load(&a->seq);
	uint64_t locked = s | PS__SEQ_LOCKED | (2ULL << PS__SEQ_HOLDER_SHIFT);
	atomic_store(&a->seq, locked);
	atomic_store(&t->loc[k], PS__LOC_MAKE(w->node, off));

	ps__test_recover_hook = stale_pusher;
	bool rec = ps__slot_recover(w, t, a, locked);
	ps__test_recover_hook = NULL;
	assert_true(rec);
	assert_int_equal(hook_calls, 1);
	/* the stale pusher found A MOVED: nothing was added to a dead slot */
	assert_true(hook_moved);
	uint64_t s2 = atomic_load(&a->seq);
	assert_true(s2 & PS__SEQ_MOVED);
	assert_false(s2 & PS__SEQ_LOCKED);
	/* a push lands in B, and a pull sees it exactly */
	assert_int_equal(ps_push_sync(t, &k, 1, ones), 0);
	assert_int_equal(ps_pull_sync(t, &k, 1, v), 0);
	for (int j = 0; j < LEN; j++)
		assert_true(v[j] == base_val(j) + 1);
	assert_int_equal(ps_finalize(w), 0);
}

/* ------------------------------------------------------------ node side */

struct job {
	ps_table *t;
	const char *mode;
	_Atomic int bad;
};

static void fail_node(struct job *j, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	j->bad = 1;
}

static bool expect(struct job *j, const char *what, const float *want)
{
	ps_key k = 0;
	float v[LEN];
	if (ps_pull_sync(j->t, &k, 1, v) != 0) {
		fail_node(j, "%s: pull failed\n", what);
		return false;
	}
	for (int i = 0; i < LEN; i++)
		if (v[i] != want[i]) {
			fail_node(j, "%s: value %d is %g, want %g\n", what, i, (double)v[i], (double)want[i]);
			return false;
		}
	return true;
}

/* Node 1's first process dies in relocate() after publishing key 0's new
 * slot and before unlocking the old one.  Node 0, as a pusher that loaded
 * the old location before, must find the old slot MOVED once the lock is
 * recovered; then pushes and pulls go to the new slot, values exact. */
static void after_publish(ps_world *w, struct job *j)
{
	ps_key k = 0;
	ps_table *t = j->t;
	uint64_t old = 0;
	if (ps_node_id(w) == 0)
		old = atomic_load(&t->loc[k]);
	if (ps_barrier(w))
		fail_node(j, "barrier failed\n");
	if (ps_node_id(w) == 1) {
		ps_localize_sync(t, &k, 1);
		fail_node(j, "node 1 survived its relocation\n");
		return;
	}
	double end = mono_now() + 20;
	while (ps_owner(t, k) != 1 && mono_now() < end)
		sched_yield();
	if (ps_owner(t, k) != 1) {
		fail_node(j, "key 0 never moved to node 1\n");
		return;
	}
	struct ps__slot *sl = ps__at(&w->seg, PS__LOC_OFF(old));
	bool moved;
	ps__thread_enter(w);
	uint64_t s = ps__slot_lock(w, t, sl, &moved); /* waits for the recovery */
	if (!moved) {
		ps__slot_unlock(sl, s, false);
		fail_node(j, "the old slot was recovered without MOVED\n");
	}
	float want[LEN], one[LEN];
	for (int i = 0; i < LEN; i++)
		want[i] = base_val(i), one[i] = 1;
	expect(j, "after the relocator died", want);
	if (ps_push_sync(t, &k, 1, one) != 0)
		fail_node(j, "push failed\n");
	for (int i = 0; i < LEN; i++)
		want[i] += 1;
	if (expect(j, "after a push", want) && ps_owner(t, k) == 1 && !j->bad)
		printf("publish ok\n");
}

/* Node 1's first process dies halfway through adding +1 to key 0: its
 * first half is added, the rest is not.  Node 0 waits until the slot is
 * locked by node 1 (the add has begun), then pulls: the lock is recovered
 * and it reads the half-applied add; a push after it is applied whole. */
static void mid_add(ps_world *w, struct job *j)
{
	ps_key k = 0;
	ps_table *t = j->t;
	if (ps_barrier(w))
		fail_node(j, "barrier failed\n");
	float want[LEN], one[LEN];
	for (int i = 0; i < LEN; i++)
		want[i] = base_val(i), one[i] = 1;
	if (ps_node_id(w) == 1) {
		/* ps_push, not ps_push_sync: the hook is on the library's path
		 * (ps__push_key), which a short ps_push_sync may skip for the
		 * inline path of psmem_static.h */
		ps_wait(ps_push(t, &k, 1, one));
		fail_node(j, "node 1 survived its push\n");
		return;
	}
	struct ps__slot *sl = ps__at(&w->seg, PS__LOC_OFF(atomic_load(&t->loc[k])));
	double end = mono_now() + 20;
	while (!(atomic_load(&sl->seq) & PS__SEQ_LOCKED) && mono_now() < end)
		sched_yield();
	for (int i = 0; i < LEN / 2; i++)
		want[i] += 1;
	expect(j, "after the pusher died", want);
	if (ps_push_sync(t, &k, 1, one) != 0)
		fail_node(j, "push failed\n");
	for (int i = 0; i < LEN; i++)
		want[i] += 1;
	if (expect(j, "after a push", want) && !j->bad)
		printf("midadd ok\n");
}

/*
 * An asynchronous localize into a full pool runs on node 0's service
 * thread, the only thread that advances node 0's epoch.  Pools hold 6
 * slots; keys 0-3 live on node 0, 4-7 on node 1.  Node 0 queues localize
 * of 4, 5, 6: two fit, the third finds the pool full with nothing retired
 * and waits.  Then node 1 relocates 0 and 1 away from node 0: their slots
 * are retired with a tag node 0's epoch has not reached, and only node 0's
 * service thread can advance it.  It must do so while it waits (grace.c
 * GR5): the localize completes, well before the 10 s give-up.
 */
static void full_pool(ps_world *w, struct job *j)
{
	ps_table *t = j->t;
	ps_key mine[2] = {0, 1}, far[3] = {4, 5, 6};
	ps_handle h = NULL;
	double t0 = mono_now();
	if (ps_node_id(w) == 0) {
		h = ps_localize(t, far, 3);
		double end = mono_now() + 20;
		while (ps_owner(t, 5) != 0 && mono_now() < end) /* the third is next */
			sched_yield();
	}
	if (ps_barrier(w))
		fail_node(j, "barrier failed\n");
	if (ps_node_id(w) == 1) {
		if (ps_localize_sync(t, mine, 2) != 0)
			fail_node(j, "node 1: localize failed\n");
		return;
	}
	int rc = ps_wait(h);
	double s = mono_now() - t0;
	if (rc != 0 || ps_owner(t, 6) != 0)
		fail_node(j, "node 0: async localize into a full pool: %s after %.1f s\n", ps_strerror(rc), s);
	else if (s > 5)
		fail_node(j, "node 0: async localize into a full pool took %.1f s\n", s);
	else
		printf("fullpool ok\n");
}

static void worker(ps_world *w, int tid, void *arg)
{
	(void)tid;
	struct job *j = arg;
	if (!ps_restarted(w)) {
		if (ps_node_id(w) == 0) {
			ps_key k = 0;
			float v[LEN];
			for (int i = 0; i < LEN; i++)
				v[i] = base_val(i);
			if (ps_push_sync(j->t, &k, 1, v))
				fail_node(j, "push failed\n");
		}
		if (ps_barrier(w))
			fail_node(j, "barrier failed\n");
		if (!strcmp(j->mode, "publish"))
			after_publish(w, j);
		else if (!strcmp(j->mode, "fullpool"))
			full_pool(w, j);
		else
			mid_add(w, j);
	} else {
		/* the replacement: the barriers its predecessor passed return */
		ps_barrier(w);
		ps_barrier(w);
	}
	if (ps_barrier(w))
		fail_node(j, "last barrier failed\n");
}

static int node_main(const char *mode)
{
	struct job j = {.mode = mode};
	int err;
	ps_world *w = ps_init(&err);
	if (!w) {
		fprintf(stderr, "ps_init: %s\n", ps_strerror(err));
		return 1;
	}
	ps_table_opts o;
	ps_table_opts_init(&o, NKEYS, LEN); /* range: key 0 on node 0 */
	if (!strcmp(mode, "fullpool")) {
		o.num_keys = 8;
		o.slots_per_node = 6;
	}
	j.t = ps_table_create(w, &o, &err);
	if (!j.t) {
		fprintf(stderr, "table: %s\n", ps_strerror(err));
		return 1;
	}
	int rc = ps_run_workers(w, worker, &j);
	fflush(stdout);
	ps_finalize(w);
	return rc || j.bad ? 3 : 0;
}

/* ------------------------------------------------------------ driver side */

static char self[1024];

static void run_job(const char *mode, const char *hook, const char *ok)
{
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	char *argv[] = {(char *)build_path("bin/psrun"), "-n", "2", "--on-failure", "restart", self, "--node",
			(char *)mode, NULL};
	char *env[] = {(char *)hook, NULL};
	bool kill = strstr(hook, "DIE") != NULL;
	static struct run_result r;
	run_prog(argv, env, 60, -1, 0, &r);
	if (r.status != 0 || !strstr(r.out, ok))
		fprintf(stderr, "status %d\nstdout:\n%s\nstderr:\n%s\n", r.status, r.out, r.err);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, ok));
	if (kill)
		assert_non_null(strstr(r.err, "killed by signal 9"));
	/* only node 1 was killed and restarted; node 0 found nothing wrong */
	assert_null(strstr(r.err, "restarting node 0"));
	assert_null(strstr(r.err, "exited with status"));
	assert_true(left_clean(&segs, self));
}

static void test_relocator_killed_after_publishing_loses_nothing(void **state)
{
	(void)state;
	run_job("publish", "PSMEM_DEBUG_DIE_AFTER_PUBLISH=1", "publish ok");
}

static void test_pusher_killed_mid_add_leaves_half_the_add_and_no_stuck_key(void **state)
{
	(void)state;
	run_job("midadd", "PSMEM_DEBUG_DIE_MID_ADD=1", "midadd ok");
}

static void test_async_localize_into_a_full_pool_runs_grace_steps_itself(void **state)
{
	(void)state;
	run_job("fullpool", "PSMEM_FULLPOOL=1", "fullpool ok");
}

/* ps_init fails with pthread_create's error when the service thread cannot
 * start (forced by the PSMEM_DEBUG_NO_SERVICE hook), and leaves nothing. */
static void test_init_fails_when_the_service_thread_cannot_start(void **state)
{
	(void)state;
	int err = 0;
	setenv("PSMEM_DEBUG_NO_SERVICE", "1", 1);
	ps_world *w = ps_init(&err);
	unsetenv("PSMEM_DEBUG_NO_SERVICE");
	assert_null(w);
	assert_int_equal(err, -EAGAIN);
	w = ps_init(&err); /* and the process can start over */
	assert_non_null(w);
	assert_int_equal(ps_finalize(w), 0);
}

/*
 * A handle waited once is stale: waiting it again is PS_EHANDLE, also after
 * its request was reused for a later call (which must still complete
 * normally), and after ps_finalize.  Before, ps_wait freed the request and
 * a second wait read freed memory; with the request reused it waited the
 * other call's request and freed it under its owner.
 */
static void test_waiting_a_handle_twice_is_PS_EHANDLE_even_after_reuse(void **state)
{
	(void)state;
	int err;
	ps_world *w = ps_init(&err);
	assert_non_null(w);
	ps_table_opts o;
	ps_table_opts_init(&o, NKEYS, LEN);
	ps_table *t = ps_table_create(w, &o, &err);
	assert_non_null(t);
	ps_key k = 1;
	float v[LEN];
	ps_handle h1 = ps_pull(t, &k, 1, v);
	assert_non_null(h1);
	assert_int_equal(ps_wait(h1), 0);
	assert_int_equal(ps_wait(h1), PS_EHANDLE);
	ps_handle h2 = ps_push(t, &k, 1, ones); /* reuses h1's request */
	ps_handle h3 = ps_localize(t, &k, 1);
	assert_non_null(h2);
	assert_non_null(h3);
	assert_int_equal(ps_wait(h1), PS_EHANDLE);
	assert_int_equal(ps_wait(h2), 0);
	assert_int_equal(ps_wait(h3), 0);
	assert_int_equal(ps_wait(h2), PS_EHANDLE);
	assert_int_equal(ps_wait(h3), PS_EHANDLE);
	assert_int_equal(ps_pull_sync(t, &k, 1, v), 0);
	assert_true(v[0] == 1);
	ps_handle h4 = ps_pull(t, &k, 1, v);
	assert_int_equal(ps_finalize(w), 0);
	assert_int_equal(ps_wait(h4), PS_EHANDLE); /* not waited, but the world is gone */
}

int main(int argc, char **argv)
{
	if (argc >= 3 && strcmp(argv[1], "--node") == 0)
		return node_main(argv[2]);
	if (!self_exe(self, sizeof self))
		return 1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_recovery_unlocks_and_marks_moved_in_one_cas),
		cmocka_unit_test(test_relocator_killed_after_publishing_loses_nothing),
		cmocka_unit_test(test_pusher_killed_mid_add_leaves_half_the_add_and_no_stuck_key),
		cmocka_unit_test(test_async_localize_into_a_full_pool_runs_grace_steps_itself),
		cmocka_unit_test(test_init_fails_when_the_service_thread_cannot_start),
		cmocka_unit_test(test_waiting_a_handle_twice_is_PS_EHANDLE_even_after_reuse),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
