/*
 * test_errors.c - every bad input gets its specific code and changes nothing.
 *
 * Fixtures: "world" tests get a private one-node job from ps_init; "bare"
 * tests make their own (environment, hand-made segments).  The teardown
 * finalizes whatever world is left, clears the environment and unlinks any
 * segment the test made, so a failing test leaves nothing in /dev/shm.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "psmem_int.h"

/* ------------------------------------------------------------ fixtures */

static ps_world *g_world;
static char g_segname[PS__NAME_MAX]; /* "/psmem-..." made by the test, or "" */

static void clear_env(void)
{
	unsetenv("PSMEM_SEGMENT");
	unsetenv("PSMEM_NODE");
	unsetenv("PSMEM_NODES");
	unsetenv("PSMEM_THREADS");
}

static int setup_world(void **state)
{
	int err = 1;
	g_segname[0] = 0;
	g_world = ps_init(&err);
	if (!g_world || err != 0)
		return -1;
	*state = g_world;
	return 0;
}

static int setup_bare(void **state)
{
	(void)state;
	g_world = NULL;
	g_segname[0] = 0;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	int rc = 0;
	clear_env();
	if (g_world) {
		rc = ps_finalize(g_world);
		g_world = NULL;
	}
	if (g_segname[0]) {
		if (shm_unlink(g_segname) != 0)
			rc = -1;
		g_segname[0] = 0;
	}
	return rc ? -1 : 0;
}

#define TEST(f) cmocka_unit_test_setup_teardown(f, setup_world, teardown)
#define TEST_BARE(f) cmocka_unit_test_setup_teardown(f, setup_bare, teardown)

/* ------------------------------------------------------------- helpers */

enum { NK = 64, LEN = 3 };

static ps_table *uniform_table(ps_world *w)
{
	ps_table_opts o;
	ps_table_opts_init(&o, NK, LEN);
	o.init = PS_INIT_UNIFORM;
	o.init_a = 1.0f;
	o.seed = 3;
	int err = 1;
	ps_table *t = ps_table_create(w, &o, &err);
	assert_non_null(t);
	assert_int_equal(err, 0);
	return t;
}

static void pull_all(ps_table *t, float *v)
{
	ps_key k[NK];
	for (int i = 0; i < NK; i++)
		k[i] = (ps_key)i;
	assert_int_equal(ps_pull_sync(t, k, NK, v), 0);
}

static void assert_create_fails(ps_world *w, const ps_table_opts *o, int code)
{
	int err = 0;
	ps_table *t = ps_table_create(w, o, &err);
	assert_null(t);
	assert_int_equal(err, code);
}

/* A real segment of a one-node job (internal API); its name is recorded for
 * the teardown and exported as PSMEM_SEGMENT. */
static struct ps__seg make_segment_of(int nodes, uint64_t mem_budget)
{
	struct ps__seg_params p = {
		.num_nodes = (uint32_t)nodes,
		.threads_per_node = 1,
		.numa_mode = 1,
		.arena_size = 64ULL << 20,
		.shared_size = 4ULL << 20,
		.mem_budget = mem_budget,
	};
	struct ps__seg s;
	assert_int_equal(ps__seg_create(&p, &s), 0);
	snprintf(g_segname, sizeof g_segname, "%s", s.name);
	assert_int_equal(setenv("PSMEM_SEGMENT", s.name + 1, 1), 0); /* without the '/' */
	return s;
}

static struct ps__seg make_segment(uint64_t mem_budget)
{
	return make_segment_of(1, mem_budget);
}

static void assert_init_fails(int code)
{
	int err = 0;
	ps_world *w = ps_init(&err);
	if (w) {
		g_world = w; /* finalized by the teardown */
		fail_msg("ps_init succeeded, expected %d (%s)", code, ps_strerror(code));
	}
	assert_int_equal(err, code);
}

/* ------------------------------------------------------ keys out of range */

