/*
 * rules.c - server-side update rules: what a push does to a key's values.
 *
 * Invariants
 *   - A rule runs inside push_one (kv.c) with the key's slot locked (KV2):
 *     it is the only writer of the slot's values and state, and its relaxed
 *     stores are published by the unlock's release exactly as a sum's are.
 *     PS_RULE_SUM never comes here: kv.c keeps its add as the fast path.
 *   - State lives in the slot right after the values, words
 *     v[value_len .. value_len + state_len).  It is 0 when a key's slot is
 *     first written (table.c), moves with the values on relocation (kv.c
 *     copies value_len + state_len words), and pull never copies it.
 *   - Built-in rules are the same code in every process.  Custom rules
 *     live in a per-process registry (id -> function, name, state sizes);
 *     the table descriptor records the id and a fingerprint of (name,
 *     sizes), and every process resolves the id in its own registry at
 *     table creation and must find the same fingerprint, else the table
 *     fails on every node with PS_ERULE.  A registration never changes
 *     once made, so the function a table cached stays valid.
 *   - Float arithmetic is single precision in the order psmem.h documents,
 *     so a sequential reference written the same way is bitwise equal.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "segment.h"
#include "util.h"
#include "world.h"
#include "rules.h"
#include "tctx.h"

#define NAME_MAX_LEN 31
#define MAX_STATE_PER_VALUE 4
#define MAX_STATE_PER_KEY 16
#define STACK_FLOATS 1024 /* custom rules copy slots of up to this many floats on the stack */

struct custom {
	ps_rule_fn fn;
	char name[NAME_MAX_LEN + 1];
	uint32_t per_value, per_key;
	uint64_t fp;
};

/* Registered custom rules: written under reg_lock, never changed once
 * fn is set; read under reg_lock (table creation). */
static struct custom registry[PS_RULE_MAX_CUSTOM];
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;

static uint64_t fingerprint(const char *name, uint32_t per_value, uint32_t per_key)
{
	uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a over the name */
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		h = (h ^ *p) * 0x100000001b3ULL;
	return ps__mix64(h ^ ((uint64_t)per_value << 32 | per_key));
}

static bool is_custom(uint32_t id)
{
	return id >= PS_RULE_CUSTOM && id < PS_RULE_CUSTOM + PS_RULE_MAX_CUSTOM;
}

int ps_rule_register(uint32_t id, ps_rule_fn fn, const char *name, uint32_t state_per_value,
		     uint32_t state_per_key)
{
	if (!is_custom(id) || !fn || !name || !*name || strlen(name) > NAME_MAX_LEN ||
	    state_per_value > MAX_STATE_PER_VALUE || state_per_key > MAX_STATE_PER_KEY)
		return -EINVAL;
	struct custom c = {.fn = fn, .per_value = state_per_value, .per_key = state_per_key,
			   .fp = fingerprint(name, state_per_value, state_per_key)};
	strcpy(c.name, name);
	int rc = 0;
	pthread_mutex_lock(&reg_lock);
	struct custom *r = &registry[id - PS_RULE_CUSTOM];
	if (!r->fn)
		*r = c;
	else if (r->fn != fn || r->fp != c.fp || strcmp(r->name, name) != 0)
		rc = -EEXIST;
	pthread_mutex_unlock(&reg_lock);
	return rc;
}

static bool positive(float x)
{
	return isfinite(x) && x > 0;
}

static bool unit(float x)
{
	return x >= 0 && x < 1;
}

/* Parameters p[used..4) of a built-in rule must be 0. */
static bool unused_zero(const float *p, int used)
{
	for (int i = used; i < 4; i++)
		if (p[i] != 0)
			return false;
	return true;
}

int ps__rule_check(const ps_table_opts *o)
{
	const float *p = o->rule_params;
	if (o->rule != PS_RULE_SUM && (o->flags & PS_HOGWILD))
		return PS_EHOGWILD;
	switch (o->rule) {
	case PS_RULE_SUM:
	case PS_RULE_ASSIGN:
		return unused_zero(p, 0) ? 0 : -EINVAL;
	case PS_RULE_SGD:
		return positive(p[0]) && unused_zero(p, 1) ? 0 : -EINVAL;
	case PS_RULE_ADAGRAD:
		return positive(p[0]) && positive(p[1]) && unused_zero(p, 2) ? 0 : -EINVAL;
	case PS_RULE_ADAM:
		return positive(p[0]) && unit(p[1]) && unit(p[2]) && positive(p[3]) ? 0 : -EINVAL;
	default:
		if (!is_custom(o->rule))
			return -EINVAL;
		for (int i = 0; i < 4; i++)
			if (!isfinite(p[i]))
				return -EINVAL;
		return 0;
	}
}

int ps__rule_resolve(const ps_table_opts *o, struct ps__rule_info *out)
{
	memset(out, 0, sizeof *out);
	uint32_t len = o->value_len;
	switch (o->rule) {
	case PS_RULE_ADAGRAD:
		out->state_len = len; /* accumulator */
		return 0;
	case PS_RULE_ADAM:
		out->state_len = 2 * len + 1; /* m, s, then the step (uint32) */
		return 0;
	default:
		if (!is_custom(o->rule))
			return 0;
	}
	int rc = 0;
	pthread_mutex_lock(&reg_lock);
	const struct custom *c = &registry[o->rule - PS_RULE_CUSTOM];
	if (c->fn) {
		out->state_len = c->per_value * len + c->per_key;
		out->fp = c->fp;
		out->fn = c->fn;
	} else {
		rc = PS_ERULE;
	}
	pthread_mutex_unlock(&reg_lock);
	return rc;
}

