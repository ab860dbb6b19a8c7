/*
 * test_rules.c - server-side update rules against references computed
 * sequentially here, in the same float operations as psmem.h states (so
 * equal means bitwise equal); their state moving with a key on localize;
 * custom rules and what happens when processes disagree about one; and
 * every bad option rejected with its code, changing nothing.
 *
 * One-node tests get a private job from their setup.  The two-node tests
 * build the job by hand as test_grace.c does: the test creates the
 * segment, forks node 1, and joins as node 0; the child creates the same
 * tables, reports its ps_table_create results through a pipe, and leaves
 * when the test closes the command pipe.
 */
#include <errno.h>
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

#define MOMENTUM_ID (PS_RULE_CUSTOM + 0)

static ps_world *g_world;

/* ------------------------------------------------------------- helpers */

static uint64_t rng_state = 88172645463325252ULL;

static float rnd(void)
{
	uint64_t x = rng_state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	rng_state = x;
	return (float)((double)(x >> 40) / (double)(1ULL << 23) - 1.0); /* [-1, 1) */
}

static void fill(float *u, size_t n)
{
	for (size_t i = 0; i < n; i++)
		u[i] = rnd();
}

static ps_table *rule_table(ps_world *w, uint64_t keys, uint32_t len, uint32_t rule, float p0, float p1, float p2,
			    float p3, int *err)
{
	ps_table_opts o;
	ps_table_opts_init(&o, keys, len);
	o.init = PS_INIT_CONST;
	o.init_a = 0.5f;
	o.rule = rule;
	o.rule_params[0] = p0;
	o.rule_params[1] = p1;
	o.rule_params[2] = p2;
	o.rule_params[3] = p3;
	return ps_table_create(w, &o, err);
}

static ps_table *must_table(ps_world *w, uint64_t keys, uint32_t len, uint32_t rule, float p0, float p1, float p2,
			    float p3)
{
	int err = 1;
	ps_table *t = rule_table(w, keys, len, rule, p0, p1, p2, p3, &err);
	if (!t)
		fail_msg("table with rule %u: %s", rule, ps_strerror(err));
	assert_int_equal(err, 0);
	return t;
}

/* Reference state of one key, for every rule. */
struct ref {
	uint32_t len;
	float *v, *a, *m, *s; /* values; adagrad accumulator; adam moments */
	uint32_t t;           /* adam step */
};

static void ref_init(struct ref *r, uint32_t len)
{
	r->len = len;
	r->v = malloc(4 * len * sizeof(float));
	assert_non_null(r->v);
	r->a = r->v + len;
	r->m = r->a + len;
	r->s = r->m + len;
	for (uint32_t j = 0; j < len; j++)
		r->v[j] = 0.5f; /* PS_INIT_CONST 0.5 */
	memset(r->a, 0, 3 * len * sizeof(float));
	r->t = 0;
}

/* One update by the formulas of psmem.h, in their order. */
static void ref_apply(struct ref *r, uint32_t rule, const float *p, const float *u)
{
	if (rule == PS_RULE_ADAM)
		r->t++;
	float c1 = 1.0f - powf(p[1], (float)r->t), c2 = 1.0f - powf(p[2], (float)r->t);
	for (uint32_t j = 0; j < r->len; j++) {
		switch (rule) {
		case PS_RULE_SUM:
			r->v[j] += u[j];
			break;
		case PS_RULE_ASSIGN:
			r->v[j] = u[j];
			break;
		case PS_RULE_SGD:
			r->v[j] = r->v[j] + -p[0] * u[j];
			break;
		case PS_RULE_ADAGRAD:
			r->a[j] = r->a[j] + u[j] * u[j];
			r->v[j] = r->v[j] + -p[0] * u[j] / (sqrtf(r->a[j]) + p[1]);
			break;
		case PS_RULE_ADAM:
			r->m[j] = p[1] * r->m[j] + (1.0f - p[1]) * u[j];
			r->s[j] = p[2] * r->s[j] + (1.0f - p[2]) * u[j] * u[j];
			r->v[j] = r->v[j] + -p[0] * (r->m[j] / c1) / (sqrtf(r->s[j] / c2) + p[3]);
			break;
		}
	}
}

