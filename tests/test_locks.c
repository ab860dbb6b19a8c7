/*
 * test_locks.c - the shared locks survive a holder killed inside them
 * (lock.c LO1-LO3) and their repairs leave the protected state whole
 * (arena.c pools, replica.c RP1 and the free-index stack).
 *
 * Each test forks a child of a one-node job: the child inherits the node's
 * id (as a restarted node takes a dead node's id, restart.c), runs an
 * operation with a kill point set (PS_TEST_HOOKS builds: it SIGKILLs itself
 * there, holding what it holds), and the parent then has to get through
 * the same lock within a time limit (alarm: a hang fails the test) and
 * find the state consistent.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "psmem_int.h"
#include "common.h"
#include "lock.h"

extern int ps__test_kill_at; /* lock.c, PS_TEST_HOOKS builds (libpsmem_test.a) */

/* What a restarted node does first (restart.c RS1): frees the slot locks
 * that name its node id, which the killed child (of the same id) held. */
static void sweep_slot_locks(ps_table *t)
{
	struct ps__pool *p = ps__pool_at(&test_world->seg, t->id, test_world->node);
	for (uint64_t i = 0; i < p->bump; i++) {
		struct ps__slot *sl = ps__at(&test_world->seg, p->base_off + i * t->slot_size);
		uint64_t s = atomic_load(&sl->seq);
		if ((s & PS__SEQ_LOCKED) && PS__SEQ_HOLDER(s) == test_world->node)
			ps__slot_recover(test_world, t, sl, s);
	}
}

/* Runs op(t, arg) in a child that dies at kill point kp; asserts it did. */
static void die_at(int kp, void (*op)(ps_table *, ps_key), ps_table *t, ps_key arg)
{
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		ps__test_kill_at = kp;
		op(t, arg);
		_exit(3); /* the kill point was not reached */
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFSIGNALED(st));
	assert_int_equal(WTERMSIG(st), SIGKILL);
	sweep_slot_locks(t);
}

/* RP1 both ways, and the free stack holds exactly the free indexes. */
static void assert_rp1(ps_table *t)
{
	struct ps__tdesc *d = t->d;
	uint32_t R = d->repl_max, used = 0;
	for (uint32_t r = 0; r < R; r++) {
		uint64_t kp = atomic_load(&t->rkey[r]);
		if (kp) {
			assert_int_equal(atomic_load(&t->loc[kp - 1]), PS__LOC_MAKE_REPL(r));
			used++;
		}
	}
	for (ps_key k = 0; k < d->num_keys; k++) {
		uint64_t lw = atomic_load(&t->loc[k]);
		if (lw & PS__LOC_REPL)
			assert_int_equal(atomic_load(&t->rkey[PS__LOC_RIDX(lw)]), k + 1);
	}
	assert_int_equal(atomic_load(&d->repl_used), used);
	assert_int_equal(d->repl_nfree + used, R);
	for (uint32_t i = 0; i < d->repl_nfree; i++) {
		assert_true(t->rfree[i] < R);
		assert_int_equal(atomic_load(&t->rkey[t->rfree[i]]), 0);
		for (uint32_t j = 0; j < i; j++)
			assert_int_not_equal(t->rfree[i], t->rfree[j]);
	}
}

static void pull_is(ps_table *t, ps_key k, float want)
{
	float v[4];
	assert_int_equal(ps_pull_sync(t, &k, 1, v), 0);
	for (int j = 0; j < 4; j++)
		assert_true(v[j] == want);
}

/* ----------------------------------------------------------- pool lock */

static void op_alloc(ps_table *t, ps_key k)
{
	(void)k;
	uint64_t off;
	ps__slot_alloc(test_world, t->id, test_world->node, t->slot_size, &off);
}

/* The pool lock's holder, of this node's id, is killed holding it: the
 * next allocation takes it (no wait on a "live" holder) and works. */
static void test_pool_lock_of_a_killed_holder_is_taken_over(void **state)
{
	(void)state;
	ps_table *t = test_table(64, 4, 0, 0);
	die_at(PS__KP_POOL_LOCKED, op_alloc, t, 0);
	alarm(20); /* a hang is a failure */
	uint64_t a, b;
	assert_int_equal(ps__slot_alloc(test_world, t->id, test_world->node, t->slot_size, &a), 0);
	assert_int_equal(ps__slot_alloc(test_world, t->id, test_world->node, t->slot_size, &b), 0);
	alarm(0);
	assert_int_not_equal(a, b);
}

/* --------------------------------------------------------- primary push */

/* A holder's RPUSH batch with a key it does not hold (here: key 9 made to
 * look held by host 1) is refused whole: the sender gives every delta
 * back (replica_switch.c, replica_remote.c), so applying the keys before
 * it would count them twice. */
static void test_primary_push_with_a_bad_key_applies_nothing(void **state)
{
	(void)state;
	ps_table *t = test_table(64, 4, 1, 0);
	ps_key r = 1, keys[3] = {3, 9, 4};
	assert_int_equal(ps_replicate(t, &r, 1), 1); /* the replicated path of serve */
	uint64_t lw9 = atomic_load(&t->loc[9]);
	atomic_store(&t->loc[9], PS__LOC_MAKE_REMOTE(1));
	float in[12];
	for (int j = 0; j < 12; j++)
		in[j] = 5.0f;
	assert_int_equal(ps__replica_serve(t, keys, 3, NULL, in), PS_EMISMATCH);
	atomic_store(&t->loc[9], lw9);
	pull_is(t, 3, 1.0f);
	pull_is(t, 4, 1.0f);
	pull_is(t, 9, 1.0f);
}

