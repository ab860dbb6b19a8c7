/*
 * table.c - collective table creation and initial placement.
 *
 * Invariants
 *   - Tables are numbered by the order of ps_table_create calls in each
 *     process; every node must create the same tables in the same order.
 *   - The first node to reach descriptor i (CAS EMPTY -> CREATING under
 *     hdr->create_lock) lays it out: location table in the shared region,
 *     one pool per node.  It stores READY with release; the others acquire
 *     READY and compare their options (PS_EMISMATCH when they differ).
 *   - Each node writes the slots of the keys its placement gives it, each
 *     slot complete before its location word is stored with release; then
 *     all nodes meet at the node barrier, so every key is readable on
 *     return on every node.
 *   - Initial values are a function of (seed, key, index) only, so they do
 *     not depend on the number of nodes or on the placement.  A slot's
 *     update-rule state (rules.c) starts at 0.
 *   - The update rule is resolved in every process: one that cannot
 *     resolve it, or resolves it to another fingerprint than the creator
 *     recorded, still takes part in the creation and makes it fail on
 *     every node with PS_ERULE (no node is left waiting at the barrier).
 *   - A restarted node (restart.c) re-runs its table creations: a table
 *     whose creation barrier its predecessor had passed is only bound (its
 *     keys and replica slots are in place and may have been updated since);
 *     one it had not passed has its node's keys written again (slots of a
 *     first, cut-short attempt leak).  A peer that died is waited for in
 *     restart mode.
 */
#include <errno.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <string.h>

#include "segment.h"
#include "util.h"
#include "world.h"
#include "arena.h"
#include "replica.h"
#include "table.h"
#include "tctx.h"
#include "barrier.h"
#include "rules.h"
#include "lock.h"

#define MAX_VALUE_LEN 65536u

void ps_table_opts_init(ps_table_opts *o, uint64_t num_keys, uint32_t value_len)
{
	memset(o, 0, sizeof *o);
	o->num_keys = num_keys;
	o->value_len = value_len;
	o->init = PS_INIT_ZERO;
	o->placement = PS_PLACE_RANGE;
	o->rule = PS_RULE_SUM;
}

/* floats: the values and the update rule's state */
static uint32_t slot_size_for(uint32_t floats)
{
	uint64_t sz = 16 + 4ULL * floats;
	return (uint32_t)(sz < PS__CL ? PS__ALIGN(sz, 16) : PS__ALIGN(sz, PS__CL));
}

/* Default pool capacity: the whole table, plus headroom for slots that wait
 * for a grace period after their key moved away (virtual: costs memory only
 * when used). */
static uint64_t slots_per_node(const ps_table_opts *o)
{
	uint64_t base = o->slots_per_node ? o->slots_per_node : o->num_keys + o->num_keys / 4 + 4096;
	return base + 2ULL * o->repl_max; /* + replica and delta slots (replica.c) */
}

static int node_of(const struct ps__tdesc *d, ps_key k, int nnodes)
{
	if (d->placement == PS_PLACE_HASH)
		return (int)(ps__mix64(k ^ 0x5bd1e995ULL) % (uint64_t)nnodes);
	return (int)((unsigned __int128)k * (unsigned)nnodes / d->num_keys);
}

static float init_value(const struct ps__tdesc *d, ps_key k, uint32_t j)
{
	switch (d->init) {
	case PS_INIT_CONST:
		return d->init_a;
	case PS_INIT_UNIFORM: {
		uint64_t r = ps__mix64(d->seed * 0x9e3779b97f4a7c15ULL ^ ps__mix64(k * d->value_len + j));
		double u = (double)(r >> 40) / (double)(1ULL << 24); /* [0, 1) */
		return (float)((2.0 * u - 1.0) * d->init_a);
	}
	default:
		return 0.0f;
	}
}

_Static_assert(PS_MAX_TABLES == PS__MAX_TABLES, "psmem.h documents the segment's table limit");

static int validate(const ps_table_opts *o)
{
	if (!o || o->num_keys == 0 || o->value_len == 0 || o->value_len > MAX_VALUE_LEN)
		return -EINVAL;
	if (o->num_keys > (1ULL << 40))
		return -EINVAL;
	if ((unsigned)o->init > PS_INIT_UNIFORM || (unsigned)o->placement > PS_PLACE_HASH)
		return -EINVAL;
	if (!isfinite(o->init_a)) /* NaN or infinite values from the start */
		return -EINVAL;
	if (o->flags & ~(PS_HOGWILD | PS_COUNT_ACCESS | PS_TRANSIENT | PS_WIRE_KEYCACHE | PS_WIRE_COMPRESS))
		return -EINVAL;
	if (o->repl_max > o->num_keys || !isfinite(o->repl_rate) || o->repl_rate < 0 || o->repl_rate > 1e6)
		return -EINVAL;
	return ps__rule_check(o);
}