static void assert_key_equals_ref(ps_table *t, ps_key k, const struct ref *r)
{
	uint32_t len = r->len;
	float *v = malloc((len + 1) * sizeof *v);
	assert_non_null(v);
	v[len] = 1234.5f; /* pull returns the values only: this stays */
	assert_int_equal(ps_pull_sync(t, &k, 1, v), 0);
	for (uint32_t j = 0; j < len; j++)
		if (v[j] != r->v[j])
			fail_msg("key %lu [%u] = %.9g, reference %.9g", (unsigned long)k, j, (double)v[j],
				 (double)r->v[j]);
	assert_true(v[len] == 1234.5f);
	free(v);
}

/*
 * Pushes random updates to keys 0..nk-1 for `rounds` rounds, in batches
 * that name keys 0 and 1 twice and push key 2 only every other round (so
 * keys see different step counts), and compares every key with its
 * reference.  refs[] persist across calls (state carried over).
 */
static void push_and_compare(ps_table *t, uint32_t rule, const float *p, struct ref *refs, uint64_t nk,
			     uint32_t len, int rounds)
{
	ps_key keys[64];
	float *u = malloc(64 * len * sizeof *u);
	assert_non_null(u);
	assert_true(nk + 2 <= 64);
	for (int r = 0; r < rounds; r++) {
		size_t n = 0;
		for (uint64_t k = 0; k < nk; k++)
			if (k != 2 || r % 2 == 0)
				keys[n++] = k;
		keys[n++] = 0;
		keys[n++] = 1;
		fill(u, n * len);
		assert_int_equal(ps_push_sync(t, keys, n, u), 0);
		for (size_t i = 0; i < n; i++)
			ref_apply(&refs[keys[i]], rule, p, u + i * len);
	}
	for (uint64_t k = 0; k < nk; k++)
		assert_key_equals_ref(t, k, &refs[k]);
	free(u);
}

static void rule_vs_reference(ps_world *w, uint32_t rule, float p0, float p1, float p2, float p3, uint32_t len)
{
	const uint64_t nk = 8;
	const float p[4] = {p0, p1, p2, p3};
	ps_table *t = must_table(w, nk, len, rule, p0, p1, p2, p3);
	struct ref refs[8];
	for (uint64_t k = 0; k < nk; k++)
		ref_init(&refs[k], len);
	push_and_compare(t, rule, p, refs, nk, len, 25);
	for (uint64_t k = 0; k < nk; k++)
		free(refs[k].v);
}

/* ------------------------------------------------------------- fixtures */

static int setup_world(void **state)
{
	int err = 1;
	g_world = ps_init(&err);
	if (!g_world || err)
		return -1;
	*state = g_world;
	return 0;
}

static int teardown_world(void **state)
{
	(void)state;
	int rc = ps_finalize(g_world);
	g_world = NULL;
	return rc;
}

/* -------------------------------------------------------- one-node tests */

static void test_sum_is_the_default_and_adds(void **state)
{
	ps_table_opts o;
	ps_table_opts_init(&o, 4, 3);
	assert_int_equal(o.rule, PS_RULE_SUM);
	rule_vs_reference(*state, PS_RULE_SUM, 0, 0, 0, 0, 3);
}

static void test_assign_stores_the_last_update(void **state)
{
	rule_vs_reference(*state, PS_RULE_ASSIGN, 0, 0, 0, 0, 5);
}

static void test_sgd_matches_the_reference_bitwise(void **state)
{
	rule_vs_reference(*state, PS_RULE_SGD, 0.1f, 0, 0, 0, 7);
}

static void test_adagrad_matches_the_reference_bitwise(void **state)
{
	rule_vs_reference(*state, PS_RULE_ADAGRAD, 0.05f, 1e-8f, 0, 0, 33);
}

static void test_adam_matches_the_reference_bitwise(void **state)
{
	rule_vs_reference(*state, PS_RULE_ADAM, 0.01f, 0.9f, 0.999f, 1e-8f, 16);
}

/* Key 0 pushed 5 times, key 1 once afterwards: with one step per table
 * (6) key 1's bias correction would differ from its own first step. */
