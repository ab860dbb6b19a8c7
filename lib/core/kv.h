/* PRIVATE to libpsmem: kv.h - the per-key protocol: slot access, pull,
 * push, localize (kv.c). */
#ifndef PSMEM_CORE_KV_H
#define PSMEM_CORE_KV_H

#include "world.h"

/* kv.c: slot access */
uint64_t ps__slot_lock(ps_world *w, ps_table *t, struct ps__slot *sl, bool *moved);
void ps__req_execute(struct ps_req *r);
void ps__slot_unlock(struct ps__slot *sl, uint64_t s, bool moved);
uint64_t ps__wait_unlocked(ps_world *w, ps_table *t, struct ps__slot *sl, uint64_t s);
void ps__copy_out(uint32_t *dst, struct ps__slot *sl, uint32_t len);
/* Frees a lock whose holder is dead (KV5): version + 1, MOVED when loc[k]
 * names another slot now.  Returns true if it changed the word. */
bool ps__slot_recover(ps_world *w, ps_table *t, struct ps__slot *sl, uint64_t s);
/* Test builds only (PS_TEST_HOOKS, libpsmem_test.a): called right after a
 * recovery's CAS, to force an interleaving (tests/test_crash.c). */
extern void (*ps__test_recover_hook)(ps_world *w, ps_table *t, struct ps__slot *sl);
int ps__localize_keys(ps_table *t, const ps_key *keys, size_t n);
/* This node's pool of t is full: waits (bounded, 10 s at most; on the
 * service thread running grace steps and reclamation itself, GR5) until a
 * slot is free.  True if one is (allocate again), false: really full.
 * Outside any read-side section, holding no slot lock. */
bool ps__wait_free_slot(ps_world *w, ps_table *t);
/* 0, or PS_ETABLE (not a table), -EINVAL (no keys), PS_EKEY (out of range) */
int ps__check_keys(ps_table *t, const ps_key *keys, size_t n);
void ps__add_values(struct ps__slot *sl, const float *upd, uint32_t len);
int ps__push_key(ps_world *w, ps_table *t, ps_key k, const float *upd); /* in a read section */
bool ps__slot_current(ps_table *t, uint64_t k, uint64_t off);

/* kv.c, for the bridge: the keys pos[0..m) of keys[] (pos NULL: 0..m)
 * that this host holds are pulled into out / pushed from in (at their
 * position's row) in one read-side section; the positions of the others
 * (REMOTE or MOVING words, also ones that moved away meanwhile) are
 * stored in miss[*nmiss++].  *local, *repl count keys served by this
 * node's own arena and by replicas. */
void ps__local_keys(ps_table *t, const ps_key *keys, const uint32_t *pos, size_t m, float *out,
		    const float *in, uint32_t *miss, size_t *nmiss, uint64_t *local, uint64_t *repl);
/* Statistics of a pull or push batch (and PS_COUNT_ACCESS counters). */
void ps__count_batch(ps_world *w, ps_table *t, const ps_key *keys, size_t n, bool pull, uint64_t local,
		     uint64_t repl);
/* Fills a fresh slot at off with key k and nf floats (values + rule
 * state), unlocked, not yet published. */
void ps__slot_fill(ps_world *w, ps_table *t, uint64_t off, ps_key k, const uint32_t *vals);
/* If this host holds k in a slot (not replicated, not REMOTE): copies its
 * values and rule state to vals, publishes loc[k] = newword, retires the
 * slot into *ret and returns 1; else 0.  Inside a read-side section. */
int ps__slot_give(ps_world *w, ps_table *t, ps_key k, uint64_t newword, uint32_t *vals, struct ps__retired *ret);

#endif /* PSMEM_CORE_KV_H */
