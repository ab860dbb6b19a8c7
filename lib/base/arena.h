/* PRIVATE to libpsmem: arena.h - slot pools in node arenas, the shared
 * region, the memory budget (arena.c). */
#ifndef PSMEM_BASE_ARENA_H
#define PSMEM_BASE_ARENA_H

#include "world.h"

/* arena.c: slot pools */
int ps__pool_reserve(ps_world *w, int table, uint64_t cap, uint32_t slot_size);
int ps__slot_alloc(ps_world *w, int table, int node, uint32_t slot_size, uint64_t *off);
int ps__slot_alloc_run(ps_world *w, int table, int node, uint32_t slot_size, uint64_t n, uint64_t *first);
/* Frees n slots of one pool (after a grace period) under one lock. */
void ps__slots_free(ps_world *w, int table, int node, const uint64_t *offs, size_t n, uint32_t value_len);
int ps__shared_alloc(struct ps__seg *s, uint64_t size, uint64_t *off);
int ps__budget_charge(struct ps__seg *s, uint64_t bytes);

#endif /* PSMEM_BASE_ARENA_H */