static void test_adam_counts_steps_per_key(void **state)
{
	const float p[4] = {0.01f, 0.9f, 0.999f, 1e-8f};
	ps_table *t = must_table(*state, 2, 4, PS_RULE_ADAM, p[0], p[1], p[2], p[3]);
	struct ref r0, r1;
	ref_init(&r0, 4);
	ref_init(&r1, 4);
	float u[4] = {0.3f, -0.2f, 0.1f, 0.7f};
	ps_key k0 = 0, k1 = 1;
	for (int i = 0; i < 5; i++) {
		assert_int_equal(ps_push_sync(t, &k0, 1, u), 0);
		ref_apply(&r0, PS_RULE_ADAM, p, u);
	}
	assert_int_equal(ps_push_sync(t, &k1, 1, u), 0);
	ref_apply(&r1, PS_RULE_ADAM, p, u);
	assert_int_equal(r1.t, 1);
	assert_key_equals_ref(t, 0, &r0);
	assert_key_equals_ref(t, 1, &r1);
	/* Adam's first step moves each value by lr (m/c1 = u, s/c2 = u^2) */
	float v[4];
	assert_int_equal(ps_pull_sync(t, &k1, 1, v), 0);
	for (int j = 0; j < 4; j++)
		assert_true(fabsf(v[j] - (0.5f - 0.01f * (u[j] > 0 ? 1.0f : -1.0f))) < 1e-6f);
	free(r0.v);
	free(r1.v);
}

/* The state is stored in the slot after the values, and counted in its size. */
static void test_rule_state_lives_after_the_values(void **state)
{
	ps_table *sum = must_table(*state, 4, 12, PS_RULE_SUM, 0, 0, 0, 0);
	ps_table *ada = must_table(*state, 4, 12, PS_RULE_ADAGRAD, 0.1f, 1e-6f, 0, 0);
	ps_table *adam = must_table(*state, 4, 12, PS_RULE_ADAM, 0.1f, 0.9f, 0.99f, 1e-6f);
	assert_int_equal(sum->state_len, 0);
	assert_int_equal(ada->state_len, 12);
	assert_int_equal(adam->state_len, 2 * 12 + 1);
	assert_int_equal(sum->slot_size, 64);             /* 16 + 48 */
	assert_int_equal(ada->slot_size, 128);            /* 16 + 96 */
	assert_int_equal(adam->slot_size, 192);           /* 16 + 148 -> 64 B multiple */
	/* after one adagrad push of u, the accumulator word holds u * u */
	ps_key k = 3;
	float u[12];
	fill(u, 12);
	assert_int_equal(ps_push_sync(ada, &k, 1, u), 0);
	struct ps__slot *sl = ps__at(&g_world->seg, PS__LOC_OFF(atomic_load(&ada->loc[k])));
	for (int j = 0; j < 12; j++) {
		uint32_t bits = atomic_load(&sl->v[12 + j]);
		float a;
		memcpy(&a, &bits, sizeof a);
		assert_true(a == u[j] * u[j]);
	}
}

static void test_assign_sync_sets_values_and_resets_the_state(void **state)
{
	const float p[4] = {0.1f, 1e-6f, 0, 0};
	ps_table *t = must_table(*state, 4, 6, PS_RULE_ADAGRAD, p[0], p[1], 0, 0);
	struct ref r;
	ref_init(&r, 6);
	ps_key k = 2;
	float u[6], init[6] = {1, 2, 3, 4, 5, 6};
	fill(u, 6);
	assert_int_equal(ps_push_sync(t, &k, 1, u), 0);
	assert_int_equal(ps_assign_sync(t, &k, 1, init), 0);
	/* as if the key were new with values init */
	free(r.v);
	ref_init(&r, 6);
	memcpy(r.v, init, sizeof init);
	assert_key_equals_ref(t, k, &r);
	fill(u, 6);
	assert_int_equal(ps_push_sync(t, &k, 1, u), 0);
	ref_apply(&r, PS_RULE_ADAGRAD, p, u);
	assert_key_equals_ref(t, k, &r);
	free(r.v);
	/* on a sum table and a HOGWILD one it stores the values as well */
	ps_table_opts o;
	ps_table_opts_init(&o, 4, 6);
	o.flags = PS_HOGWILD;
	int err;
	ps_table *h = ps_table_create(*state, &o, &err);
	assert_non_null(h);
	assert_int_equal(ps_push_sync(h, &k, 1, u), 0);
	assert_int_equal(ps_assign_sync(h, &k, 1, init), 0);
	float v[6];
	assert_int_equal(ps_pull_sync(h, &k, 1, v), 0);
	assert_memory_equal(v, init, sizeof init);
	/* bad input changes nothing */
	ps_key bad[2] = {1, 4};
	assert_int_equal(ps_assign_sync(h, bad, 2, u), PS_EKEY);
	assert_int_equal(ps_assign_sync(NULL, &k, 1, u), PS_ETABLE);
	k = 1;
	assert_int_equal(ps_pull_sync(h, &k, 1, v), 0);
	for (int j = 0; j < 6; j++)
		assert_true(v[j] == 0.0f);
}

