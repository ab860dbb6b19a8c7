/*
 * test_kv.c - functional tests of the store on one node (no psrun: ps_init
 * creates a private one-node job), and one on 2 nodes under psrun (pushes
 * racing relocations, which need a second node).
 *
 * Every test gets a fresh world from its setup and finalizes it in its
 * teardown (the private segment is unlinked at creation, so nothing is left
 * in /dev/shm).  Tests that need the environment set before ps_init use the
 * "bare" fixture and call ps_init themselves; the teardown still finalizes.
 *
 * Values pushed are small integers or halves, so float sums are exact and
 * compared with ==.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "common.h"
#include "psmem.h"

/* ------------------------------------------------------------ fixtures */

static ps_world *g_world; /* finalized by every teardown */

static int setup_world(void **state)
{
	int err = 1;
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
	return 0;
}

static int teardown_world(void **state)
{
	(void)state;
	unsetenv("PSMEM_THREADS");
	if (g_world) {
		int rc = ps_finalize(g_world);
		g_world = NULL;
		if (rc != 0)
			return -1;
	}
	return 0;
}

#define TEST(f) cmocka_unit_test_setup_teardown(f, setup_world, teardown_world)
#define TEST_BARE(f) cmocka_unit_test_setup_teardown(f, setup_bare, teardown_world)

/* ------------------------------------------------------------- helpers */

static ps_table *make_table(ps_world *w, uint64_t num_keys, uint32_t value_len, enum ps_init_kind init,
			    float a, uint64_t seed, enum ps_placement placement, uint32_t flags)
{
	ps_table_opts o;
	ps_table_opts_init(&o, num_keys, value_len);
	o.init = init;
	o.init_a = a;
	o.seed = seed;
	o.placement = placement;
	o.flags = flags;
	int err = 1;
	ps_table *t = ps_table_create(w, &o, &err);
	assert_non_null(t);
	assert_int_equal(err, 0);
	assert_int_equal(ps_table_num_keys(t), num_keys);
	assert_int_equal(ps_table_value_len(t), value_len);
	return t;
}

static ps_table *zero_table(ps_world *w, uint64_t num_keys, uint32_t value_len)
{
	return make_table(w, num_keys, value_len, PS_INIT_ZERO, 0.0f, 0, PS_PLACE_RANGE, 0);
}

static ps_key *all_keys(uint64_t n)
{
	ps_key *k = malloc(n * sizeof *k);
	assert_non_null(k);
	for (uint64_t i = 0; i < n; i++)
		k[i] = i;
	return k;
}

/* Pulls every key of t into a new buffer. */
static float *pull_all(ps_table *t)
{
	uint64_t n = ps_table_num_keys(t);
	uint32_t len = ps_table_value_len(t);
	ps_key *k = all_keys(n);
	float *v = malloc(n * len * sizeof *v);
	assert_non_null(v);
	assert_int_equal(ps_pull_sync(t, k, n, v), 0);
	free(k);
	return v;
}

static void assert_all_equal_to(const float *v, size_t n, float x)
{
	for (size_t i = 0; i < n; i++)
		if (v[i] != x)
			fail_msg("value %zu is %g, expected %g", i, (double)v[i], (double)x);
}

