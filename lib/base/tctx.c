/*
 * tctx.c - the library's side of the inline fast path (psmem_static.h):
 * the public prefix of each table handle, each thread's context, and the
 * per-thread statistics counters.
 *
 * Invariants
 *   (TC1) A table's prefix (ps_table_pub) is written once, by
 *        ps__table_bind, before the handle is returned; inl is 0 on a
 *        multi-host job (every key may need the link) and for a table with
 *        PS_COUNT_ACCESS; PS__INL_PUSH needs the sum rule.  The inline code
 *        does exactly kv.c's per-key protocol for a slot key and hands
 *        anything else to the library, so KV1-KV6 are kv.c's.
 *   (TC2) Counter slot i of node n (ps__node.tstats[i]) has at most one
 *        writer at a time: the thread of n's process that holds it in
 *        slots_used.  A thread takes a slot at registration and gives it
 *        back when it exits; the mutex orders the last writes of one holder
 *        before the first of the next.  Counters are never reset (a new
 *        incarnation of the node continues them), so sums only grow.
 *   (TC3) A thread without a slot (more than PS__MAX_TSTATS at once) has a
 *        zero context: nothing of it goes inline, and its counts go to the
 *        node's shared counters (atomic adds).
 */
#include <pthread.h>
#include <string.h>

#include "segment.h"
#include "util.h"
#include "world.h"
#include "tctx.h"

/* The inline header's copies of the segment's words and layout. */
_Static_assert(offsetof(struct ps_table, pub) == 0, "the public prefix must start ps_table");
_Static_assert(PS__SI_LOC_SLOW == (PS__LOC_REPL | PS__LOC_REMOTE), "location bits");
_Static_assert((PS__LOC_MOVING & PS__LOC_REMOTE) == 0 && PS__LOC_IS_REMOTE(PS__LOC_MAKE_MOVING(1)),
	       "a MOVING word is REMOTE");
_Static_assert(PS__SI_LOC_OFF(PS__LOC_MAKE(3, 4096)) == 4096 && PS__SI_LOC_OWNER(PS__LOC_MAKE(3, 64)) == 3,
	       "location word fields");
_Static_assert(PS__SI_SEQ_LOCKED == PS__SEQ_LOCKED && PS__SI_SEQ_MOVED == PS__SEQ_MOVED &&
		       PS__SI_SEQ_FREED == PS__SEQ_FREED && PS__SI_SEQ_VER1 == PS__SEQ_VER1,
	       "seq bits");
_Static_assert(offsetof(struct ps__slot, v) == PS__SI_SLOT_HDR && offsetof(struct ps__slot, key) == 8,
	       "slot layout");
_Static_assert(sizeof(struct ps_tstat) == PS__CL, "one cache line per thread's counters");

__thread struct ps_tctx ps__tctx __attribute__((tls_model("initial-exec")));

static pthread_mutex_t slots_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t slots_used[PS__MAX_TSTATS / 64]; /* under slots_lock (TC2) */
static __thread int my_slot = -1;

void ps__table_pub_bind(ps_world *w, ps_table *t)
{
	struct ps_table_pub *p = &t->pub;
	p->num_keys = t->num_keys;
	p->loc = (uint64_t *)(void *)t->loc;
	p->base = w->seg.base;
	p->value_len = t->value_len;
	uint32_t inl = 0;
	if (!w->link && !(t->flags & PS_COUNT_ACCESS)) {
		inl = PS__INL_PULL;
		if (t->rule == PS_RULE_SUM)
			inl |= PS__INL_PUSH | ((t->flags & PS_HOGWILD) ? PS__INL_HOGWILD : 0);
	}
	p->inl = inl;
	p->magic = PS__PUB_MAGIC;
}

void ps__tctx_enter(ps_world *w)
{
	int slot = -1;
	pthread_mutex_lock(&slots_lock);
	for (int i = 0; i < PS__MAX_TSTATS && slot < 0; i++)
		if (!(slots_used[i / 64] & (1ULL << (i % 64)))) {
			slots_used[i / 64] |= 1ULL << (i % 64);
			slot = i;
		}
	pthread_mutex_unlock(&slots_lock);
	my_slot = slot;
	if (slot < 0) { /* TC3 */
		memset(&ps__tctx, 0, sizeof ps__tctx);
		return;
	}
	ps__tctx.st = &w->me->tstats[slot];
	ps__tctx.base = w->seg.base;
	ps__tctx.node = w->node;
	ps__tctx.holder = ((uint64_t)w->node + 1) << PS__SEQ_HOLDER_SHIFT;
}