/* ----------------------------------------------------------- bad options */

static void assert_rejected(ps_world *w, uint32_t rule, float p0, float p1, float p2, float p3, uint32_t flags,
			    int code)
{
	ps_table_opts o;
	ps_table_opts_init(&o, 4, 2);
	o.rule = rule;
	o.rule_params[0] = p0;
	o.rule_params[1] = p1;
	o.rule_params[2] = p2;
	o.rule_params[3] = p3;
	o.flags = flags;
	int err = 1;
	assert_null(ps_table_create(w, &o, &err));
	if (err != code)
		fail_msg("rule %u (%g %g %g %g): %s, expected %s", rule, (double)p0, (double)p1, (double)p2,
			 (double)p3, ps_strerror(err), ps_strerror(code));
}

static void test_bad_rules_and_parameters_are_rejected_and_change_nothing(void **state)
{
	ps_world *w = *state;
	assert_rejected(w, 5, 0, 0, 0, 0, 0, -EINVAL);                       /* no such built-in */
	assert_rejected(w, PS_RULE_CUSTOM + PS_RULE_MAX_CUSTOM, 0, 0, 0, 0, 0, -EINVAL);
	assert_rejected(w, PS_RULE_SUM, 1, 0, 0, 0, 0, -EINVAL);             /* unused parameter set */
	assert_rejected(w, PS_RULE_ASSIGN, 0, 0, 0, 0.5f, 0, -EINVAL);
	assert_rejected(w, PS_RULE_SGD, 0, 0, 0, 0, 0, -EINVAL);             /* lr 0 */
	assert_rejected(w, PS_RULE_SGD, -0.1f, 0, 0, 0, 0, -EINVAL);
	assert_rejected(w, PS_RULE_SGD, NAN, 0, 0, 0, 0, -EINVAL);
	assert_rejected(w, PS_RULE_SGD, 0.1f, 1e-8f, 0, 0, 0, -EINVAL);
	assert_rejected(w, PS_RULE_ADAGRAD, 0.1f, 0, 0, 0, 0, -EINVAL);      /* eps 0 */
	assert_rejected(w, PS_RULE_ADAGRAD, INFINITY, 1e-8f, 0, 0, 0, -EINVAL);
	assert_rejected(w, PS_RULE_ADAM, 0.1f, 1.0f, 0.999f, 1e-8f, 0, -EINVAL); /* b1 = 1 */
	assert_rejected(w, PS_RULE_ADAM, 0.1f, 0.9f, -0.1f, 1e-8f, 0, -EINVAL);
	assert_rejected(w, PS_RULE_ADAM, 0.1f, 0.9f, 0.999f, 0, 0, -EINVAL);
	assert_rejected(w, MOMENTUM_ID, NAN, 0, 0, 0, 0, -EINVAL);
	assert_rejected(w, PS_RULE_ADAGRAD, 0.1f, 1e-8f, 0, 0, PS_HOGWILD, PS_EHOGWILD);
	assert_rejected(w, PS_RULE_ASSIGN, 0, 0, 0, 0, PS_HOGWILD, PS_EHOGWILD);
	/* nothing was created: the next table is table 0 */
	ps_table *t = must_table(w, 4, 2, PS_RULE_SUM, 0, 0, 0, 0);
	assert_int_equal(ps_table_id(t), 0);
	assert_string_equal(ps_strerror(PS_EHOGWILD), "PS_HOGWILD tables take only the sum update rule");
	assert_non_null(strstr(ps_strerror(PS_ERULE), "update rule not registered"));
}

