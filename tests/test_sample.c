/*
 * test_sample.c - sampling management: ps_dist, ps_sample_prepare/pull
 * with the naive, local and pool schemes, and their bad inputs.
 *
 * Each test runs in a hand-built two-node job (as test_grace.c): the test
 * creates the segment, forks a child that joins as node 1, and joins as
 * node 0 itself.  The child obeys one-byte commands through a pipe, so the
 * test decides when keys move to node 1.
 *
 * Tables (collective, created by both): `t` has 50 keys x 3 floats, range
 * placement: keys 0..24 on node 0, 25..49 on node 1; `other` has 20 keys
 * (for a distribution built for another table); `full` is `other` with
 * pools of 10 slots, full from the start (localization fails).
 *
 * Distribution checks are chi-squared goodness-of-fit tests with fixed
 * seeds (deterministic) at significance 0.001; the critical values are the
 * 0.999 quantiles of the chi-squared distribution (e.g. 85.351 for 49
 * degrees of freedom), computed from the regularized incomplete gamma
 * function.  A negative control checks that the same statistic rejects a
 * nearby wrong distribution.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
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

#include "common.h"
#include "psmem_int.h"

#define KEYS 50
#define HALF 25 /* keys below are node 0's at creation */
#define VLEN 3
#define OTHER_KEYS 20

struct job {
	struct ps__seg seg;
	pid_t child;
	int cmd[2], ack[2];
	ps_world *w;
	ps_table *t, *other, *full;
};

static int make_tables(ps_world *w, ps_table **t, ps_table **other, ps_table **full)
{
	ps_table_opts o;
	ps_table_opts_init(&o, KEYS, VLEN);
	o.seed = 5;
	int err;
	*t = ps_table_create(w, &o, &err);
	ps_table_opts_init(&o, OTHER_KEYS, 1);
	*other = *t ? ps_table_create(w, &o, &err) : NULL;
	o.slots_per_node = OTHER_KEYS / 2; /* each node's pool full from the start */
	*full = *other ? ps_table_create(w, &o, &err) : NULL;
	if (!*full)
		fprintf(stderr, "table: %s\n", ps_strerror(err));
	return *full ? 0 : -1;
}

static void join_env(const struct job *j, int node)
{
	char buf[32];
	setenv("PSMEM_SEGMENT", j->seg.name + 1, 1);
	snprintf(buf, sizeof buf, "%d", node);
	setenv("PSMEM_NODE", buf, 1);
}

/* Node 1: 'A' moves every key of t to node 1; 'X' leaves the job. */
static void child_main(struct job *j)
{
	join_env(j, 1);
	int err;
	ps_world *w = ps_init(&err);
	ps_table *t, *other, *full;
	if (!w || make_tables(w, &t, &other, &full))
		_exit(1);
	char c = 'r';
	(void)!write(j->ack[1], &c, 1);
	while (read(j->cmd[0], &c, 1) == 1) {
		if (c == 'A') {
			ps_key k[KEYS];
			for (int i = 0; i < KEYS; i++)
				k[i] = (ps_key)i;
			if (ps_localize_sync(t, k, KEYS) != 0)
				c = '!';
		} else if (c == 'X') {
			ps_finalize(w);
			(void)!write(j->ack[1], &c, 1);
			_exit(0);
		}
		(void)!write(j->ack[1], &c, 1);
	}
	_exit(0);
}

static void send_cmd(struct job *j, char c)
{
	assert_int_equal(write(j->cmd[1], &c, 1), 1);
	char a = 0;
	assert_int_equal(read(j->ack[0], &a, 1), 1);
	assert_int_equal(a, c);
}