/* The create lock (lock.c).  A holder that died inside left at worst a
 * leaked piece of the shared region or of an arena (bumps are single
 * stores) and a descriptor in CREATING, which its replacement takes over
 * (claim_layout): nothing to repair. */
static void lock_create(ps_world *w)
{
	if (ps__lock(&w->seg.hdr->create_lock) == 1)
		ps__lock_consistent(&w->seg.hdr->create_lock);
	PS__KILL_POINT(PS__KP_CREATE_LOCKED);
}

static void unlock_create(ps_world *w)
{
	ps__unlock(&w->seg.hdr->create_lock);
}

static void set_rule(struct ps__tdesc *d, const ps_table_opts *o, const struct ps__rule_info *ri)
{
	d->state_len = ri->state_len;
	d->rule = o->rule;
	d->rule_fp = ri->fp;
	memcpy(d->rule_params, o->rule_params, sizeof d->rule_params);
}

static int layout(ps_world *w, int id, struct ps__tdesc *d, const ps_table_opts *o, const struct ps__rule_info *ri)
{
	set_rule(d, o, ri);
	d->value_len = o->value_len;
	d->slot_size = slot_size_for(o->value_len + ri->state_len);
	d->flags = o->flags;
	d->init = (uint32_t)o->init;
	d->placement = (uint32_t)o->placement;
	d->init_a = o->init_a;
	d->seed = o->seed;
	d->num_keys = o->num_keys;
	d->slots_per_node = slots_per_node(o);
	d->repl_max = o->repl_max;
	d->repl_rate = o->repl_rate;
	/* LO1: the replication locks, before anyone can see the table */
	ps__lock_init(&d->repl_lock);
	ps__lock_init(&d->repl_xlock);
	lock_create(w);
	int rc = ps__shared_alloc(&w->seg, o->num_keys * sizeof(uint64_t), &d->loc_off);
	if (rc == 0)
		rc = ps__pool_reserve(w, id, d->slots_per_node, d->slot_size);
	if (rc == 0 && o->repl_max) {
		/* rprim, rkey (u64 each), rfree (u32); the region is zero-filled */
		rc = ps__shared_alloc(&w->seg, (uint64_t)o->repl_max * 20, &d->repl_off);
		if (rc == 0) {
			uint32_t *rfree = (uint32_t *)ps__at(&w->seg, d->repl_off + (uint64_t)o->repl_max * 16);
			for (uint32_t i = 0; i < o->repl_max; i++)
				rfree[i] = o->repl_max - 1 - i; /* pop order 0, 1, 2 ... */
			d->repl_nfree = o->repl_max;
		}
	}
	if (rc == 0 && (o->flags & PS_COUNT_ACCESS))
		rc = ps__shared_alloc(&w->seg, o->num_keys * sizeof(uint32_t), &d->count_off);
	unlock_create(w);
	return rc;
}

static int same_opts(const struct ps__tdesc *d, const ps_table_opts *o)
{
	uint64_t spn = slots_per_node(o);
	return d->num_keys == o->num_keys && d->value_len == o->value_len && d->flags == o->flags &&
	       d->init == (uint32_t)o->init && d->placement == (uint32_t)o->placement &&
	       memcmp(&d->init_a, &o->init_a, sizeof d->init_a) == 0 && d->seed == o->seed &&
	       d->slots_per_node == spn && d->repl_max == o->repl_max &&
	       memcmp(&d->repl_rate, &o->repl_rate, sizeof d->repl_rate) == 0 && d->rule == o->rule &&
	       memcmp(d->rule_params, o->rule_params, sizeof d->rule_params) == 0;
}

/* This process's view of the rule against the creator's (rules.c). */
static int same_rule(const struct ps__tdesc *d, int resolved, const struct ps__rule_info *ri)
{
	if (resolved)
		return resolved;
	return d->rule_fp == ri->fp && d->state_len == ri->state_len ? 0 : PS_ERULE;
}

/* Waits for READY; PS_EDEAD if a node dies (unless it will be restarted). */
static int wait_ready(ps_world *w, int id, struct ps__tdesc *d)
{
	ps__wait_set(w, PS__WAIT_CREATE, (uint64_t)id, 0);
	int rc = 0;
	unsigned spins = 0;
	bool restart = ps__restart_mode(&w->seg);
	/* acquire: pairs with the creator's release of READY */
	while (atomic_load_explicit(&d->state, memory_order_acquire) != PS__T_READY) {
		if (++spins % 1024 == 0) {
			for (int i = 0; i < w->nnodes && !restart; i++) {
				uint32_t st = ps__node_kind(&w->seg, i);
				if (st == PS__NODE_DEAD || (st == PS__NODE_ALIVE && !ps__node_alive(&w->seg, i)))
					rc = PS_EDEAD;
			}
			if (rc)
				break;
		}
		sched_yield();
	}
	ps__wait_clear(w);
	return rc;
}