/* --------------------------------------------------------- custom rules */

/* Momentum: state m per value and a push count per key. */
static void momentum(float *v, float *st, const float *u, uint32_t len, const float *p)
{
	for (uint32_t j = 0; j < len; j++) {
		st[j] = p[1] * st[j] + u[j];
		v[j] -= p[0] * st[j];
	}
	st[len] += 1.0f;
}

static void other_fn(float *v, float *st, const float *u, uint32_t len, const float *p)
{
	(void)st;
	(void)p;
	for (uint32_t j = 0; j < len; j++)
		v[j] = u[j];
}

static int register_momentum(void)
{
	return ps_rule_register(MOMENTUM_ID, momentum, "momentum", 1, 1);
}

static void test_rule_register_checks_its_arguments(void **state)
{
	(void)state;
	assert_int_equal(register_momentum(), 0);
	assert_int_equal(register_momentum(), 0); /* the same again: fine */
	assert_int_equal(ps_rule_register(MOMENTUM_ID, other_fn, "momentum", 1, 1), -EEXIST);
	assert_int_equal(ps_rule_register(MOMENTUM_ID, momentum, "momentum2", 1, 1), -EEXIST);
	assert_int_equal(ps_rule_register(MOMENTUM_ID, momentum, "momentum", 2, 1), -EEXIST);
	assert_int_equal(ps_rule_register(PS_RULE_ADAM, momentum, "x", 0, 0), -EINVAL);
	assert_int_equal(ps_rule_register(PS_RULE_CUSTOM + PS_RULE_MAX_CUSTOM, momentum, "x", 0, 0), -EINVAL);
	assert_int_equal(ps_rule_register(PS_RULE_CUSTOM + 1, NULL, "x", 0, 0), -EINVAL);
	assert_int_equal(ps_rule_register(PS_RULE_CUSTOM + 1, momentum, NULL, 0, 0), -EINVAL);
	assert_int_equal(ps_rule_register(PS_RULE_CUSTOM + 1, momentum, "", 0, 0), -EINVAL);
	assert_int_equal(ps_rule_register(PS_RULE_CUSTOM + 1, momentum, "a-name-of-thirty-two-characters!", 0, 0),
			 -EINVAL);
	assert_int_equal(ps_rule_register(PS_RULE_CUSTOM + 1, momentum, "x", 5, 0), -EINVAL);
	assert_int_equal(ps_rule_register(PS_RULE_CUSTOM + 1, momentum, "x", 0, 17), -EINVAL);
}

static void test_custom_rule_applies_with_its_state(void **state)
{
	assert_int_equal(register_momentum(), 0);
	const uint32_t len = 1500; /* more than the rule's stack buffer */
	ps_table *t = must_table(*state, 3, len, MOMENTUM_ID, 0.1f, 0.9f, 0, 0);
	assert_int_equal(t->state_len, len + 1);
	float *u = malloc(len * sizeof *u), *v = malloc(len * sizeof *v), *m = calloc(len, sizeof *m);
	float *ref = malloc(len * sizeof *ref);
	assert_true(u && v && m && ref);
	for (uint32_t j = 0; j < len; j++)
		ref[j] = 0.5f;
	ps_key k = 1;
	for (int r = 0; r < 4; r++) {
		fill(u, len);
		assert_int_equal(ps_push_sync(t, &k, 1, u), 0);
		for (uint32_t j = 0; j < len; j++) {
			m[j] = 0.9f * m[j] + u[j];
			ref[j] -= 0.1f * m[j];
		}
	}
	assert_int_equal(ps_pull_sync(t, &k, 1, v), 0);
	assert_memory_equal(v, ref, len * sizeof *v);
	/* the per-key counter sits in the last state word */
	struct ps__slot *sl = ps__at(&g_world->seg, PS__LOC_OFF(atomic_load(&t->loc[k])));
	uint32_t bits = atomic_load(&sl->v[len + len]);
	float count;
	memcpy(&count, &bits, sizeof count);
	assert_true(count == 4.0f);
	free(u);
	free(v);
	free(m);
	free(ref);
}

