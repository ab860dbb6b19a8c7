/*
 * test_grace.c - grace periods across processes, and what a dead process
 * leaves behind.
 *
 * Each test builds a two-node job by hand: it creates the segment
 * (ps__seg_create), forks a child that joins as node 1, and joins as node 0
 * itself.  The child is scripted through a pipe, one command byte at a time,
 * so the test controls exactly when it is inside a read-side section, holds
 * a slot lock, or dies.
 *
 * Table: 16 keys x 4 floats, range placement: keys 0..7 on node 0, 8..15 on
 * node 1.  Node 1's pool of table 0 therefore starts with 8 used slots; when
 * node 0 localizes keys 8..15 the old slots are retired, and pool.used drops
 * back to 0 only once they are freed.
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
#include <urcu/urcu-memb.h>

#include "common.h"
#include "psmem_int.h"

#define KEYS 16
#define VLEN 4

struct job {
	struct ps__seg seg;
	pid_t child;
	int cmd[2], ack[2];
	ps_world *w;
	ps_table *t;
	ps_table *full; /* same shape, pools of exactly 8 slots: full from the start */
};

static ps_table *make_table(ps_world *w, uint64_t slots_per_node)
{
	ps_table_opts o;
	ps_table_opts_init(&o, KEYS, VLEN);
	o.init = PS_INIT_CONST;
	o.init_a = 1.0f;
	o.slots_per_node = slots_per_node;
	int err;
	ps_table *t = ps_table_create(w, &o, &err);
	if (!t)
		fprintf(stderr, "table: %s\n", ps_strerror(err));
	return t;
}

static void join_env(const struct job *j, int node)
{
	char buf[32];
	setenv("PSMEM_SEGMENT", j->seg.name + 1, 1);
	snprintf(buf, sizeof buf, "%d", node);
	setenv("PSMEM_NODE", buf, 1);
}

/* Node 1: obeys one-byte commands; answers each with one byte. */
static void child_main(struct job *j)
{
	join_env(j, 1);
	int err;
	ps_world *w = ps_init(&err);
	ps_table *t = w ? make_table(w, 0) : NULL;
	if (!t || !make_table(w, KEYS / 2))
		_exit(1);
	struct ps__slot *held = NULL;
	uint64_t held_seq = 0;
	char c = 'r';
	(void)!write(j->ack[1], &c, 1);
	while (read(j->cmd[0], &c, 1) == 1) {
		switch (c) {
		case 'R': /* enter a read-side section and stay */
			ps__thread_enter(w);
			urcu_memb_read_lock();
			break;
		case 'U':
			urcu_memb_read_unlock();
			break;
		case 'L': { /* lock the slot of key 9 and keep it */
			ps__thread_enter(w);
			uint64_t lw = atomic_load(&t->loc[9]);
			held = ps__at(&w->seg, PS__LOC_OFF(lw));
			bool moved;
			held_seq = ps__slot_lock(w, t, held, &moved);
			break;
		}
		case 'K': /* die without any cleanup */
			raise(SIGKILL);
			break;
		case 'X':
			ps_finalize(w);
			(void)!write(j->ack[1], &c, 1);
			_exit(0);
		}
		(void)!write(j->ack[1], &c, 1);
	}
	(void)held_seq;
	_exit(0);
}

static void send_cmd(struct job *j, char c)
{
	assert_int_equal(write(j->cmd[1], &c, 1), 1);
	char a = 0;
	if (c != 'K')
		assert_int_equal(read(j->ack[0], &a, 1), 1);
}

static int setup(void **state)
{
	struct job *j = calloc(1, sizeof *j);
	struct ps__seg_params p = {.num_nodes = 2, .threads_per_node = 1, .arena_size = 64ULL << 20,
				   .shared_size = 16ULL << 20, .mem_budget = 256ULL << 20};
	if (ps__seg_create(&p, &j->seg) != 0 || pipe(j->cmd) || pipe(j->ack))
		return -1;
	j->child = fork();
	if (j->child == 0) {
		close(j->cmd[1]);
		close(j->ack[0]);
		child_main(j);
	}
	/* only the child keeps these ends: a dead child then reads as EOF */
	close(j->cmd[0]);
	close(j->ack[1]);
	join_env(j, 0);
	int err;
	j->w = ps_init(&err);
	if (!j->w)
		return -1;
	j->t = make_table(j->w, 0); /* collective: meets the child's create */
	j->full = j->t ? make_table(j->w, KEYS / 2) : NULL;
	char c;
	if (!j->full || read(j->ack[0], &c, 1) != 1)
		return -1;
	*state = j;
	return 0;
}

static int teardown(void **state)
{
	struct job *j = *state;
	char c = 'X';
	signal(SIGPIPE, SIG_IGN); /* the child may be dead already */
	if (write(j->cmd[1], &c, 1) == 1)
		(void)!read(j->ack[0], &c, 1);
	waitpid(j->child, NULL, 0);
	ps_finalize(j->w);
	ps__seg_unlink(j->seg.name);
	ps__seg_detach(&j->seg);
	unsetenv("PSMEM_SEGMENT");
	unsetenv("PSMEM_NODE");
	close(j->cmd[1]);
	close(j->ack[0]);
	free(j);
	return 0;
}