/* Writes the slots of this node's keys; returns 0 or PS_EFULL.  Range
 * placement gives node i the keys [ceil(i*K/N), ceil((i+1)*K/N)), exactly
 * those with k*N/K == i, so no per-key test is needed.  With several hosts
 * the same holds within this host's keys [h0, h1); node 0 marks the other
 * keys REMOTE. */
/* The key partition over hosts: host h is the home of keys
 * [ceil(h K / H), ceil((h+1) K / H)). */
void ps__host_keys(const ps_world *w, uint64_t num_keys, uint64_t *k0, uint64_t *k1)
{
	const unsigned __int128 K = num_keys, H = (unsigned)w->home_hosts, h = (unsigned)w->host;
	if (w->host >= w->home_hosts) { /* a joiner homes no key (EL2) */
		*k0 = *k1 = num_keys;
		return;
	}
	*k0 = (uint64_t)((h * K + H - 1) / H);
	*k1 = (uint64_t)(((h + 1) * K + H - 1) / H);
}

int ps__home_of(const ps_world *w, uint64_t num_keys, ps_key k)
{
	/* the initial host count, never the ranks in use: homes do not move
	 * when hosts join (EL2) */
	return (int)((unsigned __int128)k * (unsigned)w->home_hosts / num_keys);
}

/* Node 0 of a multi-host job: keys outside [k0, k1) are at their home. */
static void mark_remote(ps_world *w, ps_table *t, uint64_t k0, uint64_t k1)
{
	for (uint64_t k = 0; k < t->num_keys; k++) {
		if (k == k0) {
			k = k1 - 1;
			continue;
		}
		/* relaxed: the table's node barrier publishes it */
		atomic_store_explicit(&t->loc[k], PS__LOC_MAKE_REMOTE(ps__home_of(w, t->num_keys, k)),
				      memory_order_relaxed);
	}
}

static int init_keys(ps_world *w, ps_table *t)
{
	const struct ps__tdesc *d = t->d;
	const uint64_t N = (uint64_t)w->nnodes, me = (uint64_t)w->node;
	const bool range = d->placement == PS_PLACE_RANGE;
	uint64_t h0, h1;
	ps__host_keys(w, d->num_keys, &h0, &h1); /* multi-host hook */
	if (w->nhosts > 1 && w->node == 0)
		mark_remote(w, t, h0, h1);
	const uint64_t K = h1 - h0;
	uint64_t k0 = h0, k1 = h1, mine = 0;
	if (range) {
		k0 = h0 + (me * K + N - 1) / N;
		k1 = h0 + ((me + 1) * K + N - 1) / N;
		mine = k1 - k0;
	} else {
		for (uint64_t k = h0; k < h1; k++)
			mine += node_of(d, k, w->nnodes) == w->node;
	}
	if (mine == 0)
		return 0;
	uint64_t off;
	int rc = ps__slot_alloc_run(w, t->id, w->node, t->slot_size, mine, &off);
	if (rc)
		return rc;
	for (uint64_t k = k0; k < k1; k++) {
		if (!range && node_of(d, k, w->nnodes) != w->node)
			continue;
		struct ps__slot *sl = ps__at(&w->seg, off);
		atomic_store_explicit(&sl->seq, 0, memory_order_relaxed);
		atomic_store_explicit(&sl->key, k, memory_order_relaxed);
		for (uint32_t j = 0; j < d->value_len; j++) {
			float f = init_value(d, k, j);
			uint32_t bits;
			memcpy(&bits, &f, sizeof bits);
			atomic_store_explicit(&sl->v[j], bits, memory_order_relaxed);
		}
		for (uint32_t j = 0; j < d->state_len; j++)
			atomic_store_explicit(&sl->v[d->value_len + j], 0, memory_order_relaxed);
		/* release: the slot is complete before its location is seen */
		atomic_store_explicit(&t->loc[k], PS__LOC_MAKE(w->node, off), memory_order_release);
		off += t->slot_size;
	}
	return 0;
}

/*
 * The first node to reach a descriptor lays the table out.  CREATING
 * carries the creator's node + 1 in bits 8..15, so a restarted node whose
 * dead predecessor was laying it out (the others wait for READY) takes the
 * layout over: the predecessor's create lock was freed (restart.c), what it
 * had allocated leaks, and nobody has used the pools yet.
 */
static bool claim_layout(ps_world *w, struct ps__tdesc *d)
{
	uint32_t mine = PS__T_CREATING | ((uint32_t)(w->node + 1) << 8), cur = PS__T_EMPTY;
	/* acquire: nothing to see yet; we own the descriptor after it */
	if (atomic_compare_exchange_strong_explicit(&d->state, &cur, mine, memory_order_acquire, memory_order_acquire))
		return true;
	return w->restarted && cur == mine;
}