static void test_push_with_one_bad_key_returns_PS_EKEY_and_changes_nothing(void **state)
{
	ps_world *w = *state;
	ps_table *t = uniform_table(w);
	float before[NK * LEN], after[NK * LEN];
	pull_all(t, before);
	ps_node_stats s0, s1;
	assert_int_equal(ps_stats(w, 0, &s0), 0);

	ps_key keys[4] = {0, 5, NK, 63}; /* NK is one past the last key */
	float upd[4 * LEN];
	for (int i = 0; i < 4 * LEN; i++)
		upd[i] = 1.0f;
	assert_int_equal(ps_push_sync(t, keys, 4, upd), PS_EKEY);

	pull_all(t, after);
	assert_memory_equal(before, after, sizeof before);
	assert_int_equal(ps_stats(w, 0, &s1), 0);
	assert_int_equal(s1.pushes, s0.pushes);
	assert_int_equal(s1.keys_pushed, s0.keys_pushed);
}

static void test_async_push_with_huge_key_returns_PS_EKEY_and_changes_nothing(void **state)
{
	ps_table *t = uniform_table(*state);
	float before[NK * LEN], after[NK * LEN];
	pull_all(t, before);
	ps_key keys[3] = {1, UINT64_MAX, 2};
	float upd[3 * LEN] = {0};
	for (int i = 0; i < 3 * LEN; i++)
		upd[i] = 2.0f;
	assert_int_equal(ps_wait(ps_push(t, keys, 3, upd)), PS_EKEY);
	pull_all(t, after);
	assert_memory_equal(before, after, sizeof before);
}

static void test_pull_with_one_bad_key_returns_PS_EKEY_and_writes_nothing(void **state)
{
	ps_world *w = *state;
	ps_table *t = uniform_table(w);
	ps_node_stats s0, s1;
	assert_int_equal(ps_stats(w, 0, &s0), 0);
	ps_key keys[3] = {2, 3, NK};
	float v[3 * LEN];
	for (int i = 0; i < 3 * LEN; i++)
		v[i] = -77.0f;
	assert_int_equal(ps_pull_sync(t, keys, 3, v), PS_EKEY);
	for (int i = 0; i < 3 * LEN; i++)
		assert_true(v[i] == -77.0f);
	assert_int_equal(ps_wait(ps_pull(t, keys, 3, v)), PS_EKEY);
	for (int i = 0; i < 3 * LEN; i++)
		assert_true(v[i] == -77.0f);
	assert_int_equal(ps_stats(w, 0, &s1), 0);
	assert_int_equal(s1.pulls, s0.pulls);
	assert_int_equal(s1.keys_pulled, s0.keys_pulled);
}

static void test_localize_with_one_bad_key_returns_PS_EKEY_and_changes_nothing(void **state)
{
	ps_world *w = *state;
	ps_table *t = uniform_table(w);
	float before[NK * LEN], after[NK * LEN];
	pull_all(t, before);
	ps_key keys[3] = {0, NK + 1000, 7};
	assert_int_equal(ps_localize_sync(t, keys, 3), PS_EKEY);
	assert_int_equal(ps_wait(ps_localize(t, keys, 3)), PS_EKEY);
	for (ps_key k = 0; k < NK; k++)
		assert_int_equal(ps_owner(t, k), 0);
	pull_all(t, after);
	assert_memory_equal(before, after, sizeof before);
	ps_node_stats st;
	assert_int_equal(ps_stats(w, 0, &st), 0);
	assert_int_equal(st.relocations, 0);
}

static void test_owner_of_out_of_range_key_is_PS_EKEY(void **state)
{
	ps_table *t = uniform_table(*state);
	assert_int_equal(ps_owner(t, NK - 1), 0);
	assert_int_equal(ps_owner(t, NK), PS_EKEY);
	assert_int_equal(ps_owner(t, UINT64_MAX), PS_EKEY);
}

static void test_null_keys_with_nonzero_count_is_EINVAL(void **state)
{
	ps_table *t = uniform_table(*state);
	float v[LEN];
	assert_int_equal(ps_pull_sync(t, NULL, 1, v), -EINVAL);
	assert_int_equal(ps_push_sync(t, NULL, 1, v), -EINVAL);
	assert_int_equal(ps_localize_sync(t, NULL, 1), -EINVAL);
}

/* ------------------------------------------------------------ bad table */