static void test_unregistered_custom_rule_is_PS_ERULE(void **state)
{
	int err = 1;
	assert_null(rule_table(*state, 4, 2, PS_RULE_CUSTOM + 7, 0, 0, 0, 0, &err));
	assert_int_equal(err, PS_ERULE);
	/* the collective failed as a whole; the next creation works */
	ps_table *t = must_table(*state, 4, 2, PS_RULE_SUM, 0, 0, 0, 0);
	assert_int_equal(ps_table_id(t), 1);
}

/* ------------------------------------------------------- two-node tests */

enum child_mode { CHILD_SAME, CHILD_OTHER_NAME, CHILD_UNREGISTERED };

struct job {
	struct ps__seg seg;
	pid_t child;
	int cmd[2], ack[2];
	ps_world *w;
	uint32_t custom; /* id of the third table's custom rule */
};

static void join_env(const struct job *j, int node)
{
	char buf[32];
	setenv("PSMEM_SEGMENT", j->seg.name + 1, 1);
	snprintf(buf, sizeof buf, "%d", node);
	setenv("PSMEM_NODE", buf, 1);
}

/* The tables both nodes create, in order: 16 keys (8 per node, range). */
#define NK 16
#define LEN 5
static const float ADA[4] = {0.05f, 1e-7f, 0, 0};
static const float ADAM[4] = {0.01f, 0.9f, 0.999f, 1e-8f};

static int create_tables(ps_world *w, uint32_t custom, ps_table **t)
{
	int err, e3;
	t[0] = rule_table(w, NK, LEN, PS_RULE_ADAGRAD, ADA[0], ADA[1], ADA[2], ADA[3], &err);
	if (!t[0])
		return err;
	t[1] = rule_table(w, NK, LEN, PS_RULE_ADAM, ADAM[0], ADAM[1], ADAM[2], ADAM[3], &err);
	if (!t[1])
		return err;
	t[2] = rule_table(w, NK, LEN, custom, 0.1f, 0.9f, 0, 0, &e3);
	return e3;
}

/* Node 1: registers the custom rule as told, creates the tables, sends
 * the third creation's result, and stays until the command pipe closes.
 * (The registry is per process; a fork copies what the test registered
 * before it, so each test uses its own id, registered after the fork.) */
static void child_main(struct job *j, enum child_mode mode)
{
	join_env(j, 1);
	if (mode == CHILD_SAME)
		ps_rule_register(j->custom, momentum, "momentum", 1, 1);
	else if (mode == CHILD_OTHER_NAME)
		ps_rule_register(j->custom, momentum, "nesterov", 1, 1);
	int err;
	ps_world *w = ps_init(&err);
	if (!w)
		_exit(1);
	ps_table *t[3];
	int32_t rc = create_tables(w, j->custom, t);
	(void)!write(j->ack[1], &rc, sizeof rc);
	char c;
	while (read(j->cmd[0], &c, 1) == 1)
		;
	ps_finalize(w);
	_exit(0);
}

static struct job *start_job(void **state, enum child_mode mode, uint32_t custom)
{
	struct job *j = calloc(1, sizeof *j);
	assert_non_null(j);
	j->custom = custom;
	struct ps__seg_params p = {.num_nodes = 2, .threads_per_node = 1, .arena_size = 64ULL << 20,
				   .shared_size = 16ULL << 20, .mem_budget = 256ULL << 20};
	assert_int_equal(ps__seg_create(&p, &j->seg), 0);
	assert_int_equal(pipe(j->cmd), 0);
	assert_int_equal(pipe(j->ack), 0);
	*state = j; /* teardown_job cleans up from here on */
	j->child = fork();
	assert_true(j->child >= 0);
	if (j->child == 0) {
		close(j->cmd[1]);
		close(j->ack[0]);
		child_main(j, mode);
	}
	close(j->cmd[0]);
	close(j->ack[1]);
	assert_int_equal(ps_rule_register(custom, momentum, "momentum", 1, 1), 0);
	join_env(j, 0);
	int err;
	j->w = ps_init(&err);
	assert_non_null(j->w);
	return j;
}

/* The child's result of its third table creation. */
static int32_t child_result(struct job *j)
{
	int32_t rc = 1;
	assert_int_equal(read(j->ack[0], &rc, sizeof rc), (ssize_t)sizeof rc);
	return rc;
}