static uint64_t xorshift(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

/* -------------------------------------------------------- initialisers */

static void test_init_zero_sets_every_value_to_0(void **state)
{
	ps_table *t = make_table(*state, 100, 7, PS_INIT_ZERO, 3.0f, 1, PS_PLACE_RANGE, 0);
	float *v = pull_all(t);
	assert_all_equal_to(v, 100 * 7, 0.0f);
	free(v);
}

static void test_init_const_sets_every_value_to_init_a(void **state)
{
	ps_table *t = make_table(*state, 100, 7, PS_INIT_CONST, 2.5f, 0, PS_PLACE_RANGE, 0);
	float *v = pull_all(t);
	assert_all_equal_to(v, 100 * 7, 2.5f);
	free(v);
}

static void test_init_uniform_values_lie_in_minus_a_to_a_and_differ(void **state)
{
	const float a = 0.5f;
	ps_table *t = make_table(*state, 200, 8, PS_INIT_UNIFORM, a, 42, PS_PLACE_RANGE, 0);
	float *v = pull_all(t);
	bool all_equal = true, some_neg = false, some_pos = false;
	for (size_t i = 0; i < 200 * 8; i++) {
		if (!(v[i] >= -a && v[i] < a))
			fail_msg("value %zu is %g, outside [-%g, %g)", i, (double)v[i], (double)a, (double)a);
		all_equal &= v[i] == v[0];
		some_neg |= v[i] < 0;
		some_pos |= v[i] > 0;
	}
	assert_false(all_equal);
	assert_true(some_neg);
	assert_true(some_pos);
	free(v);
}

static void test_init_uniform_same_seed_gives_identical_tables(void **state)
{
	ps_table *t1 = make_table(*state, 300, 5, PS_INIT_UNIFORM, 1.0f, 7, PS_PLACE_RANGE, 0);
	ps_table *t2 = make_table(*state, 300, 5, PS_INIT_UNIFORM, 1.0f, 7, PS_PLACE_RANGE, 0);
	float *v1 = pull_all(t1), *v2 = pull_all(t2);
	assert_memory_equal(v1, v2, 300 * 5 * sizeof(float));
	free(v1);
	free(v2);
}

static void test_init_uniform_other_seed_gives_other_values(void **state)
{
	ps_table *t1 = make_table(*state, 300, 5, PS_INIT_UNIFORM, 1.0f, 7, PS_PLACE_RANGE, 0);
	ps_table *t2 = make_table(*state, 300, 5, PS_INIT_UNIFORM, 1.0f, 8, PS_PLACE_RANGE, 0);
	float *v1 = pull_all(t1), *v2 = pull_all(t2);
	size_t same = 0;
	for (size_t i = 0; i < 300 * 5; i++)
		same += v1[i] == v2[i];
	/* 24 random bits per value: a handful of coincidences at most */
	assert_in_range(same, 0, 10);
	free(v1);
	free(v2);
}

static void test_init_uniform_same_for_range_and_hash_placement(void **state)
{
	ps_table *tr = make_table(*state, 300, 5, PS_INIT_UNIFORM, 1.0f, 99, PS_PLACE_RANGE, 0);
	ps_table *th = make_table(*state, 300, 5, PS_INIT_UNIFORM, 1.0f, 99, PS_PLACE_HASH, 0);
	float *vr = pull_all(tr), *vh = pull_all(th);
	assert_memory_equal(vr, vh, 300 * 5 * sizeof(float));
	free(vr);
	free(vh);
}

/* ---------------------------------------------------------------- push */

/* Pushes updates[k][j] = (k+1) + j/2 to all keys `rounds` times, in batches
 * that name some keys twice, and checks every value. */
static void push_adds_exactly(ps_world *w, uint32_t len)
{
	const uint64_t nk = 50;
	ps_table *t = make_table(w, nk, len, PS_INIT_CONST, 1.0f, 0, PS_PLACE_RANGE, 0);
	/* batch: every key once, then keys 0..9 again (repeated in the batch) */
	const size_t n = nk + 10;
	ps_key *keys = malloc(n * sizeof *keys);
	float *upd = malloc(n * len * sizeof *upd);
	assert_non_null(keys);
	assert_non_null(upd);
	for (size_t i = 0; i < n; i++) {
		keys[i] = i < nk ? i : i - nk;
		for (uint32_t j = 0; j < len; j++)
			upd[i * len + j] = (float)(keys[i] + 1) + (float)(j % 8) * 0.5f;
	}
	const int rounds = 3;
	for (int r = 0; r < rounds; r++)
		assert_int_equal(ps_push_sync(t, keys, n, upd), 0);
	float *v = pull_all(t);
	for (uint64_t k = 0; k < nk; k++) {
		int times = rounds * (k < 10 ? 2 : 1);
		for (uint32_t j = 0; j < len; j++) {
			float want = 1.0f + (float)times * ((float)(k + 1) + (float)(j % 8) * 0.5f);
			if (v[k * len + j] != want)
				fail_msg("key %" PRIu64 " [%u] = %g, expected %g", k, j, (double)v[k * len + j],
					 (double)want);
		}
	}
	free(v);
	free(upd);
	free(keys);
}

static void test_push_adds_exactly_value_len_1(void **state) { push_adds_exactly(*state, 1); }
static void test_push_adds_exactly_value_len_16(void **state) { push_adds_exactly(*state, 16); }
static void test_push_adds_exactly_value_len_100(void **state) { push_adds_exactly(*state, 100); }
static void test_push_adds_exactly_value_len_1000(void **state) { push_adds_exactly(*state, 1000); }

static void test_pull_returns_values_in_key_order_of_the_request(void **state)
{
	ps_table *t = zero_table(*state, 10, 2);
	ps_key all[10];
	float upd[20];
	for (int k = 0; k < 10; k++) {
		all[k] = (ps_key)k;
		upd[2 * k] = (float)k;
		upd[2 * k + 1] = (float)(100 + k);
	}
	assert_int_equal(ps_push_sync(t, all, 10, upd), 0);
	ps_key keys[4] = {7, 2, 7, 0};
	float v[8];
	assert_int_equal(ps_pull_sync(t, keys, 4, v), 0);
	const float want[8] = {7, 107, 2, 102, 7, 107, 0, 100};
	assert_memory_equal(v, want, sizeof want);
}

static void test_push_and_pull_of_zero_keys_succeed(void **state)
{
	ps_table *t = zero_table(*state, 10, 1);
	assert_int_equal(ps_push_sync(t, NULL, 0, NULL), 0);
	assert_int_equal(ps_pull_sync(t, NULL, 0, NULL), 0);
	assert_int_equal(ps_wait(ps_pull(t, NULL, 0, NULL)), 0);
}

/* --------------------------------------------------------------- tables */

static void test_tables_of_one_job_are_independent(void **state)
{
	ps_world *w = *state;
	ps_table *a = zero_table(w, 20, 3);
	ps_table *b = make_table(w, 40, 1, PS_INIT_CONST, 5.0f, 0, PS_PLACE_HASH, 0);
	ps_table *c = zero_table(w, 20, 3);
	assert_int_equal(ps_table_id(a), 0);
	assert_int_equal(ps_table_id(b), 1);
	assert_int_equal(ps_table_id(c), 2);

	ps_key k[2] = {3, 19};
	float upd[6] = {1, 2, 3, 4, 5, 6};
	assert_int_equal(ps_push_sync(a, k, 2, upd), 0);

	float *va = pull_all(a), *vb = pull_all(b), *vc = pull_all(c);
	for (int key = 0; key < 20; key++)
		for (int j = 0; j < 3; j++) {
			float want = key == 3 ? upd[j] : key == 19 ? upd[3 + j] : 0.0f;
			assert_true(va[key * 3 + j] == want);
		}
	assert_all_equal_to(vb, 40, 5.0f);
	assert_all_equal_to(vc, 20 * 3, 0.0f);
	free(va);
	free(vb);
	free(vc);
}

/* ---------------------------------------------------------------- async */

static void test_async_pull_completes_with_values(void **state)
{
	ps_table *t = make_table(*state, 16, 4, PS_INIT_CONST, 1.5f, 0, PS_PLACE_RANGE, 0);
	ps_key k[3] = {15, 0, 8};
	float v[12];
	memset(v, 0, sizeof v);
	ps_handle h = ps_pull(t, k, 3, v);
	assert_non_null(h);
	assert_int_equal(ps_wait(h), 0);
	assert_all_equal_to(v, 12, 1.5f);
}

static void test_async_push_completes_and_adds(void **state)
{
	ps_table *t = zero_table(*state, 16, 2);
	ps_key k[3] = {4, 5, 4};
	float upd[6] = {1, 2, 3, 4, 10, 20};
	ps_handle h = ps_push(t, k, 3, upd);
	assert_non_null(h);
	assert_int_equal(ps_wait(h), 0);
	float v[4];
	ps_key q[2] = {4, 5};
	assert_int_equal(ps_pull_sync(t, q, 2, v), 0);
	const float want[4] = {11, 22, 3, 4};
	assert_memory_equal(v, want, sizeof want);
}

static void test_async_localize_completes_with_0(void **state)
{
	ps_table *t = zero_table(*state, 16, 2);
	ps_key k[4] = {0, 3, 9, 15};
	ps_handle h = ps_localize(t, k, 4);
	assert_non_null(h);
	assert_int_equal(ps_wait(h), 0);
}

static void test_many_outstanding_localize_handles_waited_in_reverse_order(void **state)
{
	enum { H = 64, N = 32 };
	ps_table *t = make_table(*state, 1000, 4, PS_INIT_CONST, 2.0f, 0, PS_PLACE_HASH, 0);
	static ps_key keys[H][N]; /* valid until each wait returns */
	ps_handle h[H];
	for (int i = 0; i < H; i++) {
		for (int j = 0; j < N; j++)
			keys[i][j] = (ps_key)((i * 37 + j * 11) % 1000);
		h[i] = ps_localize(t, keys[i], N);
		assert_non_null(h[i]);
	}
	for (int i = H - 1; i >= 0; i--)
		assert_int_equal(ps_wait(h[i]), 0);
	float *v = pull_all(t);
	assert_all_equal_to(v, 1000 * 4, 2.0f);
	free(v);
}

static void test_async_pull_push_localize_interleaved_all_complete(void **state)
{
	ps_table *t = zero_table(*state, 8, 1);
	ps_key k[2] = {1, 6};
	float upd[2] = {3, 4}, v[2] = {0, 0};
	ps_handle hl = ps_localize(t, k, 2);
	ps_handle hp = ps_push(t, k, 2, upd);
	ps_handle hq = ps_pull(t, k, 2, v);
	assert_int_equal(ps_wait(hq), 0);
	assert_int_equal(ps_wait(hl), 0);
	assert_int_equal(ps_wait(hp), 0);
	assert_true(v[0] == 3.0f);
	assert_true(v[1] == 4.0f);
}

/* ------------------------------------------------------------- localize */

static void test_localize_on_one_node_keeps_owner_0_and_values(void **state)
{
	ps_world *w = *state;
	ps_table *t = make_table(w, 100, 6, PS_INIT_UNIFORM, 1.0f, 5, PS_PLACE_HASH, 0);
	float *before = pull_all(t);
	ps_key *k = all_keys(100);
	assert_int_equal(ps_localize_sync(t, k, 100), 0);
	assert_int_equal(ps_wait(ps_localize(t, k, 100)), 0);
	for (ps_key key = 0; key < 100; key++)
		assert_int_equal(ps_owner(t, key), 0);
	float *after = pull_all(t);
	assert_memory_equal(before, after, 100 * 6 * sizeof(float));
	ps_node_stats st;
	assert_int_equal(ps_stats(w, 0, &st), 0);
	assert_int_equal(st.relocations, 0);
	free(k);
	free(before);
	free(after);
}

/* ---------------------------------------------------------------- hogwild */

static void test_hogwild_single_thread_pushes_add_exactly(void **state)
{
	ps_table *t = make_table(*state, 30, 3, PS_INIT_ZERO, 0.0f, 0, PS_PLACE_RANGE, PS_HOGWILD);
	ps_key k[4] = {2, 29, 2, 0};
	float upd[12] = {1, 2, 3, 4, 5, 6, 0.5f, 0.5f, 0.5f, 7, 8, 9};
	for (int r = 0; r < 10; r++)
		assert_int_equal(ps_push_sync(t, k, 4, upd), 0);
	float *v = pull_all(t);
	for (int key = 0; key < 30; key++)
		for (int j = 0; j < 3; j++) {
			float want = 0;
			if (key == 2)
				want = 10 * (upd[j] + upd[6 + j]);
			else if (key == 29)
				want = 10 * upd[3 + j];
			else if (key == 0)
				want = 10 * upd[9 + j];
			assert_true(v[key * 3 + j] == want);
		}
	free(v);
}

/* -------------------------------------------------------- multi-threaded */

/*
 * Pushing while localizing, on 2 nodes under psrun: on one node nothing
 * moves (test_localize_on_one_node_keeps_owner_0_and_values asserts 0
 * relocations), so the race between a push and a relocation of its key only
 * exists with a second node.  This binary is also the node program: run as
 * `test_kv --node pushloc` under `psrun -n 2 -t 1`, each node runs
 * MT_PUSHERS pusher threads (a reproducible stream of keys per (node,
 * pusher), each push adds 1 to both floats of its key) and one localizer
 * thread that pulls random keys to its node until the pushers are done;
 * the pushers wait for a localize call every MT_PUSHES / MT_ROUNDS pushes.
 * The table is hash-placed, so half the keys start on the other node and
 * the two localizers keep moving keys back and forth under the pushes.
 * After a barrier node 0 replays every stream and compares each key with
 * its exact count, and checks that keys did move while pushes ran.
 * Exit: 0 ok, 1 an API call failed, 2 a wrong sum, 3 nothing moved.
 */
enum { MT_KEYS = 1000, MT_PUSHERS = 4, MT_PUSHES = 20000, MT_ROUNDS = 40, MT_LEN = 2, MT_NODES = 2 };

/* The localizer of a node.  Its atomics are relaxed: they only pace the
 * pushers and end loops; the data checked is read after pthread_join. */
struct mt_loc {
	ps_table *t;
	int node;
	int rc;                   /* its error, read after join */
	_Atomic uint64_t calls;   /* localize calls finished */
	_Atomic bool stop, done;
};

struct mt_arg {
	ps_table *t;
	int node, index;
	int rc;                 /* first error seen */
	uint64_t pushes;
	struct mt_loc *loc;
};

static uint64_t mt_seed(int node, int index)
{
	return 0x9e3779b97f4a7c15ULL * (uint64_t)(node * MT_PUSHERS + index + 1) | 1;
}

/* Between two of its checkpoints (every MT_PUSHES / MT_ROUNDS pushes) a
 * pusher waits until the localizer has finished one more call: pushes and
 * moves interleave however the threads are scheduled. */
static void *mt_pusher(void *p)
{
	struct mt_arg *a = p;
	uint64_t s = mt_seed(a->node, a->index);
	const float one[MT_LEN] = {1.0f, 1.0f};
	for (int i = 0; i < MT_PUSHES; i++) {
		if (i % (MT_PUSHES / MT_ROUNDS) == 0) {
			uint64_t seen = atomic_load_explicit(&a->loc->calls, memory_order_relaxed);
			while (atomic_load_explicit(&a->loc->calls, memory_order_relaxed) == seen &&
			       !atomic_load_explicit(&a->loc->done, memory_order_relaxed))
				sched_yield();
		}
		ps_key k = xorshift(&s) % MT_KEYS;
		int rc = ps_push_sync(a->t, &k, 1, one);
		if (rc && !a->rc)
			a->rc = rc;
		a->pushes++;
	}
	return NULL;
}

static void *mt_localizer(void *p)
{
	struct mt_loc *a = p;
	uint64_t s = 12345 + (uint64_t)a->node;
	for (uint64_t c = 0; !atomic_load_explicit(&a->stop, memory_order_relaxed); c++) {
		ps_key k[4];
		for (int i = 0; i < 4; i++)
			k[i] = xorshift(&s) % MT_KEYS;
		int rc = c & 1 ? ps_wait(ps_localize(a->t, k, 4)) : ps_localize_sync(a->t, k, 4);
		if (rc) {
			a->rc = rc;
			break;
		}
		atomic_store_explicit(&a->calls, c + 1, memory_order_relaxed);
	}
	/* a failed localizer must not leave the pushers waiting for it */
	atomic_store_explicit(&a->done, true, memory_order_relaxed);
	return NULL;
}

#define MT_FAIL(code, ...)                                                                                             \
	do {                                                                                                           \
		fprintf(stderr, "pushloc: node %d: ", node);                                                           \
		fprintf(stderr, __VA_ARGS__);                                                                          \
		fputc('\n', stderr);                                                                                   \
		return code;                                                                                           \
	} while (0)

static int pushloc_node(void)
{
	int err = 1, node = -1;
	ps_world *w = ps_init(&err);
	if (!w)
		MT_FAIL(1, "ps_init: %s", ps_strerror(err));
	node = ps_node_id(w);
	if (ps_num_nodes(w) != MT_NODES)
		MT_FAIL(1, "%d nodes, want %d", ps_num_nodes(w), MT_NODES);
	ps_table_opts o;
	ps_table_opts_init(&o, MT_KEYS, MT_LEN);
	o.placement = PS_PLACE_HASH;
	ps_table *t = ps_table_create(w, &o, &err);
	if (!t)
		MT_FAIL(1, "table: %s", ps_strerror(err));
	if (ps_barrier(w))
		MT_FAIL(1, "barrier before the storm");

	static struct mt_loc la;
	la.t = t;
	la.node = node;
	struct mt_arg pa[MT_PUSHERS];
	pthread_t pt[MT_PUSHERS], lt;
	if (pthread_create(&lt, NULL, mt_localizer, &la))
		MT_FAIL(1, "pthread_create");
	for (int i = 0; i < MT_PUSHERS; i++) {
		pa[i] = (struct mt_arg){.t = t, .node = node, .index = i, .loc = &la};
		if (pthread_create(&pt[i], NULL, mt_pusher, &pa[i]))
			MT_FAIL(1, "pthread_create");
	}
	for (int i = 0; i < MT_PUSHERS; i++)
		pthread_join(pt[i], NULL);
	/* moves into this node counted while its pushers ran (the localizer
	 * has not been stopped yet) */
	ps_node_stats st;
	if (ps_stats(w, node, &st))
		MT_FAIL(1, "ps_stats");
	uint64_t moved_during_pushes = st.relocations;
	atomic_store_explicit(&la.stop, true, memory_order_relaxed);
	pthread_join(lt, NULL);
	for (int i = 0; i < MT_PUSHERS; i++) {
		if (pa[i].rc)
			MT_FAIL(1, "push: %s", ps_strerror(pa[i].rc));
		if (pa[i].pushes != MT_PUSHES)
			MT_FAIL(1, "pusher %d made %lu pushes", i, (unsigned long)pa[i].pushes);
	}
	if (la.rc)
		MT_FAIL(1, "localize: %s", ps_strerror(la.rc));
	/* every node has pushed everything: node 0 may check the sums */
	if (ps_barrier(w))
		MT_FAIL(1, "barrier after the storm");

	int rc = 0;
	if (node == 0) {
		static uint32_t expect[MT_KEYS];
		uint64_t total = 0;
		for (int n = 0; n < MT_NODES; n++)
			for (int i = 0; i < MT_PUSHERS; i++) {
				uint64_t s = mt_seed(n, i);
				for (int j = 0; j < MT_PUSHES; j++)
					expect[xorshift(&s) % MT_KEYS]++;
			}
		static float v[MT_KEYS * MT_LEN];
		static ps_key k[MT_KEYS];
		for (int i = 0; i < MT_KEYS; i++)
			k[i] = (ps_key)i;
		if (ps_pull_sync(t, k, MT_KEYS, v))
			MT_FAIL(1, "pull");
		long bad = 0;
		for (int i = 0; i < MT_KEYS; i++) {
			total += expect[i];
			for (int j = 0; j < MT_LEN; j++)
				if (v[i * MT_LEN + j] != (float)expect[i] && bad++ < 5)
					fprintf(stderr, "pushloc: key %d [%d] = %g, expected %u\n", i, j,
						(double)v[i * MT_LEN + j], expect[i]);
		}
		uint64_t moved = 0, pushes = 0, stale = 0;
		for (int n = 0; n < MT_NODES; n++) {
			if (ps_stats(w, n, &st))
				MT_FAIL(1, "ps_stats");
			moved += st.relocations;
			pushes += st.keys_pushed;
			stale += st.stale_reads;
		}
		printf("pushloc: %lu pushes, %ld wrong values; %lu relocations (%lu into node 0 while its pushers ran), "
		       "%lu stale reads\n",
		       (unsigned long)total, bad, (unsigned long)moved, (unsigned long)moved_during_pushes,
		       (unsigned long)stale);
		if (total != (uint64_t)MT_NODES * MT_PUSHERS * MT_PUSHES || pushes != total)
			MT_FAIL(1, "%lu pushes counted by the stats, %lu expected", (unsigned long)pushes,
				(unsigned long)total);
		if (bad)
			rc = 2;
		else if (stale)
			rc = 2;
		else if (moved == 0)
			rc = 3;
	}
	/* node 1 reports its own moves; the driver checks both */
	printf("pushloc: node %d moved %lu keys in while its pushers ran\n", node, (unsigned long)moved_during_pushes);
	fflush(stdout);
	if (ps_barrier(w) && rc == 0)
		rc = 1;
	ps_finalize(w);
	return rc;
}

static char g_self[1024];

static void test_threads_pushing_while_localizing_on_2_nodes_lose_no_update(void **state)
{
	(void)state;
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	char *argv[] = {(char *)build_path("bin/psrun"), "-n", "2", "-t", "1", g_self, "--node", "pushloc", NULL};
	static struct run_result r;
	run_prog(argv, NULL, 240, -1, 0, &r);
	printf("%s", r.out);
	if (r.status != 0)
		fprintf(stderr, "%s", r.err);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, " 0 wrong values"));
	assert_non_null(strstr(r.out, " 0 stale reads"));
	/* keys moved into each node while that node's pushers ran: the
	 * pushes really raced with relocations, on both sides */
	for (int n = 0; n < MT_NODES; n++) {
		char pat[64];
		snprintf(pat, sizeof pat, "pushloc: node %d moved ", n);
		const char *p = strstr(r.out, pat);
		assert_non_null(p);
		unsigned long moved = strtoul(p + strlen(pat), NULL, 10);
		if (moved == 0)
			fail_msg("node %d: no key moved in while its pushers ran: the test tested nothing", n);
	}
	assert_true(left_clean(&segs, g_self));
}