ps_rule_fn ps__rule_fn(uint32_t rule)
{
	if (!is_custom(rule))
		return NULL;
	pthread_mutex_lock(&reg_lock);
	ps_rule_fn fn = registry[rule - PS_RULE_CUSTOM].fn;
	pthread_mutex_unlock(&reg_lock);
	return fn;
}

/* ------------------------------------------------------------- applying */

/* Slot words as floats; relaxed: the slot lock (KV2) orders them. */
static inline float get(struct ps__slot *sl, uint32_t i)
{
	uint32_t b = atomic_load_explicit(&sl->v[i], memory_order_relaxed);
	float f;
	memcpy(&f, &b, sizeof f);
	return f;
}

static inline void put(struct ps__slot *sl, uint32_t i, float f)
{
	uint32_t b;
	memcpy(&b, &f, sizeof b);
	atomic_store_explicit(&sl->v[i], b, memory_order_relaxed);
}

static void assign(struct ps__slot *sl, const float *u, uint32_t len, uint32_t state_len)
{
	for (uint32_t j = 0; j < len; j++)
		put(sl, j, u[j]);
	for (uint32_t j = 0; j < state_len; j++) /* relaxed: under the slot lock (KV2) */
		atomic_store_explicit(&sl->v[len + j], 0, memory_order_relaxed);
}

static void sgd(struct ps__slot *sl, const float *u, uint32_t len, const float *p)
{
	const float lr = p[0];
	for (uint32_t j = 0; j < len; j++)
		put(sl, j, get(sl, j) + -lr * u[j]);
}

static void adagrad(struct ps__slot *sl, const float *u, uint32_t len, const float *p)
{
	const float lr = p[0], eps = p[1];
	for (uint32_t j = 0; j < len; j++) {
		float a = get(sl, len + j) + u[j] * u[j];
		put(sl, len + j, a);
		put(sl, j, get(sl, j) + -lr * u[j] / (sqrtf(a) + eps));
	}
}

static void adam(struct ps__slot *sl, const float *u, uint32_t len, const float *p)
{
	const float lr = p[0], b1 = p[1], b2 = p[2], eps = p[3];
	/* the step count of this key: a uint32 in the last state word;
	 * relaxed: under the slot lock (KV2) */
	uint32_t t = atomic_load_explicit(&sl->v[3 * len], memory_order_relaxed) + 1;
	atomic_store_explicit(&sl->v[3 * len], t, memory_order_relaxed);
	const float c1 = 1.0f - powf(b1, (float)t), c2 = 1.0f - powf(b2, (float)t);
	for (uint32_t j = 0; j < len; j++) {
		float m = b1 * get(sl, len + j) + (1.0f - b1) * u[j];
		float s = b2 * get(sl, 2 * len + j) + (1.0f - b2) * u[j] * u[j];
		put(sl, len + j, m);
		put(sl, 2 * len + j, s);
		put(sl, j, get(sl, j) + -lr * (m / c1) / (sqrtf(s / c2) + eps));
	}
}

/* A custom function works on private copies of the values and state: the
 * slot's words are atomics (seqlock readers race with the writer). */
static void custom(const ps_table *t, struct ps__slot *sl, const float *u)
{
	const uint32_t len = t->value_len, n = t->value_len + t->state_len;
	float stack[STACK_FLOATS];
	float *buf = n <= STACK_FLOATS ? stack : malloc(n * sizeof *buf);
	if (!buf) {
		/* under a slot lock with no way to undo: nothing sane is left */
		fprintf(stderr, "psmem: %s:%d: %s: out of memory applying a custom rule\n", __FILE__, __LINE__,
			__func__);
		abort();
	}
	for (uint32_t j = 0; j < n; j++)
		buf[j] = get(sl, j);
	t->rule_fn(buf, buf + len, u, len, t->rule_params);
	for (uint32_t j = 0; j < n; j++)
		put(sl, j, buf[j]);
	if (buf != stack)
		free(buf);
}

void ps__rule_apply(const ps_table *t, struct ps__slot *sl, const float *upd)
{
	const uint32_t len = t->value_len;
	switch (t->rule) {
	case PS_RULE_ASSIGN:
		assign(sl, upd, len, t->state_len);
		break;
	case PS_RULE_SGD:
		sgd(sl, upd, len, t->rule_params);
		break;
	case PS_RULE_ADAGRAD:
		adagrad(sl, upd, len, t->rule_params);
		break;
	case PS_RULE_ADAM:
		adam(sl, upd, len, t->rule_params);
		break;
	default:
		custom(t, sl, upd);
		break;
	}
}

/*
 * An assignment is a push through a private copy of the table handle whose
 * rule is PS_RULE_ASSIGN (which also zeroes the state) and which always
 * takes the slot lock: the same per-key protocol as every push.
 */
int ps_assign_sync(ps_table *t, const ps_key *keys, size_t n, const float *values)
{
	if (!t || t->magic != PS__TABLE_MAGIC)
		return PS_ETABLE;
	/* across hosts the PUSH frames say ASSIGN (bridge_link.c) */
	struct ps_table shadow = *t;
	shadow.rule = PS_RULE_ASSIGN;
	shadow.flags &= ~PS_HOGWILD;
	ps__table_pub_bind(t->w, &shadow); /* its prefix follows: no inline push (TC1) */
	return ps_push_sync(&shadow, keys, n, values);
}
