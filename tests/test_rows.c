/*
 * test_rows.c - rows in place (ps_row_lock / ps_row_unlock, ps_rows_enter /
 * ps_row_get / ps_rows_exit) and the inline fast path (PS_INLINE) on one
 * node.  The storms with relocation are in test_storm.c ("api rows",
 * "api inline", "api hogrows").
 *
 * Values are small integers, so float sums are exact and compared with ==.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#define PS_INLINE /* ps_pull_sync / ps_push_sync: the inline versions */
#include "psmem.h"
#include "common.h"

static void test_row_lock_reads_and_writes_in_place(void **state)
{
	(void)state;
	ps_table *t = test_table(100, 4, 0, 0);
	ps_row r;
	float *v = ps_row_lock(t, 7, &r);
	assert_non_null(v);
	assert_int_equal(r.err, 0);
	for (int j = 0; j < 4; j++) {
		assert_true(v[j] == 1.0f);
		v[j] = (float)(10 + j);
	}
	ps_row_unlock(&r);
	ps_row_unlock(&r); /* a second unlock does nothing */
	float out[4];
	ps_key k = 7;
	assert_int_equal(ps_pull_sync(t, &k, 1, out), 0);
	for (int j = 0; j < 4; j++)
		assert_true(out[j] == (float)(10 + j));
	/* the row is unlocked: a push goes through, and so does a relock */
	float one[4] = {1, 1, 1, 1};
	assert_int_equal(ps_push_sync(t, &k, 1, one), 0);
	v = ps_row_lock(t, 7, &r);
	assert_non_null(v);
	assert_true(v[3] == 14.0f);
	ps_row_unlock(&r);
}

static void test_row_lock_rejects_bad_table_key_and_replicated_keys(void **state)
{
	(void)state;
	ps_table *t = test_table(100, 4, 4, 0);
	ps_row r = {.err = 12345};
	assert_null(ps_row_lock(NULL, 0, &r));
	assert_int_equal(r.err, PS_ETABLE);
	assert_null(ps_row_lock(t, 100, &r));
	assert_int_equal(r.err, PS_EKEY);
	assert_null(ps_row_lock(t, 0, NULL));
	ps_key hot = 5;
	assert_int_equal(ps_replicate(t, &hot, 1), 1);
	assert_null(ps_row_lock(t, hot, &r));
	assert_int_equal(r.err, -EOPNOTSUPP);
	ps_row_unlock(&r);  /* failed row: nothing to unlock */
	ps_row_unlock(NULL);
	/* the failures left the key usable */
	assert_non_null(ps_row_lock(t, 4, &r));
	ps_row_unlock(&r);
}

static void test_row_get_needs_hogwild_table_and_open_section(void **state)
{
	(void)state;
	ps_table *seq = test_table(100, 4, 0, 0);
	ps_table *hog = test_table(100, 4, 0, PS_HOGWILD);
	int err = 0;
	assert_int_equal(ps_rows_enter(NULL), PS_ETABLE);
	assert_null(ps_row_get(hog, 1, &err)); /* no section open */
	assert_int_equal(err, -EINVAL);
	assert_int_equal(ps_rows_enter(seq), 0);
	assert_null(ps_row_get(seq, 1, &err)); /* not PS_HOGWILD: rows need the lock */
	assert_int_equal(err, -EINVAL);
	assert_null(ps_row_get(hog, 100, &err));
	assert_int_equal(err, PS_EKEY);
	assert_null(ps_row_get(NULL, 1, &err));
	assert_int_equal(err, PS_ETABLE);
	float *v = ps_row_get(hog, 1, &err);
	assert_non_null(v);
	assert_int_equal(err, 0);
	v[2] += 41.0f;
	ps_rows_exit(seq);
	float out[4];
	ps_key k = 1;
	assert_int_equal(ps_pull_sync(hog, &k, 1, out), 0);
	assert_true(out[2] == 42.0f && out[1] == 1.0f);
}

/* ---------------------------------------------------- concurrent access */

#define KEYS 32
#define VLEN 100
#define WRITES 20000