/* ----------------------------------------------------------------- stats */

static void test_stats_count_pull_calls_and_keys(void **state)
{
	enum { N = 25, M = 7 };
	ps_world *w = *state;
	ps_table_opts o;
	ps_table_opts_init(&o, 100, 3);
	o.slots_per_node = 100; /* exact capacity (the default adds headroom) */
	int err = 1;
	ps_table *t = ps_table_create(w, &o, &err);
	assert_non_null(t);
	assert_int_equal(err, 0);
	ps_key k[M];
	float v[M * 3];
	for (int i = 0; i < N; i++) {
		for (int j = 0; j < M; j++)
			k[j] = (ps_key)((i * 13 + j * 5) % 100);
		assert_int_equal(ps_pull_sync(t, k, M, v), 0);
	}
	ps_node_stats st;
	assert_int_equal(ps_stats(w, 0, &st), 0);
	assert_int_equal(st.pulls, N);
	assert_int_equal(st.keys_pulled, N * M);
	assert_int_equal(st.local_keys, N * M);
	assert_int_equal(st.remote_keys, 0);
	assert_int_equal(st.pushes, 0);
	assert_int_equal(st.keys_pushed, 0);
	assert_int_equal(st.stale_reads, 0);
	assert_int_equal(st.slots_used, 100);
	assert_int_equal(st.slots_capacity, 100);
}

