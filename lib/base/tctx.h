/* PRIVATE to libpsmem: tctx.h - each thread's context and per-thread
 * counters, and the public prefix of table handles that the inline fast
 * path (psmem_static.h) reads (tctx.c). */
#ifndef PSMEM_BASE_TCTX_H
#define PSMEM_BASE_TCTX_H

#include "world.h"

void ps__table_pub_bind(ps_world *w, ps_table *t); /* end of ps__table_bind */
void ps__tctx_enter(ps_world *w);  /* thread registration: a counters slot */
void ps__tctx_exit(void);          /* thread exit / finalize: gives it back */
/* The node's counters: shared ones plus its threads'; a buffer of the
 * calling thread, valid until its next call (relaxed loads: a snapshot). */
const struct ps__stats *ps__node_stats(const struct ps__node *n);
/* Counts a pull or push batch's keys (kv.c count_batch): the calling
 * thread's counters, or the node's shared ones for an unregistered thread. */
void ps__count_keys(ps_world *w, bool pull, uint64_t n, uint64_t local, uint64_t repl);

#endif /* PSMEM_BASE_TCTX_H */