void ps__tctx_exit(void)
{
	memset(&ps__tctx, 0, sizeof ps__tctx);
	if (my_slot < 0)
		return;
	pthread_mutex_lock(&slots_lock);
	slots_used[my_slot / 64] &= ~(1ULL << (my_slot % 64));
	pthread_mutex_unlock(&slots_lock);
	my_slot = -1;
}

void ps__inl_miss(const struct ps_table_pub *p, uint64_t s, int stale)
{
	const ps_table *t = (const ps_table *)(const void *)p;
	struct ps__stats *st = &t->w->me->stats;
	/* relaxed: counters (rare events: the shared line is fine) */
	if (stale || (s & PS__SEQ_FREED))
		atomic_fetch_add_explicit(&st->stale_reads, 1, memory_order_relaxed);
	else
		atomic_fetch_add_explicit(&st->retries, 1, memory_order_relaxed);
}

void ps__count_keys(ps_world *w, bool pull, uint64_t n, uint64_t local, uint64_t repl)
{
	struct ps_tstat *ts = ps__tctx.st;
	if (ts && ps__tctx.base == w->seg.base) {
		ps__tstat_add(pull ? &ts->pulls : &ts->pushes, 1);
		ps__tstat_add(pull ? &ts->keys_pulled : &ts->keys_pushed, n);
		if (n != local) /* local: the rest (summed) */
			ps__tstat_add(&ts->remote_keys, n - local);
		if (repl)
			ps__tstat_add(&ts->repl_keys, repl);
		return;
	}
	struct ps__stats *st = &w->me->stats; /* TC3; relaxed: counters */
	atomic_fetch_add_explicit(pull ? &st->pulls : &st->pushes, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(pull ? &st->keys_pulled : &st->keys_pushed, n, memory_order_relaxed);
	atomic_fetch_add_explicit(&st->local_keys, local, memory_order_relaxed);
	atomic_fetch_add_explicit(&st->remote_keys, n - local, memory_order_relaxed);
	if (repl)
		atomic_fetch_add_explicit(&st->repl_keys, repl, memory_order_relaxed);
}

#define LD(x) atomic_load_explicit(&(x), memory_order_relaxed)
#define TLD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)

const struct ps__stats *ps__node_stats(const struct ps__node *n)
{
	static __thread struct ps__stats sum;
	struct ps__stats *o = &sum;
	const struct ps__stats *s = &n->stats;
	/* relaxed: a snapshot of counters (they order nothing) */
	uint64_t pulls = LD(s->pulls), pushes = LD(s->pushes), kpl = LD(s->keys_pulled), kps = LD(s->keys_pushed);
	uint64_t loc = LD(s->local_keys), rem = LD(s->remote_keys), repl = LD(s->repl_keys);
	for (int i = 0; i < PS__MAX_TSTATS; i++) {
		const struct ps_tstat *t = &n->tstats[i];
		pulls += TLD(t->pulls);
		pushes += TLD(t->pushes);
		uint64_t tpl = TLD(t->keys_pulled), tps = TLD(t->keys_pushed), trem = TLD(t->remote_keys);
		kpl += tpl;
		kps += tps;
		rem += trem;
		loc += tpl + tps - trem; /* every key a thread counts is local or remote */
		repl += TLD(t->repl_keys);
	}
	atomic_init(&o->pulls, pulls);
	atomic_init(&o->pushes, pushes);
	atomic_init(&o->keys_pulled, kpl);
	atomic_init(&o->keys_pushed, kps);
	atomic_init(&o->local_keys, loc);
	atomic_init(&o->remote_keys, rem);
	atomic_init(&o->repl_keys, repl);
	atomic_init(&o->relocations, LD(s->relocations));
	atomic_init(&o->retries, LD(s->retries));
	atomic_init(&o->stale_reads, LD(s->stale_reads));
	atomic_init(&o->localize_reqs, LD(s->localize_reqs));
	atomic_init(&o->grace_periods, LD(s->grace_periods));
	atomic_init(&o->slots_freed, LD(s->slots_freed));
	atomic_init(&o->repl_rounds, LD(s->repl_rounds));
	atomic_init(&o->repl_last_ns, LD(s->repl_last_ns));
	atomic_init(&o->samples, LD(s->samples));
	atomic_init(&o->sample_fallbacks, LD(s->sample_fallbacks));
	return o;
}