static int setup(void **state)
{
	struct job *j = calloc(1, sizeof *j);
	struct ps__seg_params p = {.num_nodes = 2, .threads_per_node = 1, .arena_size = 64ULL << 20,
				   .shared_size = 16ULL << 20, .mem_budget = 256ULL << 20};
	if (!j || ps__seg_create(&p, &j->seg) != 0 || pipe(j->cmd) || pipe(j->ack))
		return -1;
	j->child = fork();
	if (j->child == 0) {
		close(j->cmd[1]);
		close(j->ack[0]);
		child_main(j);
	}
	close(j->cmd[0]);
	close(j->ack[1]);
	join_env(j, 0);
	int err;
	j->w = ps_init(&err);
	char c;
	if (!j->w || make_tables(j->w, &j->t, &j->other, &j->full) || read(j->ack[0], &c, 1) != 1)
		return -1;
	*state = j;
	return 0;
}

static int teardown(void **state)
{
	struct job *j = *state;
	char c = 'X';
	signal(SIGPIPE, SIG_IGN);
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

#define TEST(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

/* ------------------------------------------------------------- helpers */

/* Zipf weights 1 / (k + 1)^s. */
static void zipf(double *w, size_t n, double s)
{
	for (size_t k = 0; k < n; k++)
		w[k] = 1.0 / pow((double)(k + 1), s);
}

/* p[k] = w[k] / sum over the keys with keep[k] (NULL: all); 0 elsewhere. */
static void normalise(const double *w, const bool *keep, double *p, size_t n)
{
	double z = 0;
	for (size_t k = 0; k < n; k++)
		z += (!keep || keep[k]) ? w[k] : 0;
	for (size_t k = 0; k < n; k++)
		p[k] = (!keep || keep[k]) ? w[k] / z : 0;
}

/* Pearson's statistic of counts against p over the keys with p > 0 (each
 * key with p == 0 must have no count); *dof = those keys - 1. */
static double chi_squared(const uint64_t *count, const double *p, size_t n, int *dof)
{
	uint64_t total = 0;
	for (size_t k = 0; k < n; k++)
		total += count[k];
	double x = 0;
	*dof = -1;
	for (size_t k = 0; k < n; k++) {
		if (p[k] == 0) {
			if (count[k])
				fail_msg("key %zu has probability 0 but was drawn %" PRIu64 " times", k, count[k]);
			continue;
		}
		double e = p[k] * (double)total;
		x += ((double)count[k] - e) * ((double)count[k] - e) / e;
		++*dof;
	}
	return x;
}

/* 0.999 quantiles of chi-squared (test at p = 0.001). */
static double critical_0999(int dof)
{
	switch (dof) {
	case 29: return 58.301;
	case 39: return 72.055;
	case 49: return 85.351;
	default: fail_msg("no critical value for %d degrees of freedom", dof);
	}
	return 0;
}

/* Draws n keys (keys only, in chunks of 1000) and counts them. */
static void draw_counts(ps_sampler *s, size_t n, uint64_t *count, size_t nkeys)
{
	ps_key keys[1000];
	for (size_t done = 0; done < n;) {
		size_t k = n - done < 1000 ? n - done : 1000;
		assert_int_equal(ps_sample_pull(s, k, keys, NULL), (int64_t)k);
		for (size_t i = 0; i < k; i++) {
			assert_true(keys[i] < nkeys);
			count[keys[i]]++;
		}
		done += k;
	}
}

static ps_dist *dist(ps_table *t, const double *w)
{
	int err = 1;
	ps_dist *d = ps_dist_create(t, w, &err);
	assert_int_equal(err, 0);
	assert_non_null(d);
	return d;
}

static ps_sampler *prepare(ps_table *t, size_t n, const ps_dist *d, uint64_t seed)
{
	int err = 1;
	ps_sampler *s = ps_sample_prepare(t, n, d, seed, &err);
	if (!s)
		fail_msg("prepare: %s", ps_strerror(err));
	assert_int_equal(err, 0);
	return s;
}

/* Known values: key k holds (k + 1) * 10 + j at index j. */
static float known(ps_key k, int j) { return (float)((k + 1) * 10 + (uint64_t)j); }

static void push_known_values(ps_table *t)
{
	ps_key k[KEYS];
	float v[KEYS * VLEN];
	for (int i = 0; i < KEYS; i++) {
		k[i] = (ps_key)i;
		for (int j = 0; j < VLEN; j++)
			v[i * VLEN + j] = known(k[i], j);
	}
	assert_int_equal(ps_push_sync(t, k, KEYS, v), 0); /* the table starts at 0 */
}

static void assert_known_values(const ps_key *keys, const float *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		for (int j = 0; j < VLEN; j++)
			if (v[i * VLEN + j] != known(keys[i], j))
				fail_msg("sample %zu (key %" PRIu64 ")[%d] = %g, expected %g", i, keys[i], j,
					 (double)v[i * VLEN + j], (double)known(keys[i], j));
}

static ps_node_stats node0_stats(struct job *j)
{
	ps_node_stats st;
	assert_int_equal(ps_stats(j->w, 0, &st), 0);
	return st;
}

/* --------------------------------------------------------------- naive */

static void test_naive_draws_pass_chi_squared_against_zipf_and_fail_against_a_nearby_zipf(void **state)
{
	struct job *j = *state;
	double w[KEYS], p[KEYS];
	uint64_t count[KEYS] = {0};
	zipf(w, KEYS, 1.0);
	ps_dist *d = dist(j->t, w);
	ps_sampler *s = prepare(j->t, 200000, d, 42);
	draw_counts(s, 200000, count, KEYS);
	int dof;
	normalise(w, NULL, p, KEYS);
	double x = chi_squared(count, p, KEYS, &dof);
	assert_int_equal(dof, 49);
	if (x >= critical_0999(dof))
		fail_msg("naive draws do not fit their distribution: chi2 = %.1f >= %.3f", x, critical_0999(dof));
	/* negative control: the same draws against zipf(0.95) must be rejected
	 * (expected statistic ~850) */
	zipf(w, KEYS, 0.95);
	normalise(w, NULL, p, KEYS);
	x = chi_squared(count, p, KEYS, &dof);
	if (x < critical_0999(dof))
		fail_msg("the test cannot tell zipf(1) from zipf(0.95): chi2 = %.1f", x);
	assert_int_equal(ps_sample_finish(s), 0);
	ps_dist_free(d);
}

static void test_uniform_draws_pass_chi_squared_and_keys_of_weight_0_are_never_drawn(void **state)
{
	struct job *j = *state;
	double p[KEYS], w[KEYS];
	uint64_t count[KEYS] = {0};
	int dof;
	ps_sampler *s = prepare(j->t, 100000, NULL, 7); /* NULL dist: uniform */
	draw_counts(s, 100000, count, KEYS);
	for (int k = 0; k < KEYS; k++)
		p[k] = 1.0 / KEYS;
	double x = chi_squared(count, p, KEYS, &dof);
	assert_true(x < critical_0999(dof));
	assert_int_equal(ps_sample_finish(s), 0);

	/* ten keys of weight 0 among skewed ones: chi_squared fails on any
	 * draw of them; the rest must still fit */
	zipf(w, KEYS, 1.5);
	for (int k = 0; k < KEYS; k += 5)
		w[k] = 0;
	ps_dist *d = dist(j->t, w);
	memset(count, 0, sizeof count);
	s = prepare(j->t, 100000, d, 8);
	draw_counts(s, 100000, count, KEYS);
	normalise(w, NULL, p, KEYS);
	x = chi_squared(count, p, KEYS, &dof);
	assert_int_equal(dof, 39);
	assert_true(x < critical_0999(dof));
	assert_int_equal(ps_sample_finish(s), 0);
	ps_dist_free(d);
}

static void test_draws_depend_only_on_the_seed(void **state)
{
	struct job *j = *state;
	double w[KEYS];
	zipf(w, KEYS, 1.0);
	ps_dist *d = dist(j->t, w);
	ps_key a[100], b[100], c[100];
	ps_sampler *s1 = prepare(j->t, 100, d, 3), *s2 = prepare(j->t, 100, d, 3), *s3 = prepare(j->t, 100, d, 4);
	assert_int_equal(ps_sample_pull(s1, 100, a, NULL), 100);
	assert_int_equal(ps_sample_pull(s2, 60, b, NULL), 60); /* chunking does not matter */
	assert_int_equal(ps_sample_pull(s2, 40, b + 60, NULL), 40);
	assert_int_equal(ps_sample_pull(s3, 100, c, NULL), 100);
	assert_memory_equal(a, b, sizeof a);
	assert_memory_not_equal(a, c, sizeof a);
	ps_sample_finish(s1);
	ps_sample_finish(s2);
	ps_sample_finish(s3);
	ps_dist_free(d);
}

static void test_naive_samples_come_with_their_current_values_and_are_counted(void **state)
{
	struct job *j = *state;
	push_known_values(j->t);
	ps_node_stats before = node0_stats(j);
	ps_sampler *s = prepare(j->t, 500, NULL, 1);
	ps_key keys[500];
	float v[500 * VLEN];
	assert_int_equal(ps_sample_pull(s, 200, keys, v), 200);
	assert_int_equal(ps_sample_pull(s, 300, keys + 200, v + 200 * VLEN), 300);
	assert_known_values(keys, v, 500);
	bool remote = false;
	for (int i = 0; i < 500; i++)
		remote |= keys[i] >= HALF;
	assert_true(remote); /* naive ignores placement */
	ps_node_stats after = node0_stats(j);
	assert_int_equal(after.samples - before.samples, 500);
	assert_int_equal(after.sample_fallbacks, before.sample_fallbacks);
	ps_sample_info in;
	assert_int_equal(ps_sample_info_get(s, &in), 0);
	assert_int_equal(in.scheme, PS_SAMPLE_NAIVE);
	assert_int_equal(in.prepared, 500);
	assert_int_equal(in.served, 500);
	assert_int_equal(in.pool_size, 0);
	assert_null(in.pool);
	assert_int_equal(ps_sample_finish(s), 0);
}

/* --------------------------------------------------------------- local */

static void test_local_draws_only_local_keys_with_the_target_conditioned_on_local(void **state)
{
	struct job *j = *state;
	push_known_values(j->t);
	/* node 0 holds 0..24 and now also 25..29 */
	ps_key moved[5] = {25, 26, 27, 28, 29};
	assert_int_equal(ps_localize_sync(j->t, moved, 5), 0);
	assert_int_equal(ps_table_set_sampling(j->t, PS_SAMPLE_LOCAL, 1), 0);
	double w[KEYS], p[KEYS];
	bool local[KEYS];
	zipf(w, KEYS, 0.5);
	for (int k = 0; k < KEYS; k++)
		local[k] = ps_owner(j->t, (ps_key)k) == 0;
	ps_dist *d = dist(j->t, w);
	ps_sampler *s = prepare(j->t, 60000, d, 11);
	uint64_t count[KEYS] = {0};
	ps_key keys[1000];
	float v[1000 * VLEN];
	for (int r = 0; r < 60; r++) {
		assert_int_equal(ps_sample_pull(s, 1000, keys, v), 1000);
		assert_known_values(keys, v, 1000);
		for (int i = 0; i < 1000; i++) {
			if (ps_owner(j->t, keys[i]) != 0)
				fail_msg("local returned key %" PRIu64 " held by node %d", keys[i], ps_owner(j->t, keys[i]));
			count[keys[i]]++;
		}
	}
	for (int k = 25; k < 30; k++)
		assert_true(count[k] > 0); /* localized keys are drawn too */
	ps_sample_info in;
	assert_int_equal(ps_sample_info_get(s, &in), 0);
	assert_int_equal(in.scheme, PS_SAMPLE_LOCAL);
	assert_int_equal(in.fallbacks, 0);
	/* exactly the target restricted to keys 0..29, re-weighted: chi_squared
	 * also fails on any draw of keys 30..49 */
	int dof;
	normalise(w, local, p, KEYS);
	double x = chi_squared(count, p, KEYS, &dof);
	assert_int_equal(dof, 29);
	if (x >= critical_0999(dof))
		fail_msg("local draws do not fit the conditioned target: chi2 = %.1f", x);
	assert_int_equal(ps_sample_finish(s), 0);
	ps_dist_free(d);
}

static void test_local_without_a_local_key_falls_back_to_naive_draws_and_counts_them(void **state)
{
	struct job *j = *state;
	send_cmd(j, 'A'); /* node 1 takes every key */
	assert_int_equal(ps_table_set_sampling(j->t, PS_SAMPLE_LOCAL, 0), 0);
	ps_node_stats before = node0_stats(j);
	ps_sampler *s = prepare(j->t, 100, NULL, 2);
	ps_key keys[100];
	assert_int_equal(ps_sample_pull(s, 100, keys, NULL), 100);
	for (int i = 0; i < 100; i++)
		assert_int_equal(ps_owner(j->t, keys[i]), 1);
	ps_sample_info in;
	assert_int_equal(ps_sample_info_get(s, &in), 0);
	assert_int_equal(in.fallbacks, 100);
	ps_node_stats after = node0_stats(j);
	assert_int_equal(after.sample_fallbacks - before.sample_fallbacks, 100);
	assert_int_equal(after.samples - before.samples, 100);
	assert_int_equal(ps_sample_finish(s), 0);
}

/* ---------------------------------------------------------------- pool */

static void test_pool_serves_each_pool_key_U_times_localized_with_current_values(void **state)
{
	struct job *j = *state;
	push_known_values(j->t);
	enum { N = 400, U = 4, P = N / U };
	assert_int_equal(ps_table_set_sampling(j->t, PS_SAMPLE_POOL, U), 0);
	/* only node 1's keys have weight: every pool key must move */
	double w[KEYS];
	zipf(w, KEYS, 1.0);
	for (int k = 0; k < HALF; k++)
		w[k] = 0;
	ps_dist *d = dist(j->t, w);
	ps_node_stats before = node0_stats(j);
	ps_sampler *s = prepare(j->t, N, d, 9);
	assert_int_equal(ps_sample_wait(s), 0);
	ps_sample_info in;
	assert_int_equal(ps_sample_info_get(s, &in), 0);
	assert_int_equal(in.scheme, PS_SAMPLE_POOL);
	assert_int_equal(in.reuse, U);
	assert_int_equal(in.pool_size, P);
	uint64_t in_pool[KEYS] = {0}, served[KEYS] = {0};
	size_t distinct = 0;
	for (int i = 0; i < P; i++) {
		assert_true(in.pool[i] >= HALF && in.pool[i] < KEYS);
		assert_int_equal(ps_owner(j->t, in.pool[i]), 0); /* localized */
		distinct += in_pool[in.pool[i]]++ == 0;
	}
	ps_node_stats mid = node0_stats(j);
	assert_int_equal(mid.relocations - before.relocations, distinct);
	ps_key keys[N];
	float v[N * VLEN];
	for (int pass = 0; pass < U; pass++) {
		/* one pass serves every pool entry once */
		uint64_t this_pass[KEYS] = {0};
		assert_int_equal(ps_sample_pull(s, P, keys + pass * P, v + pass * P * VLEN), P);
		for (int i = 0; i < P; i++) {
			this_pass[keys[pass * P + i]]++;
			served[keys[pass * P + i]]++;
		}
		assert_memory_equal(this_pass, in_pool, sizeof in_pool);
	}
	for (int k = 0; k < KEYS; k++)
		assert_int_equal(served[k], U * in_pool[k]);
	/* each pass in a fresh order (the multisets are equal, the orders not) */
	for (int pass = 1; pass < U; pass++)
		assert_memory_not_equal(keys, keys + pass * P, P * sizeof keys[0]);
	assert_known_values(keys, v, N);
	assert_int_equal(ps_sample_pull(s, 1, keys, NULL), PS_EDRAINED);
	assert_int_equal(ps_sample_finish(s), 0);
	ps_dist_free(d);
}

static void test_pool_when_U_does_not_divide_n_serves_each_key_at_most_U_times(void **state)
{
	struct job *j = *state;
	assert_int_equal(ps_table_set_sampling(j->t, PS_SAMPLE_POOL, 4), 0);
	ps_sampler *s = prepare(j->t, 10, NULL, 5);
	ps_sample_info in;
	assert_int_equal(ps_sample_info_get(s, &in), 0);
	assert_int_equal(in.pool_size, 3);
	uint64_t in_pool[KEYS] = {0}, served[KEYS] = {0};
	for (int i = 0; i < 3; i++)
		in_pool[in.pool[i]]++;
	ps_key keys[10];
	assert_int_equal(ps_sample_pull(s, 10, keys, NULL), 10);
	for (int i = 0; i < 10; i++)
		served[keys[i]]++;
	for (int k = 0; k < KEYS; k++)
		assert_true(served[k] >= 3 * in_pool[k] && served[k] <= 4 * in_pool[k]); /* 3 full passes + 1 */
	assert_int_equal(ps_sample_finish(s), 0);
}

static void test_pool_whose_localization_fails_still_serves_current_values_and_reports_it(void **state)
{
	struct job *j = *state;
	ps_key k[OTHER_KEYS];
	float v[OTHER_KEYS];
	for (int i = 0; i < OTHER_KEYS; i++) {
		k[i] = (ps_key)i;
		v[i] = (float)(i + 1);
	}
	assert_int_equal(ps_push_sync(j->full, k, OTHER_KEYS, v), 0);
	assert_int_equal(ps_table_set_sampling(j->full, PS_SAMPLE_POOL, 2), 0);
	double w[OTHER_KEYS] = {0};
	for (int i = OTHER_KEYS / 2; i < OTHER_KEYS; i++)
		w[i] = 1; /* node 1's keys: node 0 has no slot left for them */
	ps_dist *d = dist(j->full, w);
	ps_sampler *s = prepare(j->full, 20, d, 3);
	ps_key keys[20];
	float vals[20];
	assert_int_equal(ps_sample_pull(s, 20, keys, vals), 20);
	for (int i = 0; i < 20; i++) {
		assert_true(keys[i] >= OTHER_KEYS / 2);
		assert_int_equal(ps_owner(j->full, keys[i]), 1); /* stayed */
		assert_true(vals[i] == (float)(keys[i] + 1));
	}
	assert_int_equal(ps_sample_wait(s), PS_EFULL);
	assert_int_equal(ps_sample_wait(s), PS_EFULL); /* the same on every call */
	assert_int_equal(ps_sample_finish(s), PS_EFULL);
	ps_dist_free(d);
}

/* ---------------------------------------------------------- bad inputs */

static void test_bad_weights_are_rejected_with_their_codes(void **state)
{
	struct job *j = *state;
	double w[KEYS];
	const double bad[] = {-1.0, NAN, INFINITY, -INFINITY, -1e-300};
	for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
		for (int k = 0; k < KEYS; k++)
			w[k] = 1;
		w[17] = bad[b];
		int err = 0;
		assert_null(ps_dist_create(j->t, w, &err));
		assert_int_equal(err, PS_EWEIGHT);
	}
	memset(w, 0, sizeof w);
	w[3] = -0.0; /* a zero all the same */
	int err = 0;
	assert_null(ps_dist_create(j->t, w, &err));
	assert_int_equal(err, PS_EZEROWEIGHTS);
	assert_null(ps_dist_create(NULL, w, &err));
	assert_int_equal(err, PS_ETABLE);
	/* huge weights do not overflow the sum */
	for (int k = 0; k < KEYS; k++)
		w[k] = 1e308;
	ps_dist *d = ps_dist_create(j->t, w, &err);
	assert_non_null(d);
	assert_int_equal(err, 0);
	ps_dist_free(d);
	assert_string_equal(ps_strerror(PS_EWEIGHT), "sampling weight is negative, NaN or infinite");
	assert_string_equal(ps_strerror(PS_EZEROWEIGHTS), "sampling weights are all zero");
}