/* Ends the job of a two-node test, also after a failed assertion. */
static int teardown_job(void **state)
{
	struct job *j = *state;
	if (!j)
		return 0;
	close(j->cmd[1]); /* the child leaves */
	int st = -1;
	for (int i = 0; i < 500 && waitpid(j->child, &st, WNOHANG) == 0; i++)
		usleep(10000);
	if (st == -1) { /* stuck after a failure: no leftovers either way */
		kill(j->child, SIGKILL);
		waitpid(j->child, &st, 0);
	}
	if (j->w)
		ps_finalize(j->w);
	ps__seg_unlink(j->seg.name);
	ps__seg_detach(&j->seg);
	unsetenv("PSMEM_SEGMENT");
	unsetenv("PSMEM_NODE");
	close(j->ack[0]);
	free(j);
	*state = NULL;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

static int setup_job(void **state)
{
	*state = NULL;
	return 0;
}

/* Pushes to node 1's keys 8..15, moves them to node 0, pushes again: the
 * accumulators and moments moved with the values. */
static void test_rule_state_survives_localize(void **state)
{
	struct job *j = start_job(state, CHILD_SAME, PS_RULE_CUSTOM + 2);
	ps_table *t[3];
	assert_int_equal(create_tables(j->w, j->custom, t), 0);
	assert_int_equal(child_result(j), 0);
	const float *params[2] = {ADA, ADAM};
	const uint32_t rules[2] = {PS_RULE_ADAGRAD, PS_RULE_ADAM};
	ps_key keys[8];
	for (int i = 0; i < 8; i++)
		keys[i] = 8 + (ps_key)i;
	for (int x = 0; x < 2; x++) {
		struct ref refs[NK];
		for (int k = 0; k < NK; k++)
			ref_init(&refs[k], LEN);
		for (int i = 0; i < 8; i++)
			assert_int_equal(ps_owner(t[x], keys[i]), 1);
		push_and_compare(t[x], rules[x], params[x], refs, NK, LEN, 6);
		assert_int_equal(ps_localize_sync(t[x], keys, 8), 0);
		for (int i = 0; i < 8; i++)
			assert_int_equal(ps_owner(t[x], keys[i]), 0);
		push_and_compare(t[x], rules[x], params[x], refs, NK, LEN, 6);
		for (int k = 0; k < NK; k++)
			free(refs[k].v);
	}
}

static void test_custom_rule_registered_under_another_name_fails_on_every_node(void **state)
{
	struct job *j = start_job(state, CHILD_OTHER_NAME, PS_RULE_CUSTOM + 3);
	ps_table *t[3];
	assert_int_equal(create_tables(j->w, j->custom, t), PS_ERULE);
	assert_int_equal(child_result(j), PS_ERULE);
}

static void test_custom_rule_unknown_to_one_node_fails_on_every_node(void **state)
{
	struct job *j = start_job(state, CHILD_UNREGISTERED, PS_RULE_CUSTOM + 4);
	ps_table *t[3];
	assert_int_equal(create_tables(j->w, j->custom, t), PS_ERULE);
	assert_int_equal(child_result(j), PS_ERULE);
}

#define T1(f) cmocka_unit_test_setup_teardown(f, setup_world, teardown_world)
#define T2(f) cmocka_unit_test_setup_teardown(f, setup_job, teardown_job)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T1(test_sum_is_the_default_and_adds),
		T1(test_assign_stores_the_last_update),
		T1(test_sgd_matches_the_reference_bitwise),
		T1(test_adagrad_matches_the_reference_bitwise),
		T1(test_adam_matches_the_reference_bitwise),
		T1(test_adam_counts_steps_per_key),
		T1(test_rule_state_lives_after_the_values),
		T1(test_assign_sync_sets_values_and_resets_the_state),
		T1(test_bad_rules_and_parameters_are_rejected_and_change_nothing),
		T1(test_rule_register_checks_its_arguments),
		T1(test_custom_rule_applies_with_its_state),
		T1(test_unregistered_custom_rule_is_PS_ERULE),
		T2(test_rule_state_survives_localize),
		T2(test_custom_rule_registered_under_another_name_fails_on_every_node),
		T2(test_custom_rule_unknown_to_one_node_fails_on_every_node),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