static void set_error(struct ps__tdesc *d, int rc)
{
	int32_t zero = 0;
	/* relaxed: the node barrier that follows orders it */
	atomic_compare_exchange_strong_explicit(&d->error, &zero, rc, memory_order_relaxed, memory_order_relaxed);
}

ps_table *ps_table_create(ps_world *w, const ps_table_opts *o, int *err)
{
	ps_table *t = NULL;
	int rc = ps__world_current(w) ? validate(o) : -EINVAL;
	if (rc)
		goto out;
	struct ps__rule_info ri;
	int resolved = ps__rule_resolve(o, &ri); /* PS_ERULE fails collectively */
	ps__thread_enter(w);
	pthread_mutex_lock(&w->tables_lock);
	int id = w->ntables;
	if (id >= PS__MAX_TABLES) {
		pthread_mutex_unlock(&w->tables_lock);
		rc = PS_ETOOMANY;
		goto out;
	}
	w->ntables++;
	pthread_mutex_unlock(&w->tables_lock);

	struct ps__tdesc *d = ps__tdesc_at(&w->seg, id);
	if (claim_layout(w, d)) {
		if (w->die_in_layout)
			raise(SIGKILL); /* PSMEM_DEBUG_DIE_IN_LAYOUT: the restart test */
		rc = resolved ? resolved : layout(w, id, d, o, &ri);
		if (rc)
			set_error(d, rc);
		/* release: descriptor fields and pools visible to acquirers */
		atomic_store_explicit(&d->state, PS__T_READY, memory_order_release);
	} else {
		rc = wait_ready(w, id, d);
		if (rc == 0 && !same_opts(d, o))
			rc = PS_EMISMATCH;
		if (rc == 0)
			rc = same_rule(d, resolved, &ri);
		if (rc && rc != PS_EDEAD)
			set_error(d, rc);
	}
	if (rc == 0 && atomic_load_explicit(&d->error, memory_order_relaxed) == 0) {
		t = ps__alloc(w, sizeof *t);
		if (!t) {
			rc = -ENOMEM;
			set_error(d, rc);
		}
	}
	if (t) {
		ps__table_bind(w, id, t);
		t->rule_fn = ri.fn; /* this process's resolution, checked above */
		if (!ps__node_replaying(w)) { /* else its keys are in place already */
			rc = init_keys(w, t);
			if (rc == 0)
				rc = ps__replica_init_node(w, t);
		}
		if (rc)
			set_error(d, rc);
	}
	int brc = ps__node_barrier(w, NULL);
	/* relaxed: the barrier orders every node's set_error before this */
	int first = atomic_load_explicit(&d->error, memory_order_relaxed);
	if (brc)
		rc = brc;
	else if (first)
		rc = first; /* every node reports the collective's first error */
	/* multi-host hook: every host has its keys in place, same shape */
	if (w->net && (brc = w->net->table_created(w, t, id, d, rc)) != 0 && rc == 0)
		rc = brc;
	if (rc == 0 && t) {
		/* published once complete: the service thread scans tables[]
		 * (rounds, reclamation); nothing of it can be retired before */
		pthread_mutex_lock(&w->tables_lock);
		w->tables[id] = t;
		pthread_mutex_unlock(&w->tables_lock);
	}
	if (rc && t) {
		t->magic = 0;
		ps__free(w, t);
		t = NULL;
	}
out:
	if (err)
		*err = rc;
	return t;
}

void ps__table_bind(ps_world *w, int id, ps_table *t)
{
	struct ps__tdesc *d = ps__tdesc_at(&w->seg, id);
	memset(t, 0, sizeof *t);
	t->magic = PS__TABLE_MAGIC;
	t->id = id;
	t->w = w;
	t->d = d;
	t->loc = ps__at(&w->seg, d->loc_off);
	t->num_keys = d->num_keys;
	t->value_len = d->value_len;
	t->slot_size = d->slot_size;
	t->flags = d->flags;
	t->state_len = d->state_len;
	t->rule = d->rule;
	t->rule_fn = ps__rule_fn(d->rule); /* NULL until registered here */
	memcpy(t->rule_params, d->rule_params, sizeof t->rule_params);
	ps__replica_bind(w, t); /* counts, rprim, rkey, rfree */
	ps__table_pub_bind(w, t); /* tctx.c: the inline path's prefix */
}

uint64_t ps_table_num_keys(const ps_table *t) { return t ? t->num_keys : 0; }
uint32_t ps_table_value_len(const ps_table *t) { return t ? t->value_len : 0; }
int ps_table_id(const ps_table *t) { return t ? t->id : -EINVAL; }