static void test_prepare_and_pull_reject_bad_input_and_change_nothing(void **state)
{
	struct job *j = *state;
	int err = 0;
	ps_dist *d_other = dist(j->other, NULL);
	assert_null(ps_sample_prepare(j->t, 10, d_other, 1, &err));
	assert_int_equal(err, PS_EDIST);
	assert_string_equal(ps_strerror(PS_EDIST), "distribution was built for another table");
	assert_null(ps_sample_prepare(NULL, 10, NULL, 1, &err));
	assert_int_equal(err, PS_ETABLE);

	ps_sampler *s = prepare(j->t, 10, NULL, 1), *twin = prepare(j->t, 10, NULL, 1);
	ps_key keys[11], ref[10];
	for (int i = 0; i < 11; i++)
		keys[i] = 12345;
	assert_int_equal(ps_sample_pull(s, 11, keys, NULL), PS_EDRAINED);
	assert_string_equal(ps_strerror(PS_EDRAINED), "more samples asked than the sampler has left");
	for (int i = 0; i < 11; i++)
		assert_int_equal(keys[i], 12345); /* nothing written */
	assert_int_equal(ps_sample_pull(s, 3, NULL, NULL), -EINVAL);
	assert_int_equal(ps_sample_pull(NULL, 3, keys, NULL), PS_EHANDLE);
	/* nothing was drawn: the ten samples are the twin's ten */
	assert_int_equal(ps_sample_pull(s, 10, keys, NULL), 10);
	assert_int_equal(ps_sample_pull(twin, 10, ref, NULL), 10);
	assert_memory_equal(keys, ref, sizeof ref);
	assert_int_equal(ps_sample_pull(s, 1, keys, NULL), PS_EDRAINED);
	assert_int_equal(ps_sample_pull(s, 0, NULL, NULL), 0);
	ps_sample_info in;
	assert_int_equal(ps_sample_info_get(NULL, &in), PS_EHANDLE);
	assert_int_equal(ps_sample_finish(NULL), PS_EHANDLE);
	assert_int_equal(ps_sample_wait(NULL), PS_EHANDLE);
	assert_int_equal(ps_sample_finish(s), 0);
	assert_int_equal(ps_sample_finish(twin), 0);
	ps_dist_free(d_other);
}

