/* PRIVATE to libpsmem: barrier.h - barriers across the nodes' threads (barrier.c) */
#ifndef PSMEM_CORE_BARRIER_H
#define PSMEM_CORE_BARRIER_H

#include "world.h"

/* barrier.c */
int ps__barrier_wait(ps_world *w, struct ps__barrier *b);
/* The node barrier; *idx (may be NULL) gets the barrier's index. */
int ps__node_barrier(ps_world *w, uint32_t *idx);
/* True if this process's next node barrier was passed by its dead
 * predecessor already (restart replay): the work before it is done. */
bool ps__node_replaying(const ps_world *w);
/* Participants of barrier b that have not arrived at barrier idx; when
 * nodes is not NULL (PS__MAX_NODES entries), their nodes go there and
 * their number to *nnodes (dump, liveness checks). */
int ps__barrier_missing(const struct ps__seg *s, const struct ps__barrier *b, uint32_t idx, int *nodes, int *nnodes);

#endif /* PSMEM_CORE_BARRIER_H */