struct conc {
	ps_table *t;
	_Atomic bool stop;
	_Atomic uint64_t torn, down, reads;
	uint32_t adds[2][KEYS]; /* per writer: increments per key */
};

struct warg {
	struct conc *c;
	int id;
};

static void *row_writer(void *p)
{
	struct warg *a = p;
	uint64_t s = 0x1234 + (uint64_t)a->id;
	for (int i = 0; i < WRITES; i++) {
		s = s * 6364136223846793005ULL + 1442695040888963407ULL;
		ps_key k = (s >> 33) % KEYS;
		ps_row r;
		float *v = ps_row_lock(a->c->t, k, &r);
		if (!v)
			abort();
		for (int j = 0; j < VLEN; j++) /* element by element: a torn read would show */
			v[j] += 1.0f;
		ps_row_unlock(&r);
		a->c->adds[a->id][k]++;
	}
	return NULL;
}

static void *row_reader(void *p)
{
	struct conc *c = p;
	float last[KEYS] = {0}, v[4 * VLEN];
	ps_key keys[4];
	uint64_t s = 99;
	while (!atomic_load(&c->stop)) {
		for (int i = 0; i < 4; i++) {
			s = s * 6364136223846793005ULL + 1442695040888963407ULL;
			keys[i] = (s >> 33) % KEYS;
		}
		/* alternately the inline path (4 keys) and the library's */
		int rc = (s & 1) ? ps_pull_sync(c->t, keys, 4, v) : (ps_pull_sync)(c->t, keys, 4, v);
		if (rc)
			abort();
		for (int i = 0; i < 4; i++) {
			const float *x = v + i * VLEN;
			for (int j = 1; j < VLEN; j++)
				if (x[j] != x[0]) {
					atomic_fetch_add(&c->torn, 1);
					break;
				}
			if (x[0] < last[keys[i]])
				atomic_fetch_add(&c->down, 1);
			last[keys[i]] = x[0];
		}
		atomic_fetch_add(&c->reads, 4);
	}
	return NULL;
}

static void test_rows_written_in_place_never_seen_torn_and_sum_exactly(void **state)
{
	(void)state;
	struct conc c = {.t = test_table(KEYS, VLEN, 0, 0)};
	struct warg wa[2] = {{&c, 0}, {&c, 1}};
	pthread_t w[2], r[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&r[i], NULL, row_reader, &c);
	for (int i = 0; i < 2; i++)
		pthread_create(&w[i], NULL, row_writer, &wa[i]);
	for (int i = 0; i < 2; i++)
		pthread_join(w[i], NULL);
	atomic_store(&c.stop, true);
	for (int i = 0; i < 2; i++)
		pthread_join(r[i], NULL);
	assert_true(atomic_load(&c.reads) > 0);
	assert_int_equal(atomic_load(&c.torn), 0);
	assert_int_equal(atomic_load(&c.down), 0);
	float v[VLEN];
	for (ps_key k = 0; k < KEYS; k++) {
		assert_int_equal(ps_pull_sync(c.t, &k, 1, v), 0);
		float want = 1.0f + (float)(c.adds[0][k] + c.adds[1][k]);
		for (int j = 0; j < VLEN; j++)
			assert_true(v[j] == want);
	}
	ps_node_stats st;
	assert_int_equal(ps_stats(test_world, 0, &st), 0);
	assert_int_equal(st.stale_reads, 0);
}

/* ------------------------------------------------------- inline path */