static uint64_t node1_used(struct job *j)
{
	return __atomic_load_n(&ps__pool_at(&j->seg, 0, 1)->used, __ATOMIC_ACQUIRE);
}

/* Waits up to ms for node 1's pool to drop to `want` used slots. */
static bool used_reaches(struct job *j, uint64_t want, int ms)
{
	for (int i = 0; i < ms; i++) {
		if (node1_used(j) == want)
			return true;
		usleep(1000);
	}
	return node1_used(j) == want;
}

static void localize_node1_keys(struct job *j)
{
	ps_key keys[8];
	for (int i = 0; i < 8; i++)
		keys[i] = 8 + (ps_key)i;
	assert_int_equal(ps_localize_sync(j->t, keys, 8), 0);
	for (int i = 0; i < 8; i++)
		assert_int_equal(ps_owner(j->t, keys[i]), 0);
}

static void test_reader_in_another_process_holds_back_reclamation(void **state)
{
	struct job *j = *state;
	assert_int_equal(node1_used(j), 8);
	send_cmd(j, 'R');
	localize_node1_keys(j);
	/* node 1 is inside a read-side section that began before the move:
	 * its old slots must stay allocated however long it stays there */
	assert_false(used_reaches(j, 0, 300));
	assert_int_equal(node1_used(j), 8);
	send_cmd(j, 'U');
	assert_true(used_reaches(j, 0, 2000));
}

static void test_reclamation_without_readers_is_prompt(void **state)
{
	struct job *j = *state;
	localize_node1_keys(j);
	assert_true(used_reaches(j, 0, 500));
	/* freed slots are poisoned and marked FREED */
	struct ps__pool *p = ps__pool_at(&j->seg, 0, 1);
	struct ps__slot *sl = ps__at(&j->seg, p->free_head);
	assert_true(atomic_load(&sl->seq) & PS__SEQ_FREED);
	assert_int_equal(atomic_load(&sl->v[0]), PS__POISON);
}

static void test_dead_reader_does_not_stall_reclamation(void **state)
{
	struct job *j = *state;
	send_cmd(j, 'R');
	send_cmd(j, 'K');
	waitpid(j->child, NULL, 0);
	localize_node1_keys(j);
	assert_true(used_reaches(j, 0, 2000));
}

static void test_lock_held_by_dead_node_is_recovered(void **state)
{
	struct job *j = *state;
	send_cmd(j, 'L');
	send_cmd(j, 'K');
	waitpid(j->child, NULL, 0);
	ps_key k = 9;
	float add[VLEN] = {2, 2, 2, 2}, v[VLEN];
	uint64_t t0 = ps__now_ns();
	assert_int_equal(ps_push_sync(j->t, &k, 1, add), 0);
	assert_true(ps__now_ns() - t0 < 2000000000ULL);
	assert_int_equal(ps_pull_sync(j->t, &k, 1, v), 0);
	for (int i = 0; i < VLEN; i++)
		assert_true(v[i] == 3.0f);
	/* and the key can still move */
	assert_int_equal(ps_localize_sync(j->t, &k, 1), 0);
	assert_int_equal(ps_owner(j->t, k), 0);
}

static void test_barrier_returns_EDEAD_when_a_node_died(void **state)
{
	struct job *j = *state;
	send_cmd(j, 'K');
	waitpid(j->child, NULL, 0);
	uint64_t t0 = ps__now_ns();
	assert_int_equal(ps_barrier(j->w), PS_EDEAD);
	assert_true(ps__now_ns() - t0 < 1000000000ULL);
}

static void test_localize_into_a_full_pool_fails_with_PS_EFULL_and_loses_nothing(void **state)
{
	struct job *j = *state;
	ps_key k = 9;
	float add[VLEN] = {4, 4, 4, 4}, v[VLEN];
	assert_int_equal(ps_push_sync(j->full, &k, 1, add), 0);
	uint64_t t0 = ps__now_ns();
	assert_int_equal(ps_localize_sync(j->full, &k, 1), PS_EFULL);
	/* it waited for reclamation that could free a slot, but not for ever */
	assert_true(ps__now_ns() - t0 < 3000000000ULL);
	assert_int_equal(ps_owner(j->full, k), 1);
	assert_int_equal(ps_pull_sync(j->full, &k, 1, v), 0);
	for (int i = 0; i < VLEN; i++)
		assert_true(v[i] == 5.0f);
	assert_int_equal(ps_wait(ps_localize(j->full, &k, 1)), PS_EFULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_reader_in_another_process_holds_back_reclamation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reclamation_without_readers_is_prompt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dead_reader_does_not_stall_reclamation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lock_held_by_dead_node_is_recovered, setup, teardown),
		cmocka_unit_test_setup_teardown(test_barrier_returns_EDEAD_when_a_node_died, setup, teardown),
		cmocka_unit_test_setup_teardown(test_localize_into_a_full_pool_fails_with_PS_EFULL_and_loses_nothing, setup,
						teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