static void test_sync_ops_on_NULL_table_return_PS_ETABLE(void **state)
{
	(void)state;
	ps_key k = 0;
	float v[LEN] = {0};
	assert_int_equal(ps_pull_sync(NULL, &k, 1, v), PS_ETABLE);
	assert_int_equal(ps_push_sync(NULL, &k, 1, v), PS_ETABLE);
	assert_int_equal(ps_localize_sync(NULL, &k, 1), PS_ETABLE);
	assert_int_equal(ps_owner(NULL, 0), PS_ETABLE);
}

static void test_async_ops_on_NULL_table_wait_to_PS_ETABLE(void **state)
{
	(void)state;
	ps_key k = 0;
	float v[LEN] = {0};
	assert_int_equal(ps_wait(ps_pull(NULL, &k, 1, v)), PS_ETABLE);
	assert_int_equal(ps_wait(ps_push(NULL, &k, 1, v)), PS_ETABLE);
	assert_int_equal(ps_wait(ps_localize(NULL, &k, 1)), PS_ETABLE);
}

static void test_ops_on_table_with_wrong_magic_return_PS_ETABLE(void **state)
{
	(void)state;
	struct ps_table z;
	memset(&z, 0, sizeof z);
	ps_key k = 0;
	float v[LEN] = {0};
	assert_int_equal(ps_pull_sync(&z, &k, 1, v), PS_ETABLE);
	assert_int_equal(ps_push_sync(&z, &k, 1, v), PS_ETABLE);
	assert_int_equal(ps_localize_sync(&z, &k, 1), PS_ETABLE);
	assert_int_equal(ps_owner(&z, 0), PS_ETABLE);
	assert_int_equal(ps_wait(ps_pull(&z, &k, 1, v)), PS_ETABLE);
	assert_int_equal(ps_wait(ps_push(&z, &k, 1, v)), PS_ETABLE);
	assert_int_equal(ps_wait(ps_localize(&z, &k, 1)), PS_ETABLE);
}

/* --------------------------------------------------------------- handles */

static void test_wait_on_NULL_handle_returns_PS_EHANDLE(void **state)
{
	(void)state;
	assert_int_equal(ps_wait(NULL), PS_EHANDLE);
}

static void test_wait_on_handle_with_wrong_magic_returns_PS_EHANDLE(void **state)
{
	(void)state;
	struct ps_req z;
	memset(&z, 0, sizeof z);
	assert_int_equal(ps_wait(&z), PS_EHANDLE);
}

/* ------------------------------------------------------------ full arena */

static void test_create_with_fewer_slots_than_keys_returns_PS_EFULL(void **state)
{
	ps_table_opts o;
	ps_table_opts_init(&o, 100, 4);
	o.slots_per_node = 99;
	assert_create_fails(*state, &o, PS_EFULL);
}

static void test_create_with_exactly_as_many_slots_as_keys_succeeds(void **state)
{
	ps_table_opts o;
	ps_table_opts_init(&o, 100, 4);
	o.slots_per_node = 100;
	int err = 1;
	ps_table *t = ps_table_create(*state, &o, &err);
	assert_non_null(t);
	assert_int_equal(err, 0);
}

static void test_job_still_works_after_a_PS_EFULL_create(void **state)
{
	ps_world *w = *state;
	ps_table_opts o;
	ps_table_opts_init(&o, 100, 4);
	o.slots_per_node = 10;
	assert_create_fails(w, &o, PS_EFULL);
	ps_table_opts_init(&o, 10, 2);
	int err = 1;
	ps_table *t = ps_table_create(w, &o, &err);
	assert_non_null(t);
	assert_int_equal(err, 0);
	ps_key k[2] = {9, 9};
	float upd[4] = {1, 2, 3, 4}, v[2];
	assert_int_equal(ps_push_sync(t, k, 2, upd), 0);
	assert_int_equal(ps_pull_sync(t, k, 1, v), 0);
	assert_true(v[0] == 4.0f);
	assert_true(v[1] == 6.0f);
}

static void test_create_beyond_the_memory_budget_returns_PS_EFULL(void **state)
{
	(void)state;
	/* 4 MiB budget: 2 MiB go to the location table; 16 keys of 65536
	 * floats need 4 MiB of slots more. */
	struct ps__seg s = make_segment(4ULL << 20);
	ps__seg_detach(&s);
	int err = 1;
	g_world = ps_init(&err);
	assert_non_null(g_world);
	assert_int_equal(err, 0);
	ps_table_opts o;
	ps_table_opts_init(&o, 16, 65536);
	assert_create_fails(g_world, &o, PS_EFULL);
}