static void test_inline_pull_push_count_once_and_check_keys(void **state)
{
	(void)state;
	ps_table *t = test_table(100, 16, 4, 0);
	ps_key keys[3] = {1, 2, 3};
	float upd[48], out[48];
	for (int i = 0; i < 48; i++)
		upd[i] = (float)(i % 16);
	assert_int_equal(ps_push_sync(t, keys, 3, upd), 0); /* registers the thread */
	ps_node_stats a, b;
	assert_int_equal(ps_stats(test_world, 0, &a), 0);
	assert_int_equal(ps_push_sync(t, keys, 3, upd), 0);
	assert_int_equal(ps_pull_sync(t, keys, 3, out), 0);
	assert_int_equal(ps_stats(test_world, 0, &b), 0);
	assert_int_equal(b.pulls - a.pulls, 1);
	assert_int_equal(b.pushes - a.pushes, 1);
	assert_int_equal(b.keys_pulled - a.keys_pulled, 3);
	assert_int_equal(b.keys_pushed - a.keys_pushed, 3);
	assert_int_equal(b.local_keys - a.local_keys, 6);
	for (int i = 0; i < 48; i++)
		assert_true(out[i] == 1.0f + 2.0f * (float)(i % 16));
	/* bad input: exact codes, nothing applied */
	ps_key bad[2] = {4, 100};
	assert_int_equal(ps_push_sync(t, bad, 2, upd), PS_EKEY);
	assert_int_equal(ps_pull_sync(NULL, keys, 1, out), PS_ETABLE);
	assert_int_equal(ps_push_sync(t, NULL, 1, upd), -EINVAL);
	ps_key four = 4;
	assert_int_equal(ps_pull_sync(t, &four, 1, out), 0);
	assert_true(out[5] == 1.0f);
	/* a replicated key in the batch: the library takes over from it */
	assert_int_equal(ps_replicate(t, &keys[1], 1), 1);
	assert_int_equal(ps_push_sync(t, keys, 3, upd), 0);
	assert_int_equal(ps_pull_sync(t, keys, 3, out), 0);
	for (int i = 0; i < 48; i++)
		assert_true(out[i] == 1.0f + 3.0f * (float)(i % 16));
	assert_int_equal(ps_stats(test_world, 0, &b), 0);
	assert_int_equal(b.stale_reads, 0);
}

/* Every odd length reaches the right floats (the copy's overlapping moves). */
static void test_inline_copies_every_length_exactly(void **state)
{
	(void)state;
	static const uint32_t lens[] = {1, 2, 3, 4, 5, 7, 8, 9, 12, 15, 16, 17, 31, 33, 63, 100, 1000};
	for (size_t l = 0; l < sizeof lens / sizeof lens[0]; l++) {
		uint32_t n = lens[l];
		ps_table *t = test_table(8, n, 0, 0);
		float *upd = malloc(sizeof(float) * (n + 1)), *out = malloc(sizeof(float) * (n + 2));
		for (uint32_t j = 0; j < n; j++)
			upd[j] = (float)(j + 1);
		ps_key k = 3;
		assert_int_equal(ps_push_sync(t, &k, 1, upd), 0);
		assert_int_equal(ps_push_sync(t, &k, 1, upd), 0);
		out[n] = out[n + 1] = -7.0f; /* guards: nothing written past the row */
		assert_int_equal(ps_pull_sync(t, &k, 1, out), 0);
		for (uint32_t j = 0; j < n; j++)
			assert_true(out[j] == 1.0f + 2.0f * (float)(j + 1));
		assert_true(out[n] == -7.0f && out[n + 1] == -7.0f);
		/* unaligned caller buffers */
		assert_int_equal(ps_pull_sync(t, &k, 1, out + 1), 0);
		assert_true(out[1] == 3.0f && out[n] == 1.0f + 2.0f * (float)n);
		free(upd);
		free(out);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_row_lock_reads_and_writes_in_place, test_world_setup, test_world_teardown),
		cmocka_unit_test_setup_teardown(test_row_lock_rejects_bad_table_key_and_replicated_keys, test_world_setup,
						test_world_teardown),
		cmocka_unit_test_setup_teardown(test_row_get_needs_hogwild_table_and_open_section, test_world_setup,
						test_world_teardown),
		cmocka_unit_test_setup_teardown(test_rows_written_in_place_never_seen_torn_and_sum_exactly, test_world_setup,
						test_world_teardown),
		cmocka_unit_test_setup_teardown(test_inline_pull_push_count_once_and_check_keys, test_world_setup,
						test_world_teardown),
		cmocka_unit_test_setup_teardown(test_inline_copies_every_length_exactly, test_world_setup, test_world_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