static void test_scheme_strings_parse_or_fail_with_PS_ESCHEME(void **state)
{
	(void)state;
	static const struct {
		const char *s;
		enum ps_sample_scheme scheme;
		unsigned reuse;
	} good[] = {
		{"naive", PS_SAMPLE_NAIVE, 1},   {"local", PS_SAMPLE_LOCAL, 1},
		{"pool", PS_SAMPLE_POOL, PS_SAMPLE_DEFAULT_REUSE}, {"pool:1", PS_SAMPLE_POOL, 1},
		{"pool:16", PS_SAMPLE_POOL, 16}, {"pool:65536", PS_SAMPLE_POOL, 65536},
	};
	static const char *const bad[] = {"",        "Naive",   "naive:2", "local ", " pool",  "pools",
					  "pool:",   "pool:0",  "pool:-1", "pool:+3", "pool: 3", "pool:3x",
					  "pool:4:4", "pool:65537", "pool:99999999999999999999", "pool:0x10"};
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		enum ps_sample_scheme sc = 99;
		unsigned u = 99;
		assert_int_equal(ps_sample_scheme_parse(good[i].s, &sc, &u), 0);
		assert_int_equal(sc, good[i].scheme);
		assert_int_equal(u, good[i].reuse);
		assert_string_equal(ps_sample_scheme_name(sc), strncmp(good[i].s, "pool", 4) ? good[i].s : "pool");
	}
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		enum ps_sample_scheme sc = 99;
		unsigned u = 99;
		if (ps_sample_scheme_parse(bad[i], &sc, &u) != PS_ESCHEME)
			fail_msg("\"%s\" was not rejected with PS_ESCHEME", bad[i]);
		assert_int_equal(sc, 99); /* untouched */
		assert_int_equal(u, 99);
	}
	assert_string_equal(ps_strerror(PS_ESCHEME),
			    "bad sampling scheme: expected naive, local, pool or pool:U with U in 1..65536");
	assert_string_equal(ps_sample_scheme_name(7), "?");
}