/* ----------------------------------------------------------- bad options */

static void test_create_with_0_keys_is_EINVAL(void **state)
{
	ps_table_opts o;
	ps_table_opts_init(&o, 0, 1);
	assert_create_fails(*state, &o, -EINVAL);
}

static void test_create_with_value_len_0_is_EINVAL(void **state)
{
	ps_table_opts o;
	ps_table_opts_init(&o, 10, 0);
	assert_create_fails(*state, &o, -EINVAL);
}

static void test_create_with_value_len_over_65536_is_EINVAL(void **state)
{
	ps_table_opts o;
	ps_table_opts_init(&o, 10, 65537);
	assert_create_fails(*state, &o, -EINVAL);
}

static void test_create_with_value_len_65536_succeeds(void **state)
{
	ps_table_opts o;
	ps_table_opts_init(&o, 2, 65536);
	int err = 1;
	assert_non_null(ps_table_create(*state, &o, &err));
	assert_int_equal(err, 0);
}

static void test_create_with_unknown_flag_bits_is_EINVAL(void **state)
{
	ps_table_opts o;
	ps_table_opts_init(&o, 10, 1);
	o.flags = PS_HOGWILD | 0x4u;
	assert_create_fails(*state, &o, -EINVAL);
	o.flags = 0x80000000u;
	assert_create_fails(*state, &o, -EINVAL);
}

static void test_create_with_unknown_init_or_placement_is_EINVAL(void **state)
{
	ps_table_opts o;
	ps_table_opts_init(&o, 10, 1);
	o.init = (enum ps_init_kind)3;
	assert_create_fails(*state, &o, -EINVAL);
	ps_table_opts_init(&o, 10, 1);
	o.placement = (enum ps_placement)2;
	assert_create_fails(*state, &o, -EINVAL);
}

static void test_create_with_NULL_opts_or_world_is_EINVAL(void **state)
{
	assert_create_fails(*state, NULL, -EINVAL);
	ps_table_opts o;
	ps_table_opts_init(&o, 10, 1);
	assert_create_fails(NULL, &o, -EINVAL);
}

static void test_rejected_options_consume_no_table_id(void **state)
{
	ps_table_opts o;
	ps_table_opts_init(&o, 0, 1);
	assert_create_fails(*state, &o, -EINVAL);
	ps_table_opts_init(&o, 10, 1);
	int err = 1;
	ps_table *t = ps_table_create(*state, &o, &err);
	assert_non_null(t);
	assert_int_equal(ps_table_id(t), 0);
}

/* ------------------------------------------------------------- segments */

static void test_init_with_missing_segment_returns_PS_ENOSEG(void **state)
{
	(void)state;
	assert_int_equal(setenv("PSMEM_SEGMENT", "psmem-doesnotexist", 1), 0);
	assert_init_fails(PS_ENOSEG);
}

static void test_failed_init_leaves_no_world_behind(void **state)
{
	(void)state;
	assert_int_equal(setenv("PSMEM_SEGMENT", "psmem-doesnotexist", 1), 0);
	assert_init_fails(PS_ENOSEG);
	unsetenv("PSMEM_SEGMENT");
	int err = 1;
	g_world = ps_init(&err);
	assert_non_null(g_world);
	assert_int_equal(err, 0);
}

static void test_init_on_foreign_segment_returns_PS_EFOREIGN(void **state)
{
	(void)state;
	snprintf(g_segname, sizeof g_segname, "/psmem-testforeign");
	int fd = shm_open(g_segname, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 1 << 20), 0);
	static char junk[1 << 20];
	for (size_t i = 0; i < sizeof junk; i++)
		junk[i] = (char)(0xa5 ^ (i * 131));
	assert_int_equal(pwrite(fd, junk, sizeof junk, 0), (ssize_t)sizeof junk);
	close(fd);
	assert_int_equal(setenv("PSMEM_SEGMENT", "psmem-testforeign", 1), 0);
	assert_init_fails(PS_EFOREIGN);
}