static void test_stats_of_a_node_outside_the_job_is_PS_ENODE(void **state)
{
	ps_node_stats st;
	assert_int_equal(ps_stats(*state, 1, &st), PS_ENODE);
	assert_int_equal(ps_stats(*state, -1, &st), PS_ENODE);
}

/* --------------------------------------------------------------- identity */

static void test_private_job_is_node_0_of_1_with_1_thread(void **state)
{
	ps_world *w = *state;
	assert_int_equal(ps_node_id(w), 0);
	assert_int_equal(ps_num_nodes(w), 1);
	assert_int_equal(ps_num_threads(w), 1);
}

static void test_segment_name_starts_with_psmem_dash(void **state)
{
	const char *name = ps_segment_name(*state);
	assert_non_null(name);
	assert_int_equal(strncmp(name, "psmem-", 6), 0);
	assert_true(strlen(name) > 6);
}

/* -------------------------------------------------------------- workers */

struct wk_arg {
	_Atomic int calls;
	_Atomic uint32_t seen;      /* bit i: thread index i ran */
	_Atomic int bad_index;
	_Atomic int counter;
	int after_barrier[32];      /* counter seen by thread i after the barrier */
	int barrier_rc[32];
};

static void wk_count(ps_world *w, int thread, void *p)
{
	struct wk_arg *a = p;
	(void)w;
	atomic_fetch_add(&a->calls, 1);
	if (thread < 0 || thread >= 32)
		atomic_store(&a->bad_index, 1);
	else if (atomic_fetch_or(&a->seen, 1u << thread) & (1u << thread))
		atomic_store(&a->bad_index, 1); /* index given twice */
}