static void test_set_sampling_rejects_bad_schemes_and_keeps_the_old_one(void **state)
{
	struct job *j = *state;
	assert_int_equal(ps_table_set_sampling(j->t, PS_SAMPLE_POOL, 3), 0);
	assert_int_equal(ps_table_set_sampling(j->t, (enum ps_sample_scheme)7, 1), PS_ESCHEME);
	assert_int_equal(ps_table_set_sampling(j->t, PS_SAMPLE_POOL, 0), PS_ESCHEME);
	assert_int_equal(ps_table_set_sampling(j->t, PS_SAMPLE_POOL, PS_SAMPLE_MAX_REUSE + 1), PS_ESCHEME);
	assert_int_equal(ps_table_set_sampling(j->t, PS_SAMPLE_NAIVE, 2), PS_ESCHEME);
	assert_int_equal(ps_table_set_sampling(NULL, PS_SAMPLE_NAIVE, 1), PS_ETABLE);
	ps_sampler *s = prepare(j->t, 6, NULL, 1);
	ps_sample_info in;
	assert_int_equal(ps_sample_info_get(s, &in), 0);
	assert_int_equal(in.scheme, PS_SAMPLE_POOL);
	assert_int_equal(in.reuse, 3);
	assert_int_equal(in.pool_size, 2);
	/* a later change does not affect a prepared sampler */
	assert_int_equal(ps_table_set_sampling(j->t, PS_SAMPLE_NAIVE, 1), 0);
	assert_int_equal(ps_sample_info_get(s, &in), 0);
	assert_int_equal(in.scheme, PS_SAMPLE_POOL);
	assert_int_equal(ps_sample_finish(s), 0);
	/* the other table kept the default */
	s = prepare(j->other, 6, NULL, 1);
	assert_int_equal(ps_sample_info_get(s, &in), 0);
	assert_int_equal(in.scheme, PS_SAMPLE_NAIVE);
	assert_int_equal(ps_sample_finish(s), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		TEST(test_naive_draws_pass_chi_squared_against_zipf_and_fail_against_a_nearby_zipf),
		TEST(test_uniform_draws_pass_chi_squared_and_keys_of_weight_0_are_never_drawn),
		TEST(test_draws_depend_only_on_the_seed),
		TEST(test_naive_samples_come_with_their_current_values_and_are_counted),
		TEST(test_local_draws_only_local_keys_with_the_target_conditioned_on_local),
		TEST(test_local_without_a_local_key_falls_back_to_naive_draws_and_counts_them),
		TEST(test_pool_serves_each_pool_key_U_times_localized_with_current_values),
		TEST(test_pool_when_U_does_not_divide_n_serves_each_key_at_most_U_times),
		TEST(test_pool_whose_localization_fails_still_serves_current_values_and_reports_it),
		TEST(test_bad_weights_are_rejected_with_their_codes),
		TEST(test_prepare_and_pull_reject_bad_input_and_change_nothing),
		TEST(test_scheme_strings_parse_or_fail_with_PS_ESCHEME),
		TEST(test_set_sampling_rejects_bad_schemes_and_keeps_the_old_one),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