static void test_init_on_valid_segment_named_by_env_succeeds(void **state)
{
	(void)state;
	struct ps__seg s = make_segment(0);
	ps__seg_detach(&s);
	int err = 1;
	g_world = ps_init(&err);
	assert_non_null(g_world);
	assert_int_equal(err, 0);
	assert_int_equal(ps_node_id(g_world), 0);
	assert_int_equal(ps_num_nodes(g_world), 1);
	assert_string_equal(ps_segment_name(g_world), g_segname + 1);
}

static void test_init_on_segment_of_other_abi_returns_PS_EABI(void **state)
{
	(void)state;
	struct ps__seg s = make_segment(0);
	s.hdr->abi = PS__ABI + 1;
	ps__seg_detach(&s);
	assert_init_fails(PS_EABI);
}

static void test_init_on_segment_of_other_layout_returns_PS_EABI(void **state)
{
	(void)state;
	struct ps__seg s = make_segment(0);
	s.hdr->node_size += 64;
	ps__seg_detach(&s);
	assert_init_fails(PS_EABI);
}

static void test_init_on_segment_of_other_uid_returns_PS_EUID(void **state)
{
	(void)state;
	if (geteuid() != 0) {
		printf("euid: SKIP: only root can give a file to another user\n");
		skip();
	}
	struct ps__seg s = make_segment(0);
	ps__seg_detach(&s);
	char path[PS__NAME_MAX + 16];
	snprintf(path, sizeof path, "/dev/shm%s", g_segname);
	int fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(fchown(fd, 4242, (gid_t)-1), 0);
	close(fd);
	assert_init_fails(PS_EUID);
}

static void test_init_as_node_outside_the_job_returns_PS_ENODE(void **state)
{
	(void)state;
	struct ps__seg s = make_segment(0);
	ps__seg_detach(&s);
	assert_int_equal(setenv("PSMEM_NODE", "5", 1), 0);
	assert_init_fails(PS_ENODE);
	assert_int_equal(setenv("PSMEM_NODE", "1", 1), 0); /* one past the last */
	assert_init_fails(PS_ENODE);
	assert_int_equal(setenv("PSMEM_NODE", "-1", 1), 0);
	assert_init_fails(PS_ENODE);
}

static void test_second_init_while_one_is_live_returns_EBUSY(void **state)
{
	ps_world *w = *state;
	int err = 0;
	assert_null(ps_init(&err));
	assert_int_equal(err, -EBUSY);
	/* the live world is untouched */
	assert_int_equal(ps_node_id(w), 0);
	ps_table_opts o;
	ps_table_opts_init(&o, 4, 1);
	err = 1;
	assert_non_null(ps_table_create(w, &o, &err));
	assert_int_equal(err, 0);
}


/* ------------------------------------------------------- after finalize */

static void test_calls_after_finalize_return_EINVAL(void **state)
{
	(void)state;
	int err = 1;
	ps_world *w = ps_init(&err);
	assert_non_null(w);
	assert_int_equal(ps_num_nodes(w), 1);
	assert_int_equal(ps_finalize(w), 0);
	/* w is freed: none of these may read it (ASan would say so) */
	assert_int_equal(ps_barrier(w), -EINVAL);
	assert_int_equal(ps_num_nodes(w), -EINVAL);
	assert_int_equal(ps_node_id(w), -EINVAL);
	assert_int_equal(ps_num_threads(w), -EINVAL);
	assert_int_equal(ps_host_id(w), -EINVAL);
	assert_int_equal(ps_num_hosts(w), -EINVAL);
	assert_null(ps_segment_name(w));
	ps_table_opts o;
	ps_table_opts_init(&o, 10, 1);
	assert_create_fails(w, &o, -EINVAL);
	assert_int_equal(ps_finalize(w), -EINVAL);
	/* and for NULL */
	assert_int_equal(ps_barrier(NULL), -EINVAL);
	assert_int_equal(ps_num_nodes(NULL), -EINVAL);
}

static void test_table_getters_of_NULL_do_not_crash(void **state)
{
	(void)state;
	assert_int_equal(ps_table_num_keys(NULL), 0);
	assert_int_equal(ps_table_value_len(NULL), 0);
	assert_int_equal(ps_table_id(NULL), -EINVAL);
}