static void wk_barrier(ps_world *w, int thread, void *p)
{
	struct wk_arg *a = p;
	wk_count(w, thread, p);
	if (thread < 0 || thread >= 32)
		return;
	atomic_fetch_add(&a->counter, 1);
	a->barrier_rc[thread] = ps_barrier(w);
	a->after_barrier[thread] = atomic_load(&a->counter);
}

static void test_run_workers_runs_fn_once_per_thread(void **state)
{
	ps_world *w = *state;
	struct wk_arg a = {0};
	assert_int_equal(ps_run_workers(w, wk_count, &a), 0);
	assert_int_equal(atomic_load(&a.calls), ps_num_threads(w));
	assert_int_equal(atomic_load(&a.calls), 1);
	assert_int_equal(atomic_load(&a.seen), 0x1u);
	assert_int_equal(atomic_load(&a.bad_index), 0);
}

static ps_world *init_with_3_threads(void)
{
	assert_int_equal(setenv("PSMEM_THREADS", "3", 1), 0);
	int err = 1;
	g_world = ps_init(&err);
	unsetenv("PSMEM_THREADS");
	assert_non_null(g_world);
	assert_int_equal(err, 0);
	return g_world;
}

static void test_run_workers_with_PSMEM_THREADS_3_runs_3_distinct_threads(void **state)
{
	(void)state;
	ps_world *w = init_with_3_threads();
	assert_int_equal(ps_num_threads(w), 3);
	struct wk_arg a = {0};
	assert_int_equal(ps_run_workers(w, wk_count, &a), 0);
	assert_int_equal(atomic_load(&a.calls), 3);
	assert_int_equal(atomic_load(&a.seen), 0x7u);
	assert_int_equal(atomic_load(&a.bad_index), 0);
}

