/* PRIVATE to libpsmem: restart.h - taking a node id, a dead node's too
 * (restart.c). */
#ifndef PSMEM_PERSIST_RESTART_H
#define PSMEM_PERSIST_RESTART_H

#include "world.h"

/* restart.c: takes this process's node id (from the segment), taking
 * over a dead predecessor's (psrun --on-failure restart) */
int ps__take_node(ps_world *w);

#endif /* PSMEM_PERSIST_RESTART_H */