static void test_create_with_nan_or_infinite_init_a_is_EINVAL(void **state)
{
	ps_table_opts o;
	float bad[] = { NAN, INFINITY, -INFINITY };
	for (int k = 0; k < 3; k++) {
		for (int init = PS_INIT_ZERO; init <= PS_INIT_UNIFORM; init++) {
			ps_table_opts_init(&o, 10, 1);
			o.init = (enum ps_init_kind)init;
			o.init_a = bad[k];
			assert_create_fails(*state, &o, -EINVAL);
		}
	}
	/* a finite one still works, and got table id 0: nothing consumed */
	ps_table_opts_init(&o, 10, 1);
	o.init = PS_INIT_CONST;
	o.init_a = -3.5f;
	int err = 1;
	ps_table *t = ps_table_create(*state, &o, &err);
	assert_non_null(t);
	assert_int_equal(ps_table_id(t), 0);
}

/* Node 1 finalizes normally; node 0's barrier then cannot complete and
 * says so with PS_EEXITED, whose text does not claim a death. */
static void test_barrier_after_a_peer_finalized_is_PS_EEXITED(void **state)
{
	(void)state;
	make_segment_of(2, 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		setenv("PSMEM_NODE", "1", 1);
		int err = 1;
		ps_world *w = ps_init(&err);
		_exit(w && ps_finalize(w) == 0 ? 0 : 10 + (err < 0 ? 1 : 0));
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	assert_int_equal(setenv("PSMEM_NODE", "0", 1), 0);
	int err = 1;
	g_world = ps_init(&err);
	assert_non_null(g_world);
	assert_int_equal(ps_barrier(g_world), PS_EEXITED);
	const char *m = ps_strerror(PS_EEXITED);
	assert_non_null(strstr(m, "finalized"));
	assert_null(strstr(m, "died"));
	assert_string_equal(ps_strerror(PS_EDEAD), "a node of the job died");
}

/* ------------------------------------------------------------ strerror */

static void test_strerror_names_every_code_distinctly(void **state)
{
	(void)state;
	for (int a = PS_EBASE; a >= PS_ELAST; a--) {
		const char *ma = ps_strerror(a);
		assert_non_null(ma);
		assert_true(strlen(ma) > 0);
		for (int b = a - 1; b >= PS_ELAST; b--)
			if (strcmp(ma, ps_strerror(b)) == 0)
				fail_msg("codes %d and %d share the message \"%s\"", a, b, ma);
	}
}

static void test_strerror_of_PS_EKEY_is_exact(void **state)
{
	(void)state;
	assert_string_equal(ps_strerror(PS_EKEY), "key outside the table's key range");
}

static void test_strerror_of_negative_errno_is_strerror(void **state)
{
	(void)state;
	assert_string_equal(ps_strerror(-ENOENT), strerror(ENOENT));
	assert_string_equal(ps_strerror(-EINVAL), strerror(EINVAL));
	assert_string_equal(ps_strerror(-EBUSY), strerror(EBUSY));
}

#define UNKNOWN_CODE "unknown psmem error code (neither a psmem code nor -errno)"

/* glibc's strerror formats unknown numbers into one shared buffer: two of
 * them in one printf printed the same text, and -INT_MIN overflowed. */
static void test_strerror_of_unknown_codes_is_a_stable_constant(void **state)
{
	(void)state;
	const char *a = ps_strerror(-4000);
	const char *b = ps_strerror(-5000);
	const char *c = ps_strerror(INT_MIN);
	const char *d = ps_strerror(7);
	(void)strerror(6000); /* would overwrite a shared buffer */
	assert_string_equal(a, UNKNOWN_CODE);
	assert_string_equal(b, UNKNOWN_CODE);
	assert_string_equal(c, UNKNOWN_CODE);
	assert_string_equal(d, UNKNOWN_CODE);
	assert_string_equal(ps_strerror(PS_ELAST - 1), UNKNOWN_CODE);
	assert_string_equal(ps_strerror(PS_EBASE + 1), UNKNOWN_CODE);
	char line[512];
	snprintf(line, sizeof line, "%s|%s", ps_strerror(-EINVAL), ps_strerror(-ENOENT));
	char want[512];
	snprintf(want, sizeof want, "%s|%s", "Invalid argument", "No such file or directory");
	assert_string_equal(line, want);
}

static void test_strerror_of_PS_EFULL_names_the_memory_budget(void **state)
{
	(void)state;
	assert_string_equal(ps_strerror(PS_EFULL),
			    "arena full: no free slot on that node (pool: slots_per_node; memory: psrun --mem/--arena-size)");
}

static void test_strerror_of_0_is_success(void **state)
{
	(void)state;
	assert_string_equal(ps_strerror(0), "success");
}

/* ----------------------------------------------------------------- main */

int main(void)
{
	clear_env();
	const struct CMUnitTest tests[] = {
		TEST(test_push_with_one_bad_key_returns_PS_EKEY_and_changes_nothing),
		TEST(test_async_push_with_huge_key_returns_PS_EKEY_and_changes_nothing),
		TEST(test_pull_with_one_bad_key_returns_PS_EKEY_and_writes_nothing),
		TEST(test_localize_with_one_bad_key_returns_PS_EKEY_and_changes_nothing),
		TEST(test_owner_of_out_of_range_key_is_PS_EKEY),
		TEST(test_null_keys_with_nonzero_count_is_EINVAL),
		TEST(test_sync_ops_on_NULL_table_return_PS_ETABLE),
		TEST(test_async_ops_on_NULL_table_wait_to_PS_ETABLE),
		TEST(test_ops_on_table_with_wrong_magic_return_PS_ETABLE),
		TEST(test_wait_on_NULL_handle_returns_PS_EHANDLE),
		TEST(test_wait_on_handle_with_wrong_magic_returns_PS_EHANDLE),
		TEST(test_create_with_fewer_slots_than_keys_returns_PS_EFULL),
		TEST(test_create_with_exactly_as_many_slots_as_keys_succeeds),
		TEST(test_job_still_works_after_a_PS_EFULL_create),
		TEST_BARE(test_create_beyond_the_memory_budget_returns_PS_EFULL),
		TEST(test_create_with_0_keys_is_EINVAL),
		TEST(test_create_with_value_len_0_is_EINVAL),
		TEST(test_create_with_value_len_over_65536_is_EINVAL),
		TEST(test_create_with_value_len_65536_succeeds),
		TEST(test_create_with_unknown_flag_bits_is_EINVAL),
		TEST(test_create_with_unknown_init_or_placement_is_EINVAL),
		TEST(test_create_with_NULL_opts_or_world_is_EINVAL),
		TEST(test_rejected_options_consume_no_table_id),
		TEST_BARE(test_init_with_missing_segment_returns_PS_ENOSEG),
		TEST_BARE(test_failed_init_leaves_no_world_behind),
		TEST_BARE(test_init_on_foreign_segment_returns_PS_EFOREIGN),
		TEST_BARE(test_init_on_valid_segment_named_by_env_succeeds),
		TEST_BARE(test_init_on_segment_of_other_abi_returns_PS_EABI),
		TEST_BARE(test_init_on_segment_of_other_layout_returns_PS_EABI),
		TEST_BARE(test_init_on_segment_of_other_uid_returns_PS_EUID),
		TEST_BARE(test_init_as_node_outside_the_job_returns_PS_ENODE),
		TEST(test_second_init_while_one_is_live_returns_EBUSY),
		TEST(test_strerror_names_every_code_distinctly),
		TEST(test_strerror_of_PS_EKEY_is_exact),
		TEST(test_strerror_of_negative_errno_is_strerror),
		TEST(test_strerror_of_0_is_success),
		TEST_BARE(test_strerror_of_unknown_codes_is_a_stable_constant),
		TEST_BARE(test_strerror_of_PS_EFULL_names_the_memory_budget),
		TEST_BARE(test_calls_after_finalize_return_EINVAL),
		TEST_BARE(test_table_getters_of_NULL_do_not_crash),
		TEST(test_create_with_nan_or_infinite_init_a_is_EINVAL),
		TEST_BARE(test_barrier_after_a_peer_finalized_is_PS_EEXITED),
	};
	return cmocka_run_group_tests_name("errors", tests, NULL, NULL);
}