static void test_barrier_among_3_workers_lets_all_see_every_arrival(void **state)
{
	(void)state;
	ps_world *w = init_with_3_threads();
	struct wk_arg a = {0};
	/* twice: the barrier must be reusable (generation reset) */
	for (int round = 1; round <= 2; round++) {
		atomic_store(&a.calls, 0);
		atomic_store(&a.seen, 0);
		assert_int_equal(ps_run_workers(w, wk_barrier, &a), 0);
		assert_int_equal(atomic_load(&a.calls), 3);
		assert_int_equal(atomic_load(&a.seen), 0x7u);
		assert_int_equal(atomic_load(&a.bad_index), 0);
		for (int i = 0; i < 3; i++) {
			assert_int_equal(a.barrier_rc[i], 0);
			assert_int_equal(a.after_barrier[i], 3 * round);
		}
	}
}

/* ----------------------------------------------------------------- main */

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "--node") && !strcmp(argv[2], "pushloc"))
		return pushloc_node();
	if (!self_exe(g_self, sizeof g_self))
		return 1;
	/* hermetic: a private one-node job regardless of the caller's env */
	unsetenv("PSMEM_SEGMENT");
	unsetenv("PSMEM_NODE");
	unsetenv("PSMEM_NODES");
	unsetenv("PSMEM_THREADS");
	const struct CMUnitTest tests[] = {
		TEST(test_init_zero_sets_every_value_to_0),
		TEST(test_init_const_sets_every_value_to_init_a),
		TEST(test_init_uniform_values_lie_in_minus_a_to_a_and_differ),
		TEST(test_init_uniform_same_seed_gives_identical_tables),
		TEST(test_init_uniform_other_seed_gives_other_values),
		TEST(test_init_uniform_same_for_range_and_hash_placement),
		TEST(test_push_adds_exactly_value_len_1),
		TEST(test_push_adds_exactly_value_len_16),
		TEST(test_push_adds_exactly_value_len_100),
		TEST(test_push_adds_exactly_value_len_1000),
		TEST(test_pull_returns_values_in_key_order_of_the_request),
		TEST(test_push_and_pull_of_zero_keys_succeed),
		TEST(test_tables_of_one_job_are_independent),
		TEST(test_async_pull_completes_with_values),
		TEST(test_async_push_completes_and_adds),
		TEST(test_async_localize_completes_with_0),
		TEST(test_many_outstanding_localize_handles_waited_in_reverse_order),
		TEST(test_async_pull_push_localize_interleaved_all_complete),
		TEST(test_localize_on_one_node_keeps_owner_0_and_values),
		TEST(test_hogwild_single_thread_pushes_add_exactly),
		cmocka_unit_test(test_threads_pushing_while_localizing_on_2_nodes_lose_no_update),
		TEST(test_stats_count_pull_calls_and_keys),
		TEST(test_stats_of_a_node_outside_the_job_is_PS_ENODE),
		TEST(test_private_job_is_node_0_of_1_with_1_thread),
		TEST(test_segment_name_starts_with_psmem_dash),
		TEST(test_run_workers_runs_fn_once_per_thread),
		TEST_BARE(test_run_workers_with_PSMEM_THREADS_3_runs_3_distinct_threads),
		TEST_BARE(test_barrier_among_3_workers_lets_all_see_every_arrival),
	};
	return cmocka_run_group_tests_name("kv", tests, NULL, NULL);
}
