/* PRIVATE to core/replica*.c: replica_in.h - what the files of hot-spot
 * replication share (replica.c has the invariants RP1-RP10). */
#ifndef PSMEM_REPLICA_IN_H
#define PSMEM_REPLICA_IN_H

#include <stdatomic.h>

#include "segment.h"
#include "world.h"
#include "replica.h"

static inline struct ps__slot *delta_of(ps_table *t, struct ps__slot *replica)
{
	return (struct ps__slot *)((char *)replica + t->slot_size);
}

static inline void stat_add(_Atomic uint64_t *c, uint64_t v)
{
	/* relaxed: statistics counter, orders nothing */
	atomic_fetch_add_explicit(c, v, memory_order_relaxed);
}

/* Is the primary of replica index r on another host (RP8)?  Under
 * repl_lock or repl_xlock. */
static inline bool prim_remote(ps_table *t, uint32_t r)
{
	/* relaxed: under repl_lock or repl_xlock (RP1, RP8) */
	return PS__LOC_IS_REMOTE(atomic_load_explicit(&t->rprim[r], memory_order_relaxed));
}

void ps__rp_apply_delta(ps_table *t, struct ps__slot *p, const float *delta);
bool ps__rp_repl_trylock(ps_world *w, struct ps__tdesc *d);
void ps__rp_repl_lock(ps_world *w, struct ps__tdesc *d);
void ps__rp_repl_unlock(struct ps__tdesc *d);
void ps__rp_xlock(ps_world *w, struct ps__tdesc *d);
bool ps__rp_xtrylock(ps_world *w, struct ps__tdesc *d); /* in a multi-host job */
void ps__rp_xunlock(ps_world *w, struct ps__tdesc *d);
uint64_t ps__rp_lock_any(ps_world *w, ps_table *t, struct ps__slot *sl);
void ps__rp_store_values(struct ps__slot *sl, const float *src, uint32_t len);
bool ps__rp_take_delta(struct ps__slot *delta, float *buf, uint32_t len);
int ps__rp_try_read(struct ps__slot *sl, ps_key k, float *buf, uint32_t len, uint64_t *seq, bool primary);
bool ps__rp_replicated(ps_table *t);
int ps__rp_remote_pull(ps_table *t, const ps_key *keys, const uint16_t *hosts, size_t n, float *out);
int ps__rp_rpush_hosts(ps_table *t, const ps_key *keys, const uint16_t *hosts, size_t n, const float *vals,
		       uint8_t *failed);
int ps__rp_remote_round(ps_world *w, ps_table *t, int n0, int n1, bool refresh);

#endif /* PSMEM_REPLICA_IN_H */