/* ---------------------------------------------------------- create lock */

static void op_create(ps_table *t, ps_key k)
{
	(void)t;
	(void)k;
	test_table(64, 4, 0, 0);
}

/* Killed holding the create lock while laying out a table: the lock is
 * taken at once, reporting its dead holder (the table it was laying out
 * stays CREATING: its replacement takes the layout over, table.c).  Last:
 * this process's next table would be that one. */
static void test_create_lock_of_a_killed_holder_is_taken_over(void **state)
{
	(void)state;
	ps_table *t = test_table(64, 4, 0, 0);
	die_at(PS__KP_CREATE_LOCKED, op_create, t, 0);
	alarm(20);
	assert_int_equal(ps__lock(&test_world->seg.hdr->create_lock), 1); /* EOWNERDEAD */
	ps__lock_consistent(&test_world->seg.hdr->create_lock);
	ps__unlock(&test_world->seg.hdr->create_lock);
	assert_int_equal(ps__lock(&test_world->seg.hdr->create_lock), 0);
	ps__unlock(&test_world->seg.hdr->create_lock);
	alarm(0);
}

/* ------------------------------------------------------------ replicas */

static void op_replicate(ps_table *t, ps_key k) { ps_replicate(t, &k, 1); }
static void op_unreplicate(ps_table *t, ps_key k) { ps_unreplicate(t, &k, 1); }

/* A 64-key table (repl_max) whose child died at kill point kp while
 * replicating key 5; this process's ps_sync takes repl_lock and, first
 * taker, repairs (RP11): returns with RP1 holding and a 20 s alarm set. */
static ps_table *after_replicate_killed_at(int kp, uint32_t repl_max)
{
	ps_table *t = test_table(64, 4, repl_max, 0);
	die_at(kp, op_replicate, t, 5);
	alarm(20);
	assert_int_equal(ps_sync(t), 0);
	assert_rp1(t);
	return t;
}

/* Killed after popping a free index, before using it: the index is not
 * lost (every index can still be used) and RP1 holds. */
static void test_replicate_killed_after_the_pop_leaks_no_index(void **state)
{
	(void)state;
	ps_table *t = after_replicate_killed_at(PS__KP_REPL_POPPED, 2);
	ps_key ks[2] = {5, 6};
	assert_int_equal(ps_replicate(t, ks, 2), 2);
	alarm(0);
	assert_int_equal(ps_replicated_count(t), 2);
	assert_rp1(t);
	pull_is(t, 5, 1.0f);
}

/* Killed between the install's writes (rkey set, loc[k] not yet REPL):
 * RP1 holds again, the key reads and updates as an ordinary key, and it
 * can be replicated. */
static void test_replicate_killed_between_its_writes_keeps_rp1(void **state)
{
	(void)state;
	ps_table *t = after_replicate_killed_at(PS__KP_REPL_HALF, 1);
	pull_is(t, 5, 1.0f);
	float u[4] = {1, 1, 1, 1};
	ps_key k = 5;
	assert_int_equal(ps_push_sync(t, &k, 1, u), 0);
	pull_is(t, 5, 2.0f);
	assert_int_equal(ps_replicate(t, &k, 1), 1);
	alarm(0);
	assert_rp1(t);
	pull_is(t, 5, 2.0f);
}

/* Killed after unreplicate republished the primary, before freeing the
 * index: RP1 holds, the key keeps every push, and the index is reusable. */
static void test_unreplicate_killed_halfway_keeps_rp1(void **state)
{
	(void)state;
	ps_table *t = test_table(64, 4, 1, 0);
	ps_key k = 5, k2 = 6;
	assert_int_equal(ps_replicate(t, &k, 1), 1);
	float u[4] = {2, 2, 2, 2};
	assert_int_equal(ps_push_sync(t, &k, 1, u), 0);
	die_at(PS__KP_UNREPL_HALF, op_unreplicate, t, 5);
	alarm(20);
	pull_is(t, 5, 3.0f); /* readers need no repair: the primary is not MOVED */
	assert_int_equal(ps_sync(t), 0); /* takes repl_lock: the first taker repairs (RP11) */
	assert_rp1(t);
	assert_int_equal(ps_push_sync(t, &k, 1, u), 0);
	pull_is(t, 5, 5.0f);
	assert_int_equal(ps_replicate(t, &k2, 1), 1);
	alarm(0);
	assert_rp1(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pool_lock_of_a_killed_holder_is_taken_over),
		cmocka_unit_test(test_replicate_killed_after_the_pop_leaks_no_index),
		cmocka_unit_test(test_replicate_killed_between_its_writes_keeps_rp1),
		cmocka_unit_test(test_unreplicate_killed_halfway_keeps_rp1),
		cmocka_unit_test(test_primary_push_with_a_bad_key_applies_nothing),
		cmocka_unit_test(test_create_lock_of_a_killed_holder_is_taken_over),
	};
	return cmocka_run_group_tests(tests, test_world_setup, test_world_teardown);
}
